"""The scale the model sees objects at: the same when it labels a video as when it trained.

Training cuts a random region covering a fraction ``a`` of a frame's area (``train.crop_scale``) and resizes it to
``train.crop_size``, so the model learns every object at sqrt(crop_h * crop_w / (a * H * W)) times its size in the
frame. Inference on the frames as they are shows the objects at scale 1. On the demo (120x160 frames, 96x128 crops,
a in [0.6, 1]) 1 lies inside the trained range [0.80, 1.03]; on 240p DAVIS frames (240x427) the range is
[0.35, 0.45], and a model that never saw an object more than half its size labelled a car as holes and window blobs
(dense labelset AP50 4.2 at scale 1, 45.3 at 0.45: docs/RESULTS.md). So the model gets the frames resized to the
scale of the trained range nearest to 1 (no resizing when 1 is inside it), and its masks go back to the frames.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from s2d.data.clips import AugmentConfig


def trained_scale_range(frame_hw: Sequence[int], crop: AugmentConfig) -> tuple[float, float]:
    """(lo, hi): the resize factors a frame of ``frame_hw`` got in training (the whole crop range, by area)."""
    H, W = frame_hw
    out = crop.size[0] * crop.size[1]
    return math.sqrt(out / (crop.crop_scale[1] * H * W)), math.sqrt(out / (crop.crop_scale[0] * H * W))


def input_scale(frame_hw: Sequence[int], crop: AugmentConfig, fixed: Optional[float] = None) -> float:
    """The factor frames of ``frame_hw`` are resized by for the model: ``fixed`` when given (label.input_scale),
    else the trained scale nearest to 1."""
    if fixed is not None:
        return float(fixed)
    lo, hi = trained_scale_range(frame_hw, crop)
    return min(max(1.0, lo), hi)


# below this the model sees every object at under half its size in the frame, and its masks (a quarter of that
# input) are coarse: on 240p DAVIS, crops that taught scale 0.35-0.45 gave a dense labelset at AP50 45.3 where
# crops teaching 0.69-0.89 gave 60.4 (docs/RESULTS.md, "The learned stages saw DAVIS at the wrong scale")
COARSE_SCALE = 0.5


def coarse_scale_note(frame_hw: Sequence[int], crop: AugmentConfig) -> Optional[str]:
    """A warning when frames of ``frame_hw`` are shown to the model at under COARSE_SCALE of their size, with crops
    of 0.8 of the frame's short side (the demo's 96x128 of 120x160 and data=davis's 192x256 of 240p) to try."""
    lo, hi = trained_scale_range(frame_hw, crop)
    if hi >= COARSE_SCALE:
        return None
    short = max(32, int(round(0.8 * min(frame_hw) / 32)) * 32)
    long = int(round(short * 4 / 3 / 32)) * 32
    h, w = (short, long) if frame_hw[0] <= frame_hw[1] else (long, short)  # a portrait video gets portrait crops
    return (f"train.crop_size={list(crop.size)} on {frame_hw[0]}x{frame_hw[1]} frames: the model learns objects at "
            f"{lo:.2f}-{hi:.2f} of their size and labels the frames resized by {hi:.2f}, so its masks come out "
            f"coarse; crops near the frame's size, e.g. 'train.crop_size=[{h},{w}]', give finer ones for more "
            "compute (docs/RESULTS.md, \"The learned stages saw DAVIS at the wrong scale\")")


def resize_frames(frames: np.ndarray, scale: float) -> np.ndarray:
    """frames (T, H, W, 3) uint8 -> (T, round(H * scale), round(W * scale), 3); the same array at scale 1."""
    if scale == 1.0:
        return frames
    import cv2

    H, W = frames.shape[1:3]
    size = (max(1, round(W * scale)), max(1, round(H * scale)))
    # area averaging when shrinking (no aliasing of fine texture), bilinear when enlarging
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    return np.stack([cv2.resize(np.ascontiguousarray(f), size, interpolation=interp) for f in frames])


def checkpoint_crop(path: str | Path, fallback: AugmentConfig) -> AugmentConfig:
    """The augmentation (crops) an s2d checkpoint trained with (its stamped config), else ``fallback`` (e.g. the
    current config's ``train`` section for a checkpoint without a stamp). Memory-mapped: the tensors are not read."""
    import torch

    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError:  # an old-format (non-zip) file cannot be mapped
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    train = ((ckpt.get("s2d") or {}).get("config") or {}).get("train") if isinstance(ckpt, dict) else None
    if not isinstance(train, dict) or "crop_size" not in train or "crop_scale" not in train:
        return fallback
    return AugmentConfig.of(train)
