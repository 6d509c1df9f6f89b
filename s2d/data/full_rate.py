"""The frames between a video's kept frames, where the data set has them on disk.

Several data sets keep only some frames of a video: SA-V annotates every 4th frame of 24 fps (a video here is
its annotated frames), YouTube-VIS ships every 5th frame of 30 fps beside an "all frames" release, and
``data.stride`` keeps every k-th frame of a folder. Between kept frames 4-5 apart an object moves 4-5 times as
far as between neighbouring frames of the recording, and what needs dense flow suffers most: DIS flow matches
such motion less often, and water, dust and spray look moving (on the DAVIS clips kept at every 4th frame the
motion masks' mean J falls from 0.61 to 0.42, docs/RESULTS.md). Where the frames in between exist, the motion
masks and the point tracker run on all of them and keep their results on the kept frames
(``masks.full_rate``, ``tracker.full_rate``); with masks from motion alone, keymask discovery runs over the
recording too, its masks on every frame (s2d.stages.keymasks), and keeps the keymasks of the kept frames.
The learned stages then learn from the recording too (``train.full_rate``, s2d.data.recordings): the keymasks of
every frame of it, four to five times the frames to train on, and the model labels and predicts on every frame.
Their labelsets are scored and drawn on the kept frames, the only ones with ground truth.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from s2d.data.video import ImageFolderSource, Video
from s2d.errors import MissingFrameError, VideoError


@dataclass(frozen=True)
class FullRate:
    """``video``: the recording from the first kept frame to the last, every frame; ``at``: the index in it of
    each kept frame, increasing."""

    video: Video
    at: tuple[int, ...]

    def __post_init__(self) -> None:
        if any(b <= a for a, b in zip(self.at, self.at[1:])) or (self.at and self.at[0] < 0):
            raise ValueError(f"kept frames must be increasing indices, got {list(self.at)[:10]}")

    @property
    def length(self) -> int:
        """Frames of the recording, known without decoding a container: it ends at the last kept frame."""
        return self.at[-1] + 1 if self.at else 0

    @property
    def between(self) -> bool:
        """Whether any frame lies between two kept ones (otherwise the full rate is the kept frames)."""
        return bool(self.at) and self.length - self.at[0] > len(self.at)

    def select(self, keep: Sequence[int]) -> "FullRate":
        """The full rate of a subset of the kept frames (``keep``: indices into them): the recording cut at the
        subset's last frame."""
        at = tuple(self.at[i] for i in keep)
        v = self.video
        if at and isinstance(v.source, ImageFolderSource) and at[-1] + 1 < len(v):  # cut after the last kept one
            v = Video(v.id, ImageFolderSource(v.id, v.source.paths[:at[-1] + 1]), v.resize)
        return FullRate(v, at)


def image_full_rate(video_id: str, every: Sequence[Path], kept: Sequence[Path], resize) -> FullRate | None:
    """The full rate of a video of image files: ``every`` frame of the recording in order, of which ``kept`` are
    the video's frames (matched by file stem). None when nothing lies between the kept frames."""
    pos = {p.stem: i for i, p in enumerate(every)}
    missing = [p for p in kept if p.stem not in pos]
    if missing:
        raise MissingFrameError(f"{len(missing)} of its {len(kept)} frames are not among the {len(every)} frames of "
                                f"its full-rate folder (first: {missing[0].name})", video_id=video_id,
                                path=Path(every[0]).parent if every else None)
    at = [pos[p.stem] for p in kept]
    if not at:
        return None
    first, last = at[0], at[-1]
    fr = FullRate(Video(video_id, ImageFolderSource(video_id, list(every[first:last + 1])), resize),
                  tuple(a - first for a in at))
    return fr if fr.between else None


def with_full_rate(records: Iterable | None) -> list:
    """The video records (``VideoRecord``) whose recording has frames between theirs."""
    return [] if records is None else [r for r in records if r.video.full_rate is not None]


@contextmanager
def reading(full: FullRate | None, key: str) -> Iterator[None]:
    """A frame error while ``full`` is read (by the setting ``key``) says so: the frame is the recording's, between
    the video's own, and the setting off reads the video's frames only."""
    try:
        yield
    except VideoError as e:
        if full is None:
            raise
        raise type(e)(f"{e.message} (a frame of the recording between the video's own frames, read because "
                      f"{key}=true; {key}=false reads the video's frames only)", video_id=e.video_id,
                      frame_index=e.frame_index, path=e.path) from None


def numbered_step(names: Sequence[str]) -> int | None:
    """The step between a video's frame numbers when its file names are numbers that all step by more than 1
    (YouTube-VIS's json lists 00000.jpg, 00005.jpg, ...: every 5th frame of the recording), else None."""
    try:
        nums = [int(Path(n).stem) for n in names]
    except ValueError:
        return None
    steps = {b - a for a, b in zip(nums, nums[1:])}
    return steps.pop() if len(steps) == 1 and min(steps) > 1 else None
