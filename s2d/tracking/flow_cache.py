"""Dense DIS optical flow between consecutive frames, computed once per frame pair and kept on disk.

Two stages need the same flow fields of a video: motion masks (stage "masks") and the flow-chaining point
tracker (stage "keymasks"). Both ask this module; the first computes and stores, the second reads. Entries are
keyed by the frames' content (a hash of the grey frames and the DIS settings), so a changed video, resolution or
frame selection never reads stale flow. Fields are stored as float16: 1/1024 px precision below 2 px and
1/64 px at 32 px, far below the tracker's error, and every caller sees the same rounded values whether the
cache is on or off.
"""
from __future__ import annotations

import errno
import hashlib
import os
from pathlib import Path

import cv2
import numpy as np

from s2d.errors import S2DError
from s2d.io.atomic import atomic_file
from s2d.tracking.params import FlowParams

PRESET = cv2.DISOPTICAL_FLOW_PRESET_MEDIUM
FINEST_SCALE = FlowParams.finest_scale  # the DIS pyramid level the flow is refined down to (config flow.finest_scale)


def dis_flow(preset: int = PRESET, finest_scale: int = FINEST_SCALE) -> cv2.DISOpticalFlow:
    dis = cv2.DISOpticalFlow_create(preset)
    dis.setFinestScale(finest_scale)
    return dis


def compute_flows(gray: list[np.ndarray], preset: int = PRESET, gap: int = 1, out: np.ndarray | None = None,
                  finest_scale: int = FINEST_SCALE) -> tuple[np.ndarray, np.ndarray]:
    """grey frames (H, W) uint8 -> forward flows t -> t+gap and backward flows t+gap -> t, each (T-gap, H, W, 2)
    float16. ``gap`` > 1: the motion masks of a slow video (``s2d.masks.motion``, step 8; not cached). ``out``:
    a (2, T-gap, H, W, 2) float16 array to write them into (the cache's file)."""
    dis = dis_flow(preset, finest_scale)
    T = len(gray)
    if out is None:
        out = np.zeros((2, max(T - gap, 0), *gray[0].shape, 2), np.float16)
    fwd, bwd = out[0], out[1]
    for t in range(T - gap):
        fwd[t] = dis.calc(gray[t], gray[t + gap], None)
        bwd[t] = dis.calc(gray[t + gap], gray[t], None)
    return fwd, bwd


def flow_key(gray: list[np.ndarray], preset: int = PRESET, finest_scale: int = FINEST_SCALE) -> str:
    h = hashlib.sha1(f"dis{preset}-finest{finest_scale}-{len(gray)}-{gray[0].shape}".encode())
    for g in gray:
        h.update(np.ascontiguousarray(g).data)
    return h.hexdigest()[:20]


class FlowCache:
    """``flows(gray)`` -> (fwd, bwd) float16 arrays (T-1, H, W, 2), as computed and stored. With a ``root`` they
    are read-only memory maps of the entry's file, written there as they are computed: a video's flow is read
    from the page cache as a caller reaches each frame (a window of keymask discovery reads its own frames'),
    and the kernel can drop it and read it again instead of running out of memory (16 bytes a pixel of video,
    1.4 GB for 741 frames at 360p). A caller converts the frame it works on (float16 -> float32 is exact).
    ``root`` None keeps nothing on disk and the flows in memory. ``far(gray, gap)``: flows between frames
    ``gap`` apart, with the same settings, not kept (the motion masks of a slow video)."""

    def __init__(self, root: str | Path | None = None, preset: int = PRESET, finest_scale: int = FINEST_SCALE):
        self.root = Path(root) if root is not None else None
        self.preset = preset
        self.finest_scale = finest_scale

    def key(self, gray: list[np.ndarray]) -> str:
        return flow_key(gray, self.preset, self.finest_scale)

    def far(self, gray: list[np.ndarray], gap: int) -> tuple[np.ndarray, np.ndarray]:
        return compute_flows(gray, self.preset, gap, finest_scale=self.finest_scale)

    def flows(self, gray: list[np.ndarray], key: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``key``: ``self.key(gray)`` when the caller has it already (it hashes every frame)."""
        if self.root is None or len(gray) < 2:  # (a single frame has no flow to keep)
            return compute_flows(gray, self.preset, finest_scale=self.finest_scale)
        path = self.root / f"{key or self.key(gray)}.npy"
        shape = (2, len(gray) - 1, *gray[0].shape, 2)
        if path.is_file():
            try:
                both = np.load(path, mmap_mode="r")
                if both.shape == shape and both.dtype == np.float16:
                    return both[0], both[1]
            except (OSError, ValueError):
                pass
            path.unlink(missing_ok=True)  # a damaged entry is computed again, never trusted
        with atomic_file(path) as tmp:
            both = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16, shape=shape)
            # the file's blocks are taken now: a disk that fills while DIS writes through the memory map would
            # end the process with SIGBUS and no word, where this raises ENOSPC before any work
            with open(tmp, "rb+") as f:
                size = os.fstat(f.fileno()).st_size
                try:
                    os.posix_fallocate(f.fileno(), 0, size)
                except OSError as e:
                    if e.errno not in (errno.EOPNOTSUPP, errno.EINVAL):  # a file system without it: written as is
                        raise S2DError(f"no room for the flow of a video ({size / 2 ** 30:.1f} GiB) in {self.root} "
                                       f"({e.strerror}); free disk space there or point paths.artifacts "
                                       "elsewhere") from None
            compute_flows(gray, self.preset, out=both, finest_scale=self.finest_scale)
            both.flush()
            del both
        both = np.load(path, mmap_mode="r")
        return both[0], both[1]
