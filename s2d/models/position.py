"""Sine positional encodings (DETR), 2-D for images and 3-D for clips."""
from __future__ import annotations

import math

import torch


def sine_2d(h: int, w: int, dim: int, device=None, temperature: float = 10000.0) -> torch.Tensor:
    """-> (dim, h, w): half the channels encode y, half x."""
    npf = dim // 2
    y = torch.arange(h, device=device, dtype=torch.float32)[:, None].expand(h, w) / max(h, 1) * 2 * math.pi
    x = torch.arange(w, device=device, dtype=torch.float32)[None, :].expand(h, w) / max(w, 1) * 2 * math.pi
    dim_t = temperature ** (2 * (torch.arange(npf, device=device) // 2) / npf)
    px, py = x[..., None] / dim_t, y[..., None] / dim_t
    px = torch.stack((px[..., 0::2].sin(), px[..., 1::2].cos()), dim=3).flatten(2)
    py = torch.stack((py[..., 0::2].sin(), py[..., 1::2].cos()), dim=3).flatten(2)
    return torch.cat((py, px), dim=2).permute(2, 0, 1)


def sine_3d(t: int, h: int, w: int, dim: int, device=None) -> torch.Tensor:
    """-> (dim, t, h, w): the 2-D encoding plus a temporal sine term (VideoMask2Former)."""
    pos = sine_2d(h, w, dim, device)[:, None].expand(dim, t, h, w)
    tt = torch.arange(t, device=device, dtype=torch.float32) / max(t, 1) * 2 * math.pi
    dim_t = 10000.0 ** (2 * (torch.arange(dim, device=device) // 2) / dim)
    pt = tt[:, None] / dim_t  # (t, dim)
    pt = torch.where(torch.arange(dim, device=device) % 2 == 0, pt.sin(), pt.cos())
    return pos + pt.T[:, :, None, None]
