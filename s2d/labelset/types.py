"""In-memory labelset types. Videos are keyed by ``name`` (a stable string such as 'blackswan'), never by
list position, so that two artifacts are always paired by video id."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

import numpy as np

from s2d.labelset import rle as rle_utils


@dataclass
class Instance:
    """One object tube: a mask (compressed RLE) or None on each frame of its video."""

    segmentations: list[dict | None]
    score: float = 1.0
    category_id: int = 1
    id: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # diagnostics, e.g. one_to_many, visible_ranges

    @property
    def frames_with_mask(self) -> list[int]:
        return [t for t, s in enumerate(self.segmentations) if s is not None]

    def areas(self) -> list[int | None]:
        return [None if s is None else rle_utils.area(s) for s in self.segmentations]


@dataclass
class VideoLabels:
    name: str
    height: int
    width: int
    length: int
    file_names: list[str] = field(default_factory=list)
    instances: list[Instance] = field(default_factory=list)
    id: int | None = None  # integer YouTube-VIS id; assigned on export when missing

    def masks(self, frames: Sequence[int] | None = None, instances: Sequence[int] | None = None) -> np.ndarray:
        """Decode the instances: (N, T, H, W) bool; ``frames`` / ``instances``: only those, in that order. A
        picture of 4 frames of a 741-frame video's 21 tubes decodes 84 masks, not 15561 (3.6 GB at 360p)."""
        ts = range(self.length) if frames is None else list(frames)
        ns = range(len(self.instances)) if instances is None else list(instances)
        out = np.zeros((len(ns), len(ts), self.height, self.width), dtype=bool)
        for k, n in enumerate(ns):
            segs = self.instances[n].segmentations
            out[k] = rle_utils.decode_many([segs[t] for t in ts], self.height, self.width)
        return out

    def select(self, frames: Sequence[int], name: str | None = None) -> "VideoLabels":
        """The labels of ``frames`` alone, in that order (a subsampled or cut video), named ``name`` (default:
        the same). An instance with no mask on them is left out, and so is one whose masks there are all empty
        (a DAVIS annotation writes an empty mask on every frame where an object is not seen)."""
        ts = list(frames)
        out = VideoLabels(self.name if name is None else name, self.height, self.width, len(ts),
                          [self.file_names[t] for t in ts] if self.file_names else [], [], self.id)
        for inst in self.instances:
            segs = [inst.segmentations[t] for t in ts]
            if any(rle_utils.area(s) for s in segs if s is not None):
                out.instances.append(Instance(segs, inst.score, inst.category_id, inst.id, dict(inst.extra)))
        return out

    @staticmethod
    def from_masks(name: str, masks: np.ndarray, scores: list[float] | None = None,
                   file_names: list[str] | None = None, keep_empty_frames: bool = False) -> "VideoLabels":
        """(N, T, H, W) bool masks -> labels. Empty frames become None unless ``keep_empty_frames``."""
        n, t, h, w = masks.shape
        instances = []
        for i in range(n):
            segs: list[dict | None] = []
            for f in range(t):
                segs.append(rle_utils.encode(masks[i, f]) if keep_empty_frames or masks[i, f].any() else None)
            instances.append(Instance(segs, score=1.0 if scores is None else float(scores[i])))
        return VideoLabels(name, h, w, t, list(file_names or []), instances)


@dataclass
class Labelset:
    videos: list[VideoLabels]
    categories: list[dict] = field(default_factory=lambda: [{"id": 1, "name": "object"}])
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._by_name = {v.name: v for v in self.videos}

    def __getitem__(self, name: str) -> VideoLabels:
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(f"video '{name}' is not in this labelset "
                           f"(it has {len(self.videos)} videos, e.g. {sorted(self._by_name)[:5]})") from None

    def __contains__(self, name: str) -> bool:
        return name in self._by_name

    def __iter__(self) -> Iterator[VideoLabels]:
        return iter(self.videos)

    def __len__(self) -> int:
        return len(self.videos)

    @property
    def names(self) -> list[str]:
        return [v.name for v in self.videos]
