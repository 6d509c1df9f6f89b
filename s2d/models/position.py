"""Sine positional encodings (DETR), 2-D for images and 3-D for clips, as Mask2Former normalises them.

Positions are 1-based and divided by (size + 1e-6) before scaling to 2*pi: row r of H encodes (r + 1) / (H + eps),
so the last row sits just below 2*pi and a single frame still gets a non-zero temporal code. The arithmetic
follows the official ``PositionEmbeddingSine`` / ``PositionEmbeddingSine3D`` step by step (float32 cumulative
positions, float32 frequencies), which makes the encodings equal to theirs bit for bit.
"""
from __future__ import annotations

import math

import torch

EPS = 1e-6
SCALE = 2 * math.pi


def _normalised(n: int, device) -> torch.Tensor:
    """(n,) float32: (i + 1) / (n + eps) * 2*pi, computed as the official cumsum-then-divide does."""
    p = torch.ones(n, device=device, dtype=torch.float32).cumsum(0)
    return p / (p[-1:] + EPS) * SCALE


def _frequencies(n: int, device, temperature: float = 10000.0) -> torch.Tensor:
    """(n,) float32: temperature ** (2 * floor(i / 2) / n)."""
    d = torch.arange(n, dtype=torch.float32, device=device)
    return temperature ** (2 * (d // 2) / n)


def _interleave(p: torch.Tensor) -> torch.Tensor:
    """(..., n) phases -> (..., n): sin of the even channels and cos of the odd ones, interleaved."""
    return torch.stack((p[..., 0::2].sin(), p[..., 1::2].cos()), dim=-1).flatten(-2)


def sine_2d(h: int, w: int, dim: int, device=None, temperature: float = 10000.0) -> torch.Tensor:
    """-> (dim, h, w): the first half of the channels encodes y, the second half x."""
    npf = dim // 2
    dim_t = _frequencies(npf, device, temperature)
    y = _normalised(h, device)[:, None].expand(h, w)
    x = _normalised(w, device)[None, :].expand(h, w)
    py, px = _interleave(y[..., None] / dim_t), _interleave(x[..., None] / dim_t)
    return torch.cat((py, px), dim=2).permute(2, 0, 1)


def sine_3d(t: int, h: int, w: int, dim: int, device=None) -> torch.Tensor:
    """-> (dim, t, h, w): the 2-D encoding plus a temporal code over all ``dim`` channels (VideoMask2Former adds
    it, it does not concatenate it)."""
    pos = sine_2d(h, w, dim, device)[:, None].expand(dim, t, h, w)
    pt = _interleave(_normalised(t, device)[:, None] / _frequencies(dim, device))  # (t, dim)
    return pos + pt.T[:, :, None, None]
