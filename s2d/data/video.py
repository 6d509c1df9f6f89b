"""One ``Video`` type over every source, with lazy frame access and errors that name the video and frame.

Frames come back as (H, W, 3) uint8 RGB arrays, resized on read when a ``short_side`` or ``max_side`` is set.
Image files are decoded with Pillow, which (unlike OpenCV) raises on a truncated JPEG/PNG instead of
returning a grey-padded picture; mp4 and other containers are decoded with PyAV, with OpenCV as fallback.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, Sequence

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from s2d.errors import CorruptFrameError, MissingFrameError, VideoError

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
VIDEO_EXTS = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v")


@dataclass(frozen=True)
class Resize:
    """Working resolution: scale so the short side is ``short_side`` or the long side at most ``max_side``."""

    short_side: int | None = None
    max_side: int | None = None

    def target(self, h: int, w: int) -> tuple[int, int]:
        s = 1.0
        if self.short_side:
            s = self.short_side / min(h, w)
        if self.max_side and max(h, w) * s > self.max_side:
            s = self.max_side / max(h, w)
        return max(1, round(h * s)), max(1, round(w * s))


def resize_frame(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    h, w = size
    if img.shape[:2] == (h, w):
        return img
    interp = cv2.INTER_AREA if h < img.shape[0] else cv2.INTER_LINEAR
    return cv2.resize(img, (w, h), interpolation=interp)


def resize_masks(masks: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(..., H, W) bool -> (..., h, w) bool, nearest neighbour."""
    h, w = size
    if masks.shape[-2:] == (h, w):
        return masks
    flat = masks.reshape(-1, *masks.shape[-2:]).astype(np.uint8)
    out = np.stack([cv2.resize(m, (w, h), interpolation=cv2.INTER_NEAREST) for m in flat]) if len(flat) else \
        np.zeros((0, h, w), np.uint8)
    return out.reshape(*masks.shape[:-2], h, w).astype(bool)


def read_image(path: Path, video_id: str, index: int) -> np.ndarray:
    if not path.exists():
        raise MissingFrameError("frame file does not exist", video_id=video_id, frame_index=index, path=path)
    try:
        with Image.open(path) as im:
            im.load()  # forces a full decode: truncated files raise here
            return np.asarray(im.convert("RGB"))
    except (OSError, UnidentifiedImageError, SyntaxError) as e:
        raise CorruptFrameError(f"cannot decode image ({e})", video_id=video_id, frame_index=index,
                                path=path) from None


class FrameSource(Protocol):
    def __len__(self) -> int: ...
    def read(self, index: int) -> np.ndarray: ...
    def names(self) -> list[str]: ...


class ImageFolderSource:
    """Frames as image files; order is the order of ``paths``."""

    def __init__(self, video_id: str, paths: Sequence[Path]):
        self.video_id = video_id
        self.paths = [Path(p) for p in paths]

    def __len__(self) -> int:
        return len(self.paths)

    def read(self, index: int) -> np.ndarray:
        return read_image(self.paths[index], self.video_id, index)

    def names(self) -> list[str]:
        return [p.name for p in self.paths]


class ContainerSource:
    """Frames of an mp4/mov/... file. Decoded once on first access and kept (at the working resolution).

    ``stride`` / ``max_frames`` keep every stride-th frame and at most max_frames of them; decoding stops after
    the last kept frame, so a capped long video costs only what is kept."""

    def __init__(self, video_id: str, path: Path, resize: Resize | None = None, stride: int = 1,
                 max_frames: int | None = None):
        self.video_id = video_id
        self.path = Path(path)
        self.resize = resize
        self.stride = stride
        self.max_frames = max_frames
        self.native_size: tuple[int, int] | None = None  # (H, W) in the file, before the working resize
        self._frames: list[np.ndarray] | None = None
        if not self.path.exists():
            raise MissingFrameError("video file does not exist", video_id=video_id, path=self.path)

    def _decode_pyav(self) -> list[np.ndarray]:
        import av

        frames: list[np.ndarray] = []
        seen = 0
        with av.open(str(self.path)) as container:
            stream = container.streams.video[0]
            declared = stream.frames or 0
            try:
                for frame in container.decode(stream):
                    if self._enough(frames):
                        break
                    if seen % self.stride == 0:
                        frames.append(self._fit(frame.to_ndarray(format="rgb24")))
                    seen += 1
            except av.error.FFmpegError as e:
                raise CorruptFrameError(f"decoding failed ({e})", video_id=self.video_id,
                                        frame_index=seen, path=self.path) from None
        if declared and seen < declared and not self._enough(frames):
            raise CorruptFrameError(f"container declares {declared} frames but only {len(frames)} decode "
                                    "(truncated file?)", video_id=self.video_id, frame_index=len(frames),
                                    path=self.path)
        return frames

    def _decode_cv2(self) -> list[np.ndarray]:
        cap = cv2.VideoCapture(str(self.path))
        if not cap.isOpened():
            raise CorruptFrameError("unreadable video container", video_id=self.video_id, path=self.path)
        frames: list[np.ndarray] = []
        seen = 0
        while not self._enough(frames):
            ok, bgr = cap.read()
            if not ok:
                break
            if seen % self.stride == 0:
                frames.append(self._fit(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)))
            seen += 1
        cap.release()
        return frames

    def _enough(self, frames: list) -> bool:
        return self.max_frames is not None and len(frames) >= self.max_frames

    def _fit(self, img: np.ndarray) -> np.ndarray:
        self.native_size = self.native_size or img.shape[:2]
        return img if self.resize is None else resize_frame(img, self.resize.target(*img.shape[:2]))

    def _load(self) -> list[np.ndarray]:
        if self._frames is None:
            try:
                frames = self._decode_pyav()
            except ImportError:
                frames = self._decode_cv2()
            except CorruptFrameError:
                raise
            except Exception as e:  # PyAV cannot open it at all: try OpenCV's demuxers before giving up
                try:
                    frames = self._decode_cv2()
                except CorruptFrameError:
                    raise CorruptFrameError(f"unreadable video container ({e})", video_id=self.video_id,
                                            path=self.path) from None
            if not frames:
                raise CorruptFrameError("no decodable frames", video_id=self.video_id, path=self.path)
            self._frames = frames
        return self._frames

    def __len__(self) -> int:
        return len(self._load())

    def read(self, index: int) -> np.ndarray:
        return self._load()[index]

    def names(self) -> list[str]:
        return [f"{i:05d}" for i in range(len(self))]


class ArraySource:
    """Frames already in memory: (T, H, W, 3) uint8."""

    def __init__(self, frames: np.ndarray):
        self.frames = frames

    def __len__(self) -> int:
        return len(self.frames)

    def read(self, index: int) -> np.ndarray:
        return self.frames[index]

    def names(self) -> list[str]:
        return [f"{i:05d}" for i in range(len(self))]


class Video:
    """A named sequence of frames, read lazily and resized to the working resolution."""

    def __init__(self, video_id: str, source: FrameSource, resize: Resize | None = None):
        self.id = video_id
        self.source = source
        self.resize = resize
        self._size: tuple[int, int] | None = None
        self._orig_size: tuple[int, int] | None = None

    def __len__(self) -> int:
        return len(self.source)

    def __repr__(self) -> str:
        return f"Video({self.id!r}, frames={len(self)})"

    def __getitem__(self, index: int) -> np.ndarray:
        n = len(self)
        if not -n <= index < n:
            raise VideoError(f"frame index {index} out of range (video has {n} frames)", video_id=self.id)
        index %= n
        img = self.source.read(index)
        if img.ndim != 3 or img.shape[2] != 3:
            raise CorruptFrameError(f"expected an RGB frame, got shape {img.shape}", video_id=self.id,
                                    frame_index=index)
        if self._orig_size is None:
            self._orig_size = img.shape[:2]
            self._size = self._target(self._orig_size)
        elif img.shape[:2] != self._orig_size:
            raise CorruptFrameError(f"frame size {img.shape[1]}x{img.shape[0]} differs from the video's "
                                    f"{self._orig_size[1]}x{self._orig_size[0]}", video_id=self.id, frame_index=index)
        assert self._size is not None
        return resize_frame(img, self._size)

    def _target(self, hw: tuple[int, int]) -> tuple[int, int]:
        return hw if self.resize is None else self.resize.target(*hw)

    @property
    def size(self) -> tuple[int, int]:
        """(H, W) of the frames this video returns."""
        if self._size is None:
            self[0]
        assert self._size is not None
        return self._size

    @property
    def original_size(self) -> tuple[int, int]:
        if self._orig_size is None:
            self[0]
        assert self._orig_size is not None
        return self._orig_size

    @property
    def stored_size(self) -> tuple[int, int]:
        """(H, W) of the frames in the files. ``original_size`` is what the source hands over, which a container
        has already resized while decoding; it keeps its own record of the size in the file."""
        decoded = self.original_size  # reads the first frame, which is when a container learns its size
        return getattr(self.source, "native_size", None) or decoded

    def frames(self, indices: Sequence[int] | None = None) -> np.ndarray:
        """(T, H, W, 3) uint8 for ``indices`` (all frames by default)."""
        idx = range(len(self)) if indices is None else indices
        return np.stack([self[i] for i in idx])

    def frame_names(self) -> list[str]:
        return self.source.names()
