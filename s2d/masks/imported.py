"""Import per-frame masks made by an external segmenter (CutS3D, CutLER, ...), matched by name.

Two formats:
  coco  a COCO json with "images" (``file_name`` = "<video>/<frame>.<ext>") and "annotations" (``image_id``,
        ``segmentation`` as RLE or polygons, ``score``). Frames are matched by video folder and frame stem,
        never by list position; a frame listed in "images" without annotations has no masks.
  png   label-map images ``<root>/<video>/<frame stem>.png``: every distinct non-black colour (or non-zero
        index) is one mask with score 1.
A frame of the data set that the import does not cover is an error that lists the missing (video, frame).
"""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
from PIL import Image

from s2d.data.video import resize_masks
from s2d.errors import LabelsetError, S2DError
from s2d.labelset import rle as rle_utils
from s2d.labelset.ytvis import read_json_file

FrameKey = tuple[str, str]  # (video name, frame stem)


class ImportedMasks:
    """Lookup of imported masks by (video, frame stem)."""

    def __init__(self, path: str | Path, fmt: str):
        self.path = Path(path)
        self.fmt = fmt
        if not self.path.exists():
            raise S2DError(f"masks.import_path {self.path} does not exist")
        self._coco: dict[FrameKey, list[tuple[dict, float]]] | None = None
        self._sizes: dict[FrameKey, tuple[int, int]] = {}
        if fmt == "coco":
            self._load_coco()

    def _load_coco(self) -> None:
        obj = read_json_file(self.path)
        if not isinstance(obj, dict) or "images" not in obj:
            raise LabelsetError("expected a COCO json with 'images' and 'annotations'", file=self.path)
        by_id: dict[int, FrameKey] = {}
        table: dict[FrameKey, list[tuple[dict, float]]] = {}
        for i, im in enumerate(obj["images"]):
            fn = Path(str(im.get("file_name", "")))
            if not fn.parent.name:
                raise LabelsetError("file_name must be '<video>/<frame>'", file=self.path,
                                    record=f"images[{i}] ({im.get('file_name')!r})")
            key = (fn.parent.name, fn.stem)
            by_id[im["id"]] = key
            table[key] = []
            self._sizes[key] = (int(im["height"]), int(im["width"]))
        for i, a in enumerate(obj.get("annotations") or []):
            if a.get("image_id") not in by_id:
                raise LabelsetError(f"unknown image_id {a.get('image_id')!r}", file=self.path, record=f"annotations[{i}]")
            key = by_id[a["image_id"]]
            h, w = self._sizes[key]
            try:
                seg = a["segmentation"]
                if isinstance(seg, dict) and not isinstance(seg.get("counts"), list):
                    rle_utils.check_rle(seg, h, w)
                r = rle_utils.to_compressed(seg, h, w)
            except (KeyError, ValueError, TypeError) as e:
                raise LabelsetError(f"bad segmentation: {e}", file=self.path, record=f"annotations[{i}]") from None
            table[key].append((r, float(a.get("score", 1.0))))
        self._coco = table

    def covers(self, video: str, frame_stem: str) -> bool:
        """Whether the import has an entry (possibly without masks) for this frame."""
        if self.fmt == "coco":
            assert self._coco is not None
            return (video, frame_stem) in self._coco
        return (self.path / video / f"{frame_stem}.png").exists()

    def frame(self, video: str, frame_stem: str, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray] | None:
        """-> masks (K, H, W) at ``size`` and scores (K,), or None if the import has nothing for this frame."""
        if not self.covers(video, frame_stem):
            return None
        if self.fmt == "coco":
            assert self._coco is not None
            key = (video, frame_stem)
            recs = self._coco[key]
            h, w = self._sizes[key]
            masks = rle_utils.decode_many([r for r, _ in recs], h, w)
            scores = np.array([s for _, s in recs], np.float64)
        else:
            arr = np.asarray(Image.open(self.path / video / f"{frame_stem}.png"))
            flat = arr.reshape(arr.shape[0], arr.shape[1], -1)
            ids = np.unique(flat.reshape(-1, flat.shape[-1]), axis=0)
            ids = [c for c in ids if c.any()]
            masks = np.stack([(flat == c).all(-1) for c in ids]) if ids else np.zeros((0, *arr.shape[:2]), bool)
            scores = np.ones(len(ids))
        return resize_masks(masks, size), scores


def check_coverage(imported: ImportedMasks, frames: dict[str, list[str]]) -> None:
    """Raise listing every (video, frame) of the data set that the import does not cover."""
    missing = defaultdict(list)
    for video, stems in frames.items():
        for t, stem in enumerate(stems):
            if not imported.covers(video, stem):
                missing[video].append(f"{t} ({stem})")
    if missing:
        lines = "\n".join(f"  video '{v}': frames {', '.join(f[:8])}{' ...' if len(f) > 8 else ''}"
                          for v, f in sorted(missing.items()))
        raise S2DError(f"{imported.path}: imported masks do not cover {sum(map(len, missing.values()))} frame(s):\n"
                       f"{lines}")
