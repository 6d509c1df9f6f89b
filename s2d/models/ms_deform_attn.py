"""Multi-scale deformable attention (Deformable DETR) in plain PyTorch.

This is the reference's own pure-PyTorch path (``ms_deform_attn_core_pytorch``, built on ``grid_sample``)
rather than its custom CUDA kernel: same maths, installs anywhere, somewhat slower on GPU.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def ms_deform_attn_core(value: torch.Tensor, shapes: list[tuple[int, int]], locations: torch.Tensor,
                        weights: torch.Tensor) -> torch.Tensor:
    """value (N, S, M, D); locations (N, Lq, M, L, P, 2) in [0, 1]; weights (N, Lq, M, L, P) -> (N, Lq, M*D)."""
    N, S, M, D = value.shape
    _, Lq, _, L, P, _ = locations.shape
    values = value.split([h * w for h, w in shapes], dim=1)
    grids = 2 * locations - 1
    sampled = []
    for lvl, (h, w) in enumerate(shapes):
        v = values[lvl].flatten(2).transpose(1, 2).reshape(N * M, D, h, w)   # (N*M, D, h, w)
        g = grids[:, :, :, lvl].transpose(1, 2).flatten(0, 1)                  # (N*M, Lq, P, 2)
        sampled.append(F.grid_sample(v, g, mode="bilinear", padding_mode="zeros", align_corners=False))
    w = weights.transpose(1, 2).reshape(N * M, 1, Lq, L * P)
    out = (torch.stack(sampled, dim=-2).flatten(-2) * w).sum(-1)               # (N*M, D, Lq)
    return out.view(N, M * D, Lq).transpose(1, 2).contiguous()


class MSDeformAttn(nn.Module):
    def __init__(self, dim: int = 256, levels: int = 3, heads: int = 8, points: int = 4):
        super().__init__()
        self.levels, self.heads, self.points = levels, heads, points
        self.sampling_offsets = nn.Linear(dim, heads * levels * points * 2)
        self.attention_weights = nn.Linear(dim, heads * levels * points)
        self.value_proj = nn.Linear(dim, dim)
        self.output_proj = nn.Linear(dim, dim)
        self._reset()

    def _reset(self) -> None:
        # offsets start on a ring around the reference point, one direction per head (Deformable DETR init)
        nn.init.constant_(self.sampling_offsets.weight, 0.0)
        theta = torch.arange(self.heads, dtype=torch.float32) * (2.0 * math.pi / self.heads)
        grid = torch.stack([theta.cos(), theta.sin()], -1)
        grid = (grid / grid.abs().max(-1, keepdim=True)[0]).view(self.heads, 1, 1, 2).repeat(1, self.levels,
                                                                                              self.points, 1)
        for i in range(self.points):
            grid[:, :, i, :] *= i + 1
        with torch.no_grad():
            self.sampling_offsets.bias.copy_(grid.view(-1))
        nn.init.constant_(self.attention_weights.weight, 0.0)
        nn.init.constant_(self.attention_weights.bias, 0.0)
        nn.init.xavier_uniform_(self.value_proj.weight)
        nn.init.constant_(self.value_proj.bias, 0.0)
        nn.init.xavier_uniform_(self.output_proj.weight)
        nn.init.constant_(self.output_proj.bias, 0.0)

    def forward(self, query: torch.Tensor, reference: torch.Tensor, value: torch.Tensor,
                shapes: list[tuple[int, int]]) -> torch.Tensor:
        """query (N, Lq, C); reference (N, Lq, L, 2) normalised x, y; value (N, S, C) -> (N, Lq, C)."""
        N, Lq, C = query.shape
        v = self.value_proj(value).view(N, value.shape[1], self.heads, C // self.heads)
        off = self.sampling_offsets(query).view(N, Lq, self.heads, self.levels, self.points, 2)
        w = self.attention_weights(query).view(N, Lq, self.heads, self.levels * self.points).softmax(-1)
        w = w.view(N, Lq, self.heads, self.levels, self.points)
        norm = torch.tensor([[w_, h_] for h_, w_ in shapes], dtype=query.dtype, device=query.device)  # (L, 2)
        loc = reference[:, :, None, :, None, :] + off / norm[None, None, None, :, None, :]
        return self.output_proj(ms_deform_attn_core(v, shapes, loc, w))
