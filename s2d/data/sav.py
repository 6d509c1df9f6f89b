"""SA-V, the Segment Anything Video data set (``data=sav``), in either of its two released layouts.

SA-V's videos run at 24 fps and its masklets are annotated on every 4th frame (6 fps). A video here is its
annotated frames only, so every frame has ground truth and no unannotated frame is scored as one where no object
is (both evaluators read a missing mask as the object's absence). The 24 fps frames between stay readable
(``Video.full_rate``): the motion masks and the point tracker work between neighbouring frames of the recording,
where flow is reliable, and keep their results on the annotated frames (s2d/data/full_rate.py).

  train   ``<root>/**/sav_XXXXXX.mp4`` with ``sav_XXXXXX_manual.json`` beside it. The json's ``masklet`` is a
          list over the annotated frames of a list over objects of COCO RLEs (``{"size": [H, W], "counts"}``),
          at the file's frame size; an object not visible on a frame has an empty mask. Only the manual
          masklets are ground truth: ``_auto.json`` holds SAM 2's own masks and is not read. A video without a
          manual json is read without ground truth.
  val/test ``<root>/JPEGImages_24fps/<video>/NNNNN.jpg`` and ``<root>/Annotations_6fps/<video>/<obj>/NNNNN.png``,
          one binary PNG per object and annotated frame (objects may overlap: a person and their hand). The
          annotated frames are those with a PNG; a video without an annotation folder keeps every 4th frame.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Callable, Iterable

from s2d.data.full_rate import FullRate, image_full_rate
from s2d.data.video import IMAGE_EXTS, ContainerSource, ImageFolderSource, Resize, Video, read_davis_mask
from s2d.errors import CorruptFrameError, LabelsetError, S2DError
from s2d.labelset import rle as rle_utils
from s2d.labelset.types import Instance, VideoLabels

log = logging.getLogger(__name__)

ANNOTATION_STRIDE = 4   # SA-V annotates every 4th frame of its 24 fps videos
MANUAL_SUFFIX = "_manual.json"


def is_frames_layout(root: Path) -> bool:
    return (root / "JPEGImages_24fps").is_dir()


def video_files(root: Path) -> dict[str, Path]:
    """Train's layout: video name -> its mp4 (``root`` itself when it is one), sorted by name."""
    files = [root] if root.is_file() else sorted(root.rglob("*.mp4"), key=lambda p: p.stem)
    names = [p.stem for p in files]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise S2DError(f"{root}: SA-V video names must be unique, found several files named {dupes[:5]}")
    return dict(zip(names, files))


def read_masklets(path: Path, video_id: str) -> tuple[int, int, int, list[list[dict | None]]]:
    """A ``_manual.json`` -> (height, width, number of annotated frames, per object a list over the annotated
    frames of a compressed RLE, None where the mask is empty)."""
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError) as e:
        raise LabelsetError(f"cannot read SA-V masklets ({e})", file=path, record=f"video '{video_id}'") from None
    frames = data.get("masklet") if isinstance(data, dict) else None
    if not isinstance(frames, list) or not frames:
        raise LabelsetError("no annotated frame: no 'masklet' list, or an empty one", file=path,
                            record=f"video '{video_id}'")
    try:
        h, w = int(data["video_height"]), int(data["video_width"])
    except (KeyError, TypeError, ValueError):
        raise LabelsetError("no video_height / video_width", file=path, record=f"video '{video_id}'") from None
    n_obj = max((len(objs) for objs in frames), default=0)
    tubes: list[list[dict | None]] = [[None] * len(frames) for _ in range(n_obj)]
    for k, objs in enumerate(frames):
        if len(objs) != n_obj:
            raise LabelsetError(f"annotated frame {k} lists {len(objs)} objects, others {n_obj}", file=path,
                                record=f"video '{video_id}'")
        for n, r in enumerate(objs):
            try:
                rle_utils.check_rle(r, h, w)
            except ValueError as e:
                raise LabelsetError(str(e), file=path, record=f"video '{video_id}', annotated frame {k} "
                                    f"(frame {k * ANNOTATION_STRIDE}), object {n}") from None
            r = rle_utils.to_compressed(r, h, w)
            tubes[n][k] = r if rle_utils.area(r) > 0 else None
    return h, w, len(frames), tubes


def _frames_video(root: Path, name: str, vid: int, resize: Resize | None) -> tuple[Video, VideoLabels | None]:
    jpg_dir = root / "JPEGImages_24fps" / name
    jpgs = {p.stem: p for p in jpg_dir.iterdir() if p.suffix.lower() in IMAGE_EXTS and not p.name.startswith(".")}
    ann_dir = root / "Annotations_6fps" / name
    objects = sorted(d for d in ann_dir.iterdir() if d.is_dir()) if ann_dir.is_dir() else []
    pngs = {d.name: {p.stem: p for p in d.iterdir() if p.suffix.lower() == ".png"} for d in objects}
    stems = sorted({s for per in pngs.values() for s in per})
    if not stems:  # no ground truth: the frames SA-V would have annotated
        stems = sorted(jpgs)[::ANNOTATION_STRIDE]
    missing = [s for s in stems if s not in jpgs]
    if missing:
        raise CorruptFrameError(f"{len(missing)} annotated frame(s) have no image in {jpg_dir} (first: {missing[0]})",
                                video_id=name, path=jpg_dir)
    video = Video(name, ImageFolderSource(name, [jpgs[s] for s in stems]), resize)
    # the 24 fps frames between the annotated ones, for the motion masks and the tracker (s2d.data.full_rate)
    video.full_rate = image_full_rate(name, [jpgs[s] for s in sorted(jpgs)], [jpgs[s] for s in stems], resize)
    if not objects:
        return video, None
    h = w = None
    instances = []
    for obj in objects:
        segs: list[dict | None] = []
        for t, s in enumerate(stems):
            path = pngs[obj.name].get(s)
            if path is None:
                segs.append(None)
                continue
            m = read_davis_mask(path, name, t) > 0  # a binary PNG: 0/255, 0/1 or a palette
            if h is None:
                h, w = m.shape
            elif m.shape != (h, w):
                raise CorruptFrameError(f"annotation size {m.shape[1]}x{m.shape[0]} differs from {w}x{h}",
                                        video_id=name, frame_index=t, path=path)
            segs.append(rle_utils.encode(m) if m.any() else None)
        instances.append(Instance(segs, 1.0, 1, None, {"sav_object": obj.name}))
    gt = VideoLabels(name, int(h), int(w), len(stems), [f"{name}/{jpgs[s].name}" for s in stems], instances, vid)
    return video, gt


def _file_video(path: Path, name: str, vid: int, resize: Resize | None, stride: int, max_frames: int | None,
                decoded_dir: Path | None) -> tuple[Video, VideoLabels | None]:
    manual = path.with_name(path.stem + MANUAL_SUFFIX)
    if not manual.exists():
        log.warning("SA-V video '%s': no %s beside %s; read without ground truth", name, manual.name, path)
        src = ContainerSource(name, path, resize, ANNOTATION_STRIDE * stride, max_frames, decoded_dir)
        video = Video(name, src, resize)
        _file_full_rate(video, path, resize, stride, decoded_dir)
        return video, None
    h, w, n_ann, tubes = read_masklets(manual, name)
    keep = list(range(0, n_ann, stride))[:max_frames]  # the annotated frames this run keeps
    src = ContainerSource(name, path, resize, ANNOTATION_STRIDE * stride, len(keep), decoded_dir)
    video = Video(name, src, resize)
    decoded = len(video)
    if decoded < len(keep):
        log.warning("SA-V video '%s': %d annotated frames in %s but %d decode from %s; the ground truth is cut to "
                    "the decoded frames", name, len(keep), manual.name, decoded, path.name)
        keep = keep[:decoded]
    _file_full_rate(video, path, resize, stride, decoded_dir)
    stored = video.stored_size
    if stored != (h, w):
        raise LabelsetError(f"masklets are {w}x{h} but the video decodes to {stored[1]}x{stored[0]} (a rotation "
                            f"the file's metadata and the annotation disagree on?)", file=manual,
                            record=f"video '{name}'")
    names = src.names()
    instances = [Instance([tube[k] for k in keep], 1.0, 1, None, {"sav_object": n}) for n, tube in enumerate(tubes)]
    gt = VideoLabels(name, h, w, len(keep), [f"{name}/{names[t]}.jpg" for t in range(len(keep))], instances, vid)
    return video, gt


def _file_full_rate(video: Video, path: Path, resize: Resize | None, stride: int, decoded_dir: Path | None) -> None:
    """The 24 fps frames between the annotated ones of a train video (every ``stride``-th of them, up to the last
    annotated frame kept), decoded when the motion masks or the tracker first read them (s2d.data.full_rate)."""
    n = len(video)
    if n > 1:
        src = ContainerSource(video.id, path, resize, stride, ANNOTATION_STRIDE * (n - 1) + 1, decoded_dir)
        video.full_rate = FullRate(Video(video.id, src, resize), tuple(range(0, ANNOTATION_STRIDE * n,
                                                                             ANNOTATION_STRIDE)))


def open_sav(root: Path, resize: Resize | None, stride: int = 1, max_frames: int | None = None,
             decoded_dir: Path | None = None,
             select: Callable[[list[str]], list[str]] = lambda names: names,
             progress: Callable[[Iterable], Iterable] = lambda it: it) -> list[tuple[Video, int, VideoLabels | None]]:
    """(video, id, ground truth at the annotation's size) for each video of ``root`` (either layout, sorted
    by name) that ``select`` keeps.
    ``stride`` / ``max_frames`` count annotated frames (``stride=2``: every 8th frame of the 24 fps video). The
    selection comes before any json or PNG is read: SA-V train has 50k videos. ``progress`` wraps the loop over
    the chosen videos (a progress bar: each mp4 is decoded here, to line its frames up with the masklets)."""
    frames_layout = is_frames_layout(root)
    files = {} if frames_layout else video_files(root)  # the tree walked once: 50k files in train
    names = sorted(d.name for d in (root / "JPEGImages_24fps").iterdir() if d.is_dir()) if frames_layout \
        else list(files)
    if not names:
        raise S2DError(f"{root}: no SA-V videos found (expected **/sav_*.mp4 with *{MANUAL_SUFFIX} beside them, "
                       "or JPEGImages_24fps/<video>/ with Annotations_6fps/<video>/<object>/)")
    ids = {n: i for i, n in enumerate(names, start=1)}
    chosen = progress(select(names))
    out = []
    if frames_layout:
        for n in chosen:
            video, gt = _frames_video(root, n, ids[n], resize)
            out.append((video, ids[n], gt))  # image folders are subsampled with their labels by the caller
        return out
    for n in chosen:
        video, gt = _file_video(files[n], n, ids[n], resize, stride, max_frames, decoded_dir)
        out.append((video, ids[n], gt))
    return out
