"""One ``Video`` type over every source, with lazy frame access and errors that name the video and frame.

Frames come back as (H, W, 3) uint8 RGB arrays, resized on read when a ``short_side`` or ``max_side`` is set.
Image files are decoded with Pillow, which (unlike OpenCV) raises on a truncated JPEG/PNG instead of
returning a grey-padded picture; mp4 and other containers are decoded with PyAV, with OpenCV as fallback.
"""
from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Protocol, Sequence

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from s2d.errors import CorruptFrameError, MissingFrameError, S2DError, VideoError
log = logging.getLogger(__name__)

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
VIDEO_EXTS = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v")
DECODED_FORMAT = 1  # of ContainerSource's cache files: bump when what they hold changes


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


def read_davis_mask(path: Path, video_id: str, index: int) -> np.ndarray:
    """A DAVIS annotation -> (H, W) int label map: 0 background, 1.. instances, 255 void.

    Also what any binary mask PNG reads as (SA-V's, ``> 0``). DAVIS-2017 files are palette PNGs whose indices
    are instance ids (255 = void). DAVIS-2016 files are 8-bit greyscale with values {0, 255}: binary foreground,
    which becomes instance 1.
    """
    try:
        with Image.open(path) as im:
            im.load()
            mode = im.mode
            arr = np.asarray(im if mode in ("P", "L") else im.convert("L")).astype(np.int32)
    except (OSError, SyntaxError) as e:
        raise CorruptFrameError(f"cannot decode annotation ({e})", video_id=video_id, frame_index=index,
                                path=path) from None
    if mode != "P" and set(np.unique(arr).tolist()) <= {0, 255}:
        arr = (arr == 255).astype(np.int32)
    return arr


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


def _reaches_stream_end(stream, last_pts: int | None) -> bool:
    """Whether the last decoded frame (its ``pts``, in the stream's time base) lies within two frame intervals of
    the end of the stream's declared duration. A container's frame count is often not the number of frames its
    decoder gives, and a short count alone is no sign of damage: an mp4 whose edit list drops a frame (456
    declared, 455 decode), an AVI that stores a repeated frame as an empty packet (444 declared, 68 decode, the
    last at pts 443 of 444). A truncated file stops short of the end. Unknown timing: False (the count decides)."""
    if last_pts is None or not stream.duration or not stream.time_base or not stream.average_rate:
        return False
    interval = 1 / (float(stream.average_rate) * float(stream.time_base))  # one frame, in time-base units
    start = stream.start_time or 0
    return last_pts - start + 2 * interval >= stream.duration


def upright(img: np.ndarray, rotation: int) -> np.ndarray:
    """A decoded frame (H, W, 3) turned as a player shows it: ``rotation`` is the container's display rotation
    (PyAV's ``VideoFrame.rotation``, degrees counter-clockwise, from the display matrix a phone writes for a
    video filmed upright). Without it a portrait phone video was segmented lying on its side, and differently
    from OpenCV's decoder (the fallback), which applies it."""
    k = round(rotation / 90) % 4
    return np.ascontiguousarray(np.rot90(img, k)) if k else img


class ContainerSource:
    """Frames of an mp4/mov/... file, decoded once at the working resolution.

    ``stride`` / ``max_frames`` keep every stride-th frame and at most max_frames of them; decoding stops after
    the last kept frame, so a capped long video costs only what is kept.

    ``cache_dir`` (what ``s2d.stages.data.load_data`` gives: ``<artifacts>/decoded-frames``): the decoded frames
    go to a raw file there, frame by frame, and are read back through a read-only memory map. Kept in memory
    instead, every video of a folder stayed decoded for the whole run from the moment its length was asked
    (the data stage asks it of every video): 0.5 GB for each 741-frame video at 360p, so a folder of fifty
    such takes did not fit in 24 GB before a stage began. The file is keyed by the video file (path, size,
    modification time) and the decoding settings; a killed run finds it again (the frame count without a
    decode), and a half-written one is never read (its json, written last, is the commit). ``None``: the
    frames are kept in memory (tests, single files opened by ``s2d demo``)."""

    def __init__(self, video_id: str, path: Path, resize: Resize | None = None, stride: int = 1,
                 max_frames: int | None = None, cache_dir: Path | None = None):
        self.video_id = video_id
        self.path = Path(path)
        self.resize = resize
        self.stride = stride
        self.max_frames = max_frames
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.native_size: tuple[int, int] | None = None  # (H, W) in the file, before the working resize
        self._frames: list[np.ndarray] | np.ndarray | None = None  # a list, or a memory map of the cached file
        if not self.path.exists():
            raise MissingFrameError("video file does not exist", video_id=video_id, path=self.path)

    def __getstate__(self) -> dict:
        # a memory map would be pickled as a full copy (a DataLoader worker, a spawned rank): it is reopened there
        state = dict(self.__dict__)
        if isinstance(state["_frames"], np.memmap):
            state["_frames"] = None
        return state

    def _decode_pyav(self) -> Iterator[np.ndarray]:
        import av

        kept = seen = 0
        last_pts = None
        with av.open(str(self.path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"  # FFmpeg's frame and slice threads: the same frames, decoded sooner
            declared = stream.frames or 0
            try:
                for frame in container.decode(stream):
                    if self._enough(kept):
                        break
                    if seen % self.stride == 0:
                        yield self._fit(upright(frame.to_ndarray(format="rgb24"), frame.rotation))
                        kept += 1
                    seen += 1
                    last_pts = frame.pts if frame.pts is not None else last_pts
            except av.error.FFmpegError as e:
                raise CorruptFrameError(f"decoding failed ({e})", video_id=self.video_id,
                                        frame_index=seen, path=self.path) from None
            if declared and seen < declared and not self._enough(kept):
                if not _reaches_stream_end(stream, last_pts):
                    raise CorruptFrameError(f"container declares {declared} frames but only {seen} decode "
                                            "(truncated file?)", video_id=self.video_id, frame_index=seen,
                                            path=self.path)
                log.info("video '%s' (%s): the container declares %d frames; %d decode and reach the end of the "
                         "stream (the rest are frames a codec drops or a container stores as repeats), so the "
                         "video has %d", self.video_id, self.path, declared, seen, seen)

    def _decode_cv2(self) -> Iterator[np.ndarray]:
        cap = cv2.VideoCapture(str(self.path))
        if not cap.isOpened():
            raise CorruptFrameError("unreadable video container", video_id=self.video_id, path=self.path)
        kept = seen = 0
        try:
            while not self._enough(kept):
                ok, bgr = cap.read()
                if not ok:
                    break
                if seen % self.stride == 0:
                    yield self._fit(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
                    kept += 1
                seen += 1
        finally:
            cap.release()

    def _enough(self, kept: int) -> bool:
        return self.max_frames is not None and kept >= self.max_frames

    def _fit(self, img: np.ndarray) -> np.ndarray:
        self.native_size = self.native_size or img.shape[:2]
        return img if self.resize is None else resize_frame(img, self.resize.target(*img.shape[:2]))

    def _decode(self, consume: Callable[[Iterator[np.ndarray]], int]) -> int:
        """Hand the kept frames to ``consume`` (which starts afresh on each call and returns how many it took):
        PyAV's, or OpenCV's where PyAV is missing or cannot open the file."""
        try:
            return consume(self._decode_pyav())
        except ImportError:
            return consume(self._decode_cv2())
        except S2DError:  # a broken file, or the cache that could not be written: said as it is
            raise
        except Exception as e:  # PyAV cannot open it at all: try OpenCV's demuxers before giving up
            try:
                return consume(self._decode_cv2())
            except CorruptFrameError:
                raise CorruptFrameError(f"unreadable video container ({e})", video_id=self.video_id,
                                        path=self.path) from None

    def _in_memory(self) -> list[np.ndarray]:
        frames: list[np.ndarray] = []

        def keep(it: Iterator[np.ndarray]) -> int:
            frames.clear()
            frames.extend(it)
            return len(frames)

        self._decode(keep)
        return frames

    def cache_key(self) -> str:
        """What the decoded frames depend on: the file (path, size, modification time) and how it is decoded."""
        st = self.path.stat()
        r = self.resize
        what = [DECODED_FORMAT, str(self.path.resolve()), st.st_size, st.st_mtime_ns, self.stride, self.max_frames,
                None if r is None else [r.short_side, r.max_side]]
        return hashlib.sha1(json.dumps(what).encode()).hexdigest()[:20]

    def _cached(self) -> np.ndarray:
        """The decoded frames (T, H, W, 3) as a read-only memory map of the cache file, decoding into it first
        where it is missing."""
        from s2d.io.atomic import atomic_file, atomic_write_bytes

        assert self.cache_dir is not None
        key = self.cache_key()
        raw, meta = self.cache_dir / f"{key}.u8", self.cache_dir / f"{key}.json"
        try:
            info = json.loads(meta.read_text())
            shape = tuple(info["shape"])
            if raw.stat().st_size == int(np.prod(shape)):
                self.native_size = tuple(info["native_size"])
                return np.memmap(raw, np.uint8, "r", shape=shape)
        except (OSError, ValueError, KeyError, TypeError):
            pass  # not there yet, or damaged: decoded again

        def no_room(e: OSError) -> S2DError:
            return S2DError(f"{self.video_id}: cannot write its decoded frames to {self.cache_dir} ({e}); "
                            "free disk space there or point paths.artifacts elsewhere")

        frame_shape: list[int] = []  # (H, W, 3) of the first frame
        try:
            with atomic_file(raw) as tmp:
                def write(it: Iterator[np.ndarray]) -> int:
                    frame_shape.clear()
                    n = 0
                    try:
                        with open(tmp, "wb") as f:
                            for img in it:
                                if not frame_shape:
                                    frame_shape.extend(img.shape)
                                elif img.shape != tuple(frame_shape):  # the container changed its frame size
                                    raise CorruptFrameError(
                                        f"frame size {img.shape[1]}x{img.shape[0]} differs from the video's "
                                        f"{frame_shape[1]}x{frame_shape[0]}", video_id=self.video_id,
                                        frame_index=n, path=self.path)
                                f.write(np.ascontiguousarray(img, np.uint8).tobytes())
                                n += 1
                    except OSError as e:  # said here, not taken for a file PyAV cannot read (no OpenCV retry)
                        raise no_room(e) from None
                    return n

                n = self._decode(write)
                if n == 0:
                    raise self._no_frames()
        except OSError as e:  # fsync or rename of the finished file
            raise no_room(e) from None
        shape = (n, *frame_shape)
        atomic_write_bytes(meta, json.dumps({"shape": shape, "native_size": list(self.native_size or ()),
                                             "file": str(self.path)}).encode())
        return np.memmap(raw, np.uint8, "r", shape=shape)

    def _no_frames(self) -> CorruptFrameError:
        return CorruptFrameError("no decodable frames", video_id=self.video_id, path=self.path)

    def _load(self) -> list[np.ndarray] | np.ndarray:
        if self._frames is None:
            frames = self._in_memory() if self.cache_dir is None else self._cached()
            if len(frames) == 0:
                raise self._no_frames()
            self._frames = frames
        return self._frames

    def __len__(self) -> int:
        return len(self._load())

    def read(self, index: int) -> np.ndarray:
        return np.array(self._load()[index])  # a copy: callers own their frame, the memory map stays read-only

    def names(self) -> list[str]:
        # the frame's number in the file (every stride-th frame is kept), as frame folders of it are named
        return [f"{i * self.stride:05d}" for i in range(len(self))]


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
        # a FullRate (s2d.data.full_rate): the recording's frames between this video's frames, where the data set
        # has them, which the motion masks and the point tracker read (masks.full_rate, tracker.full_rate)
        self.full_rate = None

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
