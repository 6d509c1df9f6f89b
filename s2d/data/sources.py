"""The data sets a user points the suite at, all opened as a list of ``VideoRecord`` keyed by video name.

Supported ``kind`` values (config key ``data.kind``):
  demo    the embedded synthetic data (written by ``s2d.data.demo``; a YouTube-VIS set on disk)
  ytvis   a YouTube-VIS style json (``data.ann_file``) with frames under ``data.root``; ``data.all_frames``: the
          folder of every frame (YouTube-VIS's ``*_all_frames/JPEGImages``) that the json's every 5th comes from
  davis   DAVIS 2016/2017: ``JPEGImages[/480p]/<seq>`` + ``Annotations[_unsupervised][/480p]/<seq>`` (the
          unsupervised folder preferred), or ``<seq>/JPEGImages``
  frames  one sub-folder of image files per video
  mp4     video files (mp4, mov, avi, mkv, webm) anywhere below ``data.root``, or a single file
  sav     SA-V: train's ``sav_*.mp4`` + ``*_manual.json``, or val/test's ``JPEGImages_24fps`` +
          ``Annotations_6fps``; a video is its annotated frames, every 4th (``s2d.data.sav``)
Every frame file is checked before any work starts; missing ones are listed by video, frame and path.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from s2d.choices import DataKind
from s2d.errors import CorruptFrameError, LabelsetError, MissingFrameError, S2DError
from s2d.data.full_rate import FullRate, image_full_rate
from s2d.data.sav import open_sav
from s2d.data.shots import Shot
from s2d.data.video import (IMAGE_EXTS, VIDEO_EXTS, ContainerSource, ImageFolderSource, Resize, Video,
                            read_davis_mask, resize_masks)
from s2d.labelset import rle as rle_utils
from s2d.labelset.types import Instance, Labelset, VideoLabels
from s2d.labelset.ytvis import read_labelset_json

log = logging.getLogger(__name__)

KINDS = DataKind.values()


@dataclass
class VideoRecord:
    video: Video
    id: int                        # integer YouTube-VIS id
    gt: VideoLabels | None = None  # ground truth at the video's working resolution, if the set has any
    void: np.ndarray | None = None  # (T, H, W) bool, DAVIS 'void' pixels (value 255), ignored by J&F
    shot: Shot | None = None        # where in its file this video is, when the file was cut into shots (data.shots)

    @property
    def name(self) -> str:
        return self.video.id

    @property
    def source(self) -> str:
        """The video of the data set this one is: itself, or the file it was cut from at shot cuts."""
        return self.name if self.shot is None else self.shot.video


class Dataset:
    def __init__(self, records: list[VideoRecord], kind: str, root: Path):
        self.records = records
        self.kind = kind
        self.root = root
        self._by_name = {r.name: r for r in records}
        if len(self._by_name) != len(records):
            raise S2DError(f"{root}: duplicate video names in the data set")

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[VideoRecord]:
        return iter(self.records)

    def __getitem__(self, name: str) -> VideoRecord:
        return self._by_name[name]

    @property
    def names(self) -> list[str]:
        return [r.name for r in self.records]

    @property
    def has_gt(self) -> bool:
        return any(r.gt is not None for r in self.records)

    def gt_labelset(self) -> Labelset | None:
        """Ground truth of every video (videos without ground truth are skipped); None if there is none."""
        vids = [r.gt for r in self.records if r.gt is not None]
        return Labelset(vids) if vids else None

    def skeleton(self, name: str) -> VideoLabels:
        """An instance-free VideoLabels with the video's id, size and frame names (to fill with predictions)."""
        r = self[name]
        h, w = r.video.size
        return VideoLabels(name, h, w, len(r.video), r.video.frame_names(), [], r.id)


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTS and not p.name.startswith("."))


def _preflight(records: list[VideoRecord]) -> None:
    missing = []
    for r in records:
        if isinstance(r.video.source, ImageFolderSource):
            missing += [(r.name, i, str(p)) for i, p in enumerate(r.video.source.paths) if not p.exists()]
    if missing:
        lines = "\n".join(f"  video '{v}', frame {i}: {p}" for v, i, p in missing[:20])
        more = f"\n  ... and {len(missing) - 20} more" if len(missing) > 20 else ""
        raise MissingFrameError(f"{len(missing)} frame file(s) referenced by the data set are missing:\n{lines}{more}",
                                video_id=missing[0][0], frame_index=missing[0][1], path=missing[0][2])


def _fit_gt(gt: VideoLabels, size: tuple[int, int]) -> VideoLabels:
    if (gt.height, gt.width) == size:
        return gt
    out = VideoLabels(gt.name, size[0], size[1], gt.length, gt.file_names, [], gt.id)
    for inst in gt.instances:
        m = resize_masks(rle_utils.decode_many(inst.segmentations, gt.height, gt.width), size)
        segs = [rle_utils.encode(m[t]) if s is not None else None for t, s in enumerate(inst.segmentations)]
        out.instances.append(Instance(segs, inst.score, inst.category_id, inst.id, dict(inst.extra)))
    return out


def open_ytvis(ann_file: Path, frames_root: Path, resize: Resize | None = None,
               all_frames: Path | None = None) -> list[VideoRecord]:
    """``all_frames``: a folder with every frame of each video (YouTube-VIS's ``*_all_frames/JPEGImages``, whose
    sub-folders are named like the json's), read by the motion masks and the tracker (s2d.data.full_rate)."""
    ls = read_labelset_json(ann_file)
    records = []
    for v in ls.videos:
        if not v.file_names:
            raise LabelsetError("video has no file_names", file=ann_file, record=f"video '{v.name}'")
        paths = [frames_root / f for f in v.file_names]
        video = Video(v.name, ImageFolderSource(v.name, paths), resize)
        if all_frames is not None:
            folder = all_frames / Path(v.file_names[0]).parent
            every = _images(folder) if folder.is_dir() else []
            if not every:
                raise MissingFrameError(f"no frames in its folder of data.all_frames={all_frames}, which must hold "
                                        "every frame of each video in a folder named as in the json's file_names",
                                        video_id=v.name, path=folder)
            video.full_rate = image_full_rate(v.name, every, paths, resize)
        records.append(VideoRecord(video, int(v.id or 0), v))
    return records


def _davis_layout(root: Path) -> list[tuple[str, Path, Path | None]]:
    for sub in ("480p", "Full-Resolution", ""):
        jpg = root / "JPEGImages" / sub if sub else root / "JPEGImages"
        if jpg.is_dir() and any(p.is_dir() for p in jpg.iterdir()):
            # DAVIS-2017 ships the unsupervised task's objects in their own folder: prefer it when present
            anns = [root / a / sub if sub else root / a for a in ("Annotations_unsupervised", "Annotations")]
            ann = next((a for a in anns if a.is_dir()), anns[-1])
            return [(d.name, d, (ann / d.name) if (ann / d.name).is_dir() else None)
                    for d in sorted(jpg.iterdir()) if d.is_dir()]
    seqs = [(d.name, d / "JPEGImages", (d / "Annotations") if (d / "Annotations").is_dir() else None)
            for d in sorted(root.iterdir()) if (d / "JPEGImages").is_dir()]
    if not seqs:
        raise S2DError(f"{root}: no DAVIS sequences found (expected JPEGImages/<seq>/ or <seq>/JPEGImages/)")
    return seqs


def open_davis(root: Path, resize: Resize | None = None) -> list[VideoRecord]:
    records = []
    for vid, (name, jpg_dir, ann_dir) in enumerate(_davis_layout(root), start=1):
        frames = _images(jpg_dir)
        if not frames:
            raise MissingFrameError("no frames", video_id=name, path=jpg_dir)
        video = Video(name, ImageFolderSource(name, frames), resize)
        gt = void = None
        if ann_dir is not None:
            # Pair annotation and frame by file stem, never by position: a missing PNG is a frame without label.
            by_stem = {p.stem: p for p in ann_dir.iterdir() if p.suffix.lower() == ".png"}
            maps: list[np.ndarray | None] = [
                read_davis_mask(by_stem[f.stem], name, t) if f.stem in by_stem else None for t, f in enumerate(frames)]
            missing = [t for t, m in enumerate(maps) if m is None]
            if len(missing) == len(frames):
                log.warning("DAVIS sequence '%s': no annotation PNG in %s matches a frame name; the sequence has "
                            "no ground truth", name, ann_dir)
                records.append(VideoRecord(video, vid))
                continue
            if missing:
                # both evaluators read a frame without a mask as one where the object is absent; a split annotated
                # on its first frame only (MOSE valid, a semi-supervised val) gives numbers that mean nothing
                log.warning("DAVIS sequence '%s': %d of %d frames have no annotation PNG in %s (first: frame %d, "
                            "%s); they are scored as frames where no object is, so score on a split annotated on "
                            "every frame", name, len(missing), len(frames), ann_dir, missing[0],
                            frames[missing[0]].name)
            first = next(m for m in maps if m is not None)
            h, w = first.shape
            ids = sorted({int(i) for m in maps if m is not None for i in np.unique(m)} - {0, 255})
            masks = np.zeros((len(ids), len(frames), h, w), bool)  # (N, T, H, W)
            void_full = np.zeros((len(frames), h, w), bool)
            for t, m in enumerate(maps):
                if m is None:
                    continue
                if m.shape != (h, w):
                    raise CorruptFrameError(f"annotation size {m.shape[1]}x{m.shape[0]} differs from {w}x{h}",
                                            video_id=name, frame_index=t, path=by_stem[frames[t].stem])
                void_full[t] = m == 255
                for n, i in enumerate(ids):
                    masks[n, t] = m == i
            size = video.size
            masks = resize_masks(masks, size)
            void = resize_masks(void_full, size)
            gt = VideoLabels(name, size[0], size[1], len(frames), [f"{name}/{f.name}" for f in frames], [], vid)
            for n in range(len(ids)):
                segs = [rle_utils.encode(masks[n, t]) if maps[t] is not None else None for t in range(len(frames))]
                gt.instances.append(Instance(segs, 1.0, 1, None, {"davis_id": ids[n]}))
        records.append(VideoRecord(video, vid, gt, void))
    return records


def open_frame_folders(root: Path, resize: Resize | None = None) -> list[VideoRecord]:
    dirs = [d for d in sorted(root.iterdir()) if d.is_dir() and _images(d)]
    if not dirs and _images(root):
        dirs = [root]
    if not dirs:
        raise S2DError(f"{root}: no folders of image frames found")
    return [VideoRecord(Video(d.name, ImageFolderSource(d.name, _images(d)), resize), i)
            for i, d in enumerate(dirs, start=1)]


def open_video_files(root: Path, resize: Resize | None = None, stride: int = 1,
                     max_frames: int | None = None, decoded_dir: Path | None = None) -> list[VideoRecord]:
    """``decoded_dir``: where the decoded frames are kept on disk (``ContainerSource``); None: in memory."""
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.suffix.lower() in VIDEO_EXTS)
    if not files:
        raise S2DError(f"{root}: no video files ({', '.join(VIDEO_EXTS)}) found")
    stems = [f.stem for f in files]
    names = [str(f.relative_to(root).with_suffix("")) if stems.count(f.stem) > 1 else f.stem for f in files]
    return [VideoRecord(Video(n, ContainerSource(n, f, resize, stride, max_frames, decoded_dir), resize), i)
            for i, (n, f) in enumerate(zip(names, files), start=1)]


def subsample(r: VideoRecord, stride: int, max_frames: int | None) -> VideoRecord:
    """Every ``stride``-th frame, at most ``max_frames`` of them, of an image-folder video and its labels; the
    frames in between stay the video's ``full_rate``."""
    src = r.video.source
    if not isinstance(src, ImageFolderSource):
        return r  # containers subsample while decoding
    keep = list(range(0, len(src), stride))[:max_frames]
    if len(keep) == len(src):
        return r
    video = Video(r.name, ImageFolderSource(r.name, [src.paths[i] for i in keep]), r.video.resize)
    # the frames in between stay readable for the motion masks and the tracker (s2d.data.full_rate)
    full = r.video.full_rate or FullRate(r.video, tuple(range(len(src))))
    video.full_rate = full.select(keep)
    if not video.full_rate.between:
        video.full_rate = None
    gt = None if r.gt is None else r.gt.select(keep)
    void = None if r.void is None else r.void[keep]
    return VideoRecord(video, r.id, gt, void)


def _select(names: list[str], videos: list[str] | None, max_videos: int | None, root: Path) -> list[str]:
    """``data.videos`` (each must exist), then the first ``data.max_videos``, in the data set's order."""
    if videos:
        unknown = [v for v in videos if v not in set(names)]
        if unknown:
            raise S2DError(f"data.videos names unknown videos {unknown}; {root} has {sorted(names)[:10]}...")
        names = [n for n in names if n in set(videos)]
    return names[:max_videos] if max_videos else names


def open_dataset(kind: str, root: str | Path, ann_file: str | Path | None = None, short_side: int | None = None,
                 max_side: int | None = None, max_videos: int | None = None,
                 videos: list[str] | None = None, stride: int = 1, max_frames: int | None = None,
                 decoded_dir: Path | None = None, progress: Callable[[Iterable], Iterable] = lambda it: it,
                 all_frames: str | Path | None = None) -> Dataset:
    """Open a data set; ``videos`` keeps only the named videos, ``max_videos`` the first N (sorted by name);
    ``stride`` and ``max_frames`` cap the frames of every video (every stride-th, at most max_frames);
    ``decoded_dir``: where video files' decoded frames are kept (``ContainerSource``; None: in memory);
    ``progress`` wraps the loop over SA-V's videos, which reads each one's ground truth (a progress bar);
    ``all_frames``: ytvis, the folder of every frame of each video (``open_ytvis``)."""
    root = Path(root)
    if kind not in KINDS:
        raise S2DError(f"data.kind '{kind}' is not {DataKind.names()}")
    if not root.exists():
        hint = "" if root.is_absolute() else f" (a relative path is read from the working directory {Path.cwd()})"
        raise S2DError(f"data.root {root} does not exist{hint}; point data.root=/absolute/path at your data")
    resize = Resize(short_side, max_side) if (short_side or max_side) else None
    if kind in ("ytvis", "demo"):
        ann = Path(ann_file) if ann_file else root / "annotations.json"
        frames_root = root / "JPEGImages" if (root / "JPEGImages").is_dir() else root
        every_root = None if not all_frames else \
            Path(all_frames) / "JPEGImages" if (Path(all_frames) / "JPEGImages").is_dir() else Path(all_frames)
        records = open_ytvis(ann, frames_root, resize, every_root)
    elif kind == "davis":
        records = open_davis(root, resize)
    elif kind == "frames":
        records = open_frame_folders(root, resize)
    elif kind == "sav":  # selected before any annotation is read: SA-V train has 50k videos
        records = [VideoRecord(v, i, gt) for v, i, gt in
                   open_sav(root, resize, stride, max_frames, decoded_dir,
                            lambda names: _select(names, videos, max_videos, root), progress)]
    else:
        records = open_video_files(root, resize, stride, max_frames, decoded_dir)
    if stride > 1 or max_frames is not None:
        records = [subsample(r, stride, max_frames) for r in records]
    kept = set(_select([r.name for r in records], videos, max_videos, root))
    records = [r for r in records if r.name in kept]
    _preflight(records)
    if resize is not None:
        for r in records:
            if r.gt is not None:
                r.gt = _fit_gt(r.gt, r.video.size)
    return Dataset(records, kind, root)
