"""YouTube-VIS json <-> Labelset, with validation that names the bad record.

Dataset files look like ``{"videos": [...], "annotations": [...], "categories": [...]}`` where every
annotation carries one segmentation per frame of its video (null where the object has no mask). Prediction
files are a list of ``{"video_id", "score", "category_id", "segmentations"}``. Both are normalised to
compressed RLE with ``counts`` as str.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from s2d.errors import LabelsetError
from s2d.labelset import rle as rle_utils
from s2d.labelset.types import Instance, Labelset, VideoLabels

# Keys that the exporter writes itself; everything else found on an annotation is kept in ``extra``.
_ANN_KEYS = {"id", "video_id", "category_id", "segmentations", "areas", "bboxes", "iscrowd", "score", "height",
             "width", "length"}


def read_json_file(path: str | Path) -> Any:
    """json.load with errors that name the file and the parse position."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise LabelsetError("file not found", file=path) from None
    try:
        return json.loads(data)
    except json.JSONDecodeError as e:
        raise LabelsetError(f"invalid JSON at line {e.lineno}, column {e.colno} (byte {e.pos}): {e.msg}",
                            file=path) from None
    except UnicodeDecodeError as e:
        raise LabelsetError(f"not UTF-8 text (byte {e.start})", file=path) from None


def _video_name(v: dict) -> str:
    if v.get("name"):
        return str(v["name"])
    files = v.get("file_names") or []
    if files and "/" in files[0]:
        return files[0].rsplit("/", 1)[0]
    return str(v["id"])


def _check_segmentations(segs: Any, video: VideoLabels, file: Any, record: str) -> list[dict | None]:
    if not isinstance(segs, list):
        raise LabelsetError("'segmentations' must be a list with one entry per frame", file=file, record=record)
    if len(segs) != video.length:
        raise LabelsetError(f"has {len(segs)} segmentations but video '{video.name}' has {video.length} frames",
                            file=file, record=record)
    out: list[dict | None] = []
    for t, s in enumerate(segs):
        if s is None:
            out.append(None)
            continue
        try:
            if isinstance(s, dict):
                rle_utils.check_rle(s, video.height, video.width)
            out.append(rle_utils.to_compressed(s, video.height, video.width))
        except (ValueError, TypeError, KeyError) as e:
            raise LabelsetError(f"frame {t}: {e}", file=file, record=record) from None
    return out


def _parse_videos(videos: Any, file: Any) -> dict[int, VideoLabels]:
    if not isinstance(videos, list):
        raise LabelsetError("'videos' must be a list", file=file)
    by_id: dict[int, VideoLabels] = {}
    names: set[str] = set()
    for i, v in enumerate(videos):
        rec = f"videos[{i}]"
        if not isinstance(v, dict) or "id" not in v:
            raise LabelsetError("video record needs an 'id'", file=file, record=rec)
        rec = f"videos[{i}] (id {v['id']})"
        try:
            vid = int(v["id"])
            h, w = int(v["height"]), int(v["width"])
        except (KeyError, TypeError, ValueError):
            raise LabelsetError("video record needs integer 'id', 'height' and 'width'", file=file,
                                record=rec) from None
        if vid in by_id:
            raise LabelsetError(f"duplicate video id {vid}", file=file, record=rec)
        files = [str(x) for x in v.get("file_names", [])]
        length = int(v.get("length", len(files)))
        if files and len(files) != length:
            raise LabelsetError(f"'length' is {length} but there are {len(files)} file_names", file=file, record=rec)
        if h <= 0 or w <= 0 or length <= 0:
            raise LabelsetError(f"non-positive size {h}x{w}x{length}", file=file, record=rec)
        name = _video_name(v)
        if name in names:
            raise LabelsetError(f"duplicate video name '{name}'", file=file, record=rec)
        names.add(name)
        by_id[vid] = VideoLabels(name=name, height=h, width=w, length=length, file_names=files, id=vid)
    return by_id


def labelset_from_json(obj: Any, file: str | Path | None = None) -> Labelset:
    """Parse and validate a YouTube-VIS dataset dict."""
    if not isinstance(obj, dict) or "videos" not in obj:
        raise LabelsetError("not a YouTube-VIS dataset (expected an object with 'videos')", file=file)
    by_id = _parse_videos(obj["videos"], file)
    categories = obj.get("categories") or [{"id": 1, "name": "object"}]
    cat_ids = {int(c["id"]) for c in categories}
    seen_ann: set[int] = set()
    for i, a in enumerate(obj.get("annotations") or []):
        rec = f"annotations[{i}]" + (f" (id {a.get('id')})" if isinstance(a, dict) and "id" in a else "")
        if not isinstance(a, dict):
            raise LabelsetError("annotation must be an object", file=file, record=rec)
        if "video_id" not in a or a["video_id"] not in by_id:
            raise LabelsetError(f"refers to unknown video_id {a.get('video_id')!r}", file=file, record=rec)
        ann_id = a.get("id")
        if ann_id is not None:
            if ann_id in seen_ann:
                raise LabelsetError(f"duplicate annotation id {ann_id}", file=file, record=rec)
            seen_ann.add(ann_id)
        cat = int(a.get("category_id", 1))
        if cat not in cat_ids:
            raise LabelsetError(f"unknown category_id {cat} (categories: {sorted(cat_ids)})", file=file, record=rec)
        video = by_id[a["video_id"]]
        segs = _check_segmentations(a.get("segmentations"), video, file, rec)
        extra = {k: v for k, v in a.items() if k not in _ANN_KEYS}
        inst = Instance(segs, score=float(a.get("score", 1.0)), category_id=cat, id=ann_id, extra=extra.get("s2d", {}))
        if "areas" in a:  # kept: the reference evaluator averages the *stored* areas of ground truth
            inst.extra.setdefault("_areas", a["areas"])
        if a.get("iscrowd"):
            inst.extra["iscrowd"] = 1
        video.instances.append(inst)
    return Labelset(list(by_id.values()), categories=categories, info=obj.get("info") or {})


def labelset_to_json(ls: Labelset) -> dict:
    """Labelset -> YouTube-VIS dataset dict (ids assigned where missing, in video order)."""
    videos, anns = [], []
    used = {v.id for v in ls.videos if v.id is not None}
    next_vid = 1
    ann_id = 1
    for v in ls.videos:
        vid = v.id
        if vid is None:
            while next_vid in used:
                next_vid += 1
            vid = next_vid
            used.add(vid)
        videos.append({"id": vid, "name": v.name, "width": v.width, "height": v.height, "length": v.length,
                       "file_names": list(v.file_names)})
        for inst in v.instances:
            rec = {"id": ann_id, "video_id": vid, "category_id": inst.category_id, "iscrowd": 0,
                   "score": inst.score, "segmentations": inst.segmentations, "areas": inst.areas(),
                   "bboxes": [rle_utils.bbox(s) for s in inst.segmentations]}
            diag = {k: val for k, val in inst.extra.items() if not k.startswith("_")}
            if diag:
                rec["s2d"] = diag
            anns.append(rec)
            ann_id += 1
    return {"info": ls.info, "videos": videos, "annotations": anns, "categories": ls.categories}


def predictions_to_json(ls: Labelset, reference: Labelset | None = None) -> list[dict]:
    """Labelset -> YouTube-VIS results list. Video ids come from ``reference`` (the ground truth), by name."""
    out = []
    for v in ls.videos:
        vid = reference[v.name].id if reference is not None else v.id
        for inst in v.instances:
            out.append({"video_id": vid, "score": float(inst.score), "category_id": inst.category_id,
                        "segmentations": inst.segmentations})
    return out


def _category_id(value: Any, file: Any, record: str) -> int:
    """An integer category id (1 and 1.0 alike, as the reference's dict lookups treat them); anything else is
    refused naming the record instead of failing later."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (isinstance(value, float)
                                                                             and not value.is_integer()):
        raise LabelsetError(f"'category_id' must be an integer, got {value!r}", file=file, record=record)
    return int(value)


def predictions_from_json(obj: Any, reference: Labelset, file: str | Path | None = None) -> Labelset:
    """Parse a YouTube-VIS results list against the videos of ``reference`` (ids must exist there)."""
    if isinstance(obj, dict) and "annotations" in obj:
        obj = obj["annotations"]
    if not isinstance(obj, list):
        raise LabelsetError("predictions must be a list of {video_id, score, segmentations}", file=file)
    by_id = {v.id: v for v in reference.videos}
    out = {v.name: VideoLabels(v.name, v.height, v.width, v.length, list(v.file_names), [], v.id)
           for v in reference.videos}
    for i, p in enumerate(obj):
        rec = f"predictions[{i}]"
        if not isinstance(p, dict) or p.get("video_id") not in by_id:
            raise LabelsetError(f"refers to unknown video_id {p.get('video_id') if isinstance(p, dict) else p!r}",
                                file=file, record=rec)
        try:
            score = float(p["score"])
        except (KeyError, TypeError, ValueError):
            raise LabelsetError("needs a numeric 'score'", file=file, record=rec) from None
        if score != score:
            raise LabelsetError("score is NaN", file=file, record=rec)
        ref = by_id[p["video_id"]]
        cat = _category_id(p.get("category_id", 1), file, rec)
        segs = _check_segmentations(p.get("segmentations"), ref, file, rec)
        out[ref.name].instances.append(Instance(segs, score=score, category_id=cat))
    return Labelset(list(out.values()), categories=reference.categories)


def read_labelset_json(path: str | Path) -> Labelset:
    return labelset_from_json(read_json_file(path), file=path)
