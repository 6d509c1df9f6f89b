"""Clip-consistent augmentation of a training clip: one random crop/resize/flip/rotation, applied to every frame
and every mask in a single resampling, then one random brightness/contrast change on every frame.

The geometric steps are composed into one affine matrix and warped once (kornia's ``warp_affine``), images and
masks together in one call: kornia's chain of per-step modules (crop-resize, then flip, then rotate) costs
2.3-3.9x as much on a 2-core machine (``python benchmarks/augment_speed.py``) and resamples the images twice.
Parameters come from a numpy generator seeded by the caller (the clip's ``item_seed``), never from torch's
global generator, so a clip is a pure function of (seed, epoch, item) in any process, worker or thread count.

Parameter distributions (torchvision's conventions):
  crop     area fraction ~ U(crop_scale), log aspect ratio (w/h) ~ U(log 3/4, log 4/3); 10 tries to fit the
           frame, else the largest centred crop of an allowed aspect ratio; resized to ``size`` (H, W)
  flip     horizontal, with probability ``flip``
  rotation angle ~ U(-rotation, rotation) degrees about the output's centre; uncovered pixels are 0
  colour   brightness factor ~ U(1 - brightness, 1 + brightness) (multiplies), contrast factor likewise (blends
           each frame with its grey mean), in a random order, clamped to [0, 1] after each
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

CROP_RATIO = (3 / 4, 4 / 3)   # allowed crop aspect ratios (w / h) before the resize
CROP_TRIES = 10


@dataclass(frozen=True)
class AugmentConfig:
    enabled: bool = True
    crop_scale: tuple[float, float] = (0.6, 1.0)   # area fraction of the crop (the method: 600-720 px crops)
    size: tuple[int, int] = (96, 128)              # output H, W (the method: short side 360/480)
    flip: float = 0.5
    brightness: float = 0.1                        # 0.9 - 1.1
    contrast: float = 0.1
    rotation: float = 15.0                         # degrees

    @classmethod
    def of(cls, train: Any) -> "AugmentConfig":
        """From a ``train`` config section or a checkpoint's stamped copy of it (dict or OmegaConf node):
        ``crop_size``, ``crop_scale`` and, when present, ``rotation``."""
        kw = {"size": tuple(int(v) for v in train["crop_size"]),
              "crop_scale": tuple(float(v) for v in train["crop_scale"])}
        if "rotation" in train:
            kw["rotation"] = float(train["rotation"])
        return cls(**kw)


@dataclass(frozen=True)
class AugmentParams:
    crop: tuple[int, int, int, int]    # x0, y0, w, h in source pixels
    flip: bool
    angle: float                       # degrees, counter-clockwise
    brightness: float
    contrast: float
    brightness_first: bool


def sample_crop(height: int, width: int, scale: tuple[float, float], rng: np.random.Generator
                ) -> tuple[int, int, int, int]:
    """A random crop (x0, y0, w, h) of a height x width frame with area fraction in ``scale`` and aspect ratio
    in ``CROP_RATIO``; after ``CROP_TRIES`` misses, the largest centred crop whose ratio is allowed."""
    area = height * width
    lo, hi = math.log(CROP_RATIO[0]), math.log(CROP_RATIO[1])
    for _ in range(CROP_TRIES):
        target = area * rng.uniform(*scale)
        ratio = math.exp(rng.uniform(lo, hi))
        w, h = round(math.sqrt(target * ratio)), round(math.sqrt(target / ratio))
        if 0 < w <= width and 0 < h <= height:
            return int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1)), w, h
    ratio = min(max(width / height, CROP_RATIO[0]), CROP_RATIO[1])
    w, h = (width, round(width / ratio)) if width / height <= ratio else (round(height * ratio), height)
    return (width - w) // 2, (height - h) // 2, w, h


def sample_params(height: int, width: int, cfg: AugmentConfig, rng: np.random.Generator) -> AugmentParams:
    crop = sample_crop(height, width, cfg.crop_scale, rng)
    flip = bool(rng.random() < cfg.flip)
    angle = float(rng.uniform(-cfg.rotation, cfg.rotation))
    b = float(rng.uniform(1 - cfg.brightness, 1 + cfg.brightness))
    c = float(rng.uniform(1 - cfg.contrast, 1 + cfg.contrast))
    return AugmentParams(crop, flip, angle, b, c, bool(rng.random() < 0.5))


def warp_matrix(p: AugmentParams, size: tuple[int, int]) -> torch.Tensor:
    """(2, 3) source -> output pixel coordinates (pixel centres at integers, kornia's ``align_corners=True``):
    the crop's corner pixels land on the output's corner pixels, then the flip, then the rotation about the
    output's centre."""
    H, W = size
    x0, y0, w, h = p.crop
    sx, sy = (W - 1) / max(w - 1, 1), (H - 1) / max(h - 1, 1)
    crop = np.array([[sx, 0, -x0 * sx], [0, sy, -y0 * sy], [0, 0, 1]])
    flip = np.array([[-1, 0, W - 1], [0, 1, 0], [0, 0, 1]]) if p.flip else np.eye(3)
    cx, cy = (W - 1) / 2, (H - 1) / 2
    a = math.radians(p.angle)
    # counter-clockwise on screen, whose y axis points down
    rot = np.array([[math.cos(a), math.sin(a), 0], [-math.sin(a), math.cos(a), 0], [0, 0, 1]])
    about = np.array([[1, 0, cx], [0, 1, cy], [0, 0, 1]]) @ rot @ np.array([[1, 0, -cx], [0, 1, -cy], [0, 0, 1]])
    return torch.from_numpy(about @ flip @ crop)[:2].float()


def adjust_colour(imgs: torch.Tensor, p: AugmentParams) -> torch.Tensor:
    """imgs (T, 3, H, W) in [0, 1] -> brightness and contrast changed, in the params' order."""
    def brightness(x):
        return (x * p.brightness).clamp(0, 1)

    def contrast(x):
        grey = (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]).mean((-2, -1))[:, None, None, None]  # (T,1,1,1)
        return (p.contrast * x + (1 - p.contrast) * grey).clamp(0, 1)

    steps = (brightness, contrast) if p.brightness_first else (contrast, brightness)
    for step in steps:
        imgs = step(imgs)
    return imgs


def augment_clip(imgs: torch.Tensor, masks: torch.Tensor, cfg: AugmentConfig, seed: int
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """imgs (T, 3, H, W) in [0, 1], masks (N, T, H, W) {0, 1} -> (T, 3, *size), (N, T, *size) {0, 1}: the same
    geometry on every frame and mask, the same colour change on every frame (a function of ``seed``)."""
    from kornia.geometry.transform import warp_affine

    T, _, H, W = imgs.shape
    p = sample_params(H, W, cfg, np.random.default_rng(seed))
    both = torch.cat([imgs, masks.permute(1, 0, 2, 3).to(imgs.dtype)], 1)           # (T, 3 + N, H, W)
    out = warp_affine(both, warp_matrix(p, cfg.size).expand(T, 2, 3), cfg.size, align_corners=True)
    # a mask is resampled bilinearly and cut at one half, like an image of the object's indicator
    return adjust_colour(out[:, :3], p), (out[:, 3:].permute(1, 0, 2, 3) > 0.5).to(imgs.dtype)
