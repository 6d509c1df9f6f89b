"""Video masked-attention transformer decoder (VideoMask2Former): one set of queries per clip.

Each layer attends, with masked cross-attention, to one feature level of ALL frames of the clip (levels
cycle coarse -> fine), then self-attention between queries, then an FFN. The attention mask of a layer is
the previous prediction thresholded at 0.5, so a query looks only inside its current mask (a query whose
mask is empty everywhere looks everywhere). Predictions come from the learnable queries before the first
layer and after every layer: deep supervision uses all of them.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from s2d.models.position import sine_3d


class MLP(nn.Module):
    def __init__(self, dim: int, out: int, layers: int = 3):
        super().__init__()
        self.layers = nn.ModuleList([nn.Linear(dim, out if i == layers - 1 else dim) for i in range(layers)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x) if i == len(self.layers) - 1 else F.relu(layer(x))
        return x


class DecoderLayer(nn.Module):
    """Masked cross-attention -> self-attention -> FFN, each post-norm. No dropout anywhere: the official video
    decoder builds these layers with dropout 0 whatever MASK_FORMER.DROPOUT says (that one is the encoder's);
    ``ffn`` keeps the official Linear-ReLU-Dropout-Linear slots so checkpoint names line up."""

    def __init__(self, dim: int, heads: int, ffn: int):
        super().__init__()
        self.cross = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.self_attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn), nn.ReLU(inplace=True), nn.Dropout(0.0), nn.Linear(ffn, dim))
        self.norms = nn.ModuleList([nn.LayerNorm(dim) for _ in range(3)])

    def forward(self, q, q_pos, memory, mem_pos, attn_mask):
        x = self.cross(q + q_pos, memory + mem_pos, memory, attn_mask=attn_mask)[0]
        q = self.norms[0](q + x)
        x = self.self_attn(q + q_pos, q + q_pos, q)[0]
        q = self.norms[1](q + x)
        return self.norms[2](q + self.ffn(q))


class VideoTransformerDecoder(nn.Module):
    def __init__(self, dim: int = 256, mask_dim: int = 256, queries: int = 100, heads: int = 8, ffn: int = 2048,
                 layers: int = 9):
        super().__init__()
        self.heads = heads
        self.query_feat = nn.Embedding(queries, dim)
        self.query_embed = nn.Embedding(queries, dim)
        self.level_embed = nn.Embedding(3, dim)
        self.layers = nn.ModuleList([DecoderLayer(dim, heads, ffn) for _ in range(layers)])
        self.norm = nn.LayerNorm(dim)
        self.class_head = nn.Linear(dim, 2)  # [object, no-object]
        self.mask_embed = MLP(dim, mask_dim, 3)

    def _predict(self, q: torch.Tensor, mask_features: torch.Tensor, target_hw: tuple[int, int] | None):
        """q (B, Q, C), mask_features (B, T, C', H, W) -> logits (B, Q, 2), masks (B, Q, T, H, W), attn mask."""
        q = self.norm(q)
        logits = self.class_head(q)
        masks = torch.einsum("bqc,btchw->bqthw", self.mask_embed(q), mask_features)
        attn = None
        if target_hw is not None:
            B, Q, T = masks.shape[:3]
            m = F.interpolate(masks.flatten(1, 2), size=target_hw, mode="bilinear", align_corners=False)
            m = m.view(B, Q, T * target_hw[0] * target_hw[1])
            attn = (m.sigmoid() < 0.5)                                      # True = not allowed to attend
            attn[attn.all(-1)] = False                                      # empty mask: look everywhere
            attn = attn[:, None].expand(-1, self.heads, -1, -1).flatten(0, 1).detach()  # (B*heads, Q, T*h*w)
        return logits, masks, attn

    def forward(self, maps: list[torch.Tensor], mask_features: torch.Tensor, T: int) -> dict:
        """maps: 3 levels (B*T, C, h, w) coarse to fine; mask_features (B*T, C', H, W)."""
        BT, C = maps[0].shape[:2]
        B = BT // T
        mem, pos, sizes = [], [], []
        for i, m in enumerate(maps):
            h, w = m.shape[-2:]
            sizes.append((h, w))
            x = m.view(B, T, C, h, w).permute(0, 1, 3, 4, 2).reshape(B, T * h * w, C)  # (B, T*h*w, C)
            mem.append(x + self.level_embed.weight[i])
            pos.append(sine_3d(T, h, w, C, m.device).permute(1, 2, 3, 0).reshape(1, T * h * w, C))
        mf = mask_features.view(B, T, *mask_features.shape[1:])                           # (B, T, C', H, W)
        q = self.query_feat.weight[None].expand(B, -1, -1)
        q_pos = self.query_embed.weight[None].expand(B, -1, -1)
        outs = []
        logits, masks, attn = self._predict(q, mf, sizes[0])
        outs.append({"pred_logits": logits, "pred_masks": masks})
        for i, layer in enumerate(self.layers):
            lvl = i % 3
            q = layer(q, q_pos, mem[lvl], pos[lvl], attn)
            logits, masks, attn = self._predict(q, mf, sizes[(i + 1) % 3])
            outs.append({"pred_logits": logits, "pred_masks": masks})
        return {**outs[-1], "aux_outputs": outs[:-1]}
