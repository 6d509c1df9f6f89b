"""Multi-scale deformable-attention pixel decoder (Mask2Former's MSDeformAttnPixelDecoder).

res3..res5 are projected to ``dim`` channels, refined jointly by deformable-attention encoder layers, and
res2 is fused in FPN style to give the stride-4 mask features. Frames of a clip are independent here; time
enters in the transformer decoder.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from s2d.models.ms_deform_attn import MSDeformAttn
from s2d.models.position import sine_2d


class EncoderLayer(nn.Module):
    def __init__(self, dim: int, heads: int, ffn: int, dropout: float, levels: int, points: int):
        super().__init__()
        self.attn = MSDeformAttn(dim, levels, heads, points)
        self.norm1 = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn), nn.ReLU(inplace=True), nn.Dropout(dropout), nn.Linear(ffn, dim))
        self.norm2 = nn.LayerNorm(dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, src, pos, reference, shapes):
        src = self.norm1(src + self.drop(self.attn(src + pos, reference, src, shapes)))
        return self.norm2(src + self.drop(self.ffn(src)))


def _reference_points(shapes: list[tuple[int, int]], device) -> torch.Tensor:
    """Centre of every token of every level, normalised: (S, 2) as x, y."""
    refs = []
    for h, w in shapes:
        y, x = torch.meshgrid(torch.linspace(0.5, h - 0.5, h, device=device) / h,
                              torch.linspace(0.5, w - 0.5, w, device=device) / w, indexing="ij")
        refs.append(torch.stack([x.reshape(-1), y.reshape(-1)], -1))
    return torch.cat(refs, 0)


class PixelDecoder(nn.Module):
    def __init__(self, in_channels: tuple[int, int, int, int], dim: int = 256, mask_dim: int = 256, heads: int = 8,
                 ffn: int = 1024, layers: int = 6, points: int = 4, dropout: float = 0.0):
        super().__init__()
        self.input_proj = nn.ModuleList([nn.Sequential(nn.Conv2d(c, dim, 1), nn.GroupNorm(min(32, dim // 4), dim))
                                         for c in in_channels[1:][::-1]])  # res5, res4, res3
        self.level_embed = nn.Parameter(torch.randn(3, dim) * 0.02)
        self.layers = nn.ModuleList([EncoderLayer(dim, heads, ffn, dropout, 3, points) for _ in range(layers)])
        self.lateral = nn.Sequential(nn.Conv2d(in_channels[0], dim, 1, bias=False), nn.GroupNorm(min(32, dim // 4), dim))
        self.output = nn.Sequential(nn.Conv2d(dim, dim, 3, padding=1, bias=False), nn.GroupNorm(min(32, dim // 4), dim),
                                    nn.ReLU(inplace=True))
        self.mask_features = nn.Conv2d(dim, mask_dim, 1)

    def forward(self, feats: dict[str, torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """feats res2..res5 (N, C_i, H_i, W_i) -> mask features (N, mask_dim, H/4, W/4) and 3 maps (N, dim, h, w)
        from coarse (res5) to fine (res3)."""
        srcs = [proj(feats[k]) for proj, k in zip(self.input_proj, ("res5", "res4", "res3"))]
        shapes = [(s.shape[2], s.shape[3]) for s in srcs]
        N, C = srcs[0].shape[:2]
        flat = torch.cat([s.flatten(2).transpose(1, 2) for s in srcs], 1)                      # (N, S, C)
        pos = torch.cat([(sine_2d(h, w, C, s.device) + self.level_embed[i][:, None, None]).flatten(1).T
                         for i, ((h, w), s) in enumerate(zip(shapes, srcs))], 0)[None]         # (1, S, C)
        ref = _reference_points(shapes, flat.device)[None, :, None, :].expand(N, -1, 3, -1)    # (N, S, 3, 2)
        for layer in self.layers:
            flat = layer(flat, pos, ref, shapes)
        maps = [m.transpose(1, 2).reshape(N, C, h, w)
                for m, (h, w) in zip(flat.split([h * w for h, w in shapes], 1), shapes)]
        fine = self.lateral(feats["res2"])
        fine = self.output(fine + F.interpolate(maps[-1], size=fine.shape[-2:], mode="bilinear", align_corners=False))
        return self.mask_features(fine), maps
