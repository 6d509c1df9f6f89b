"""A DINO ViT (ViT-S/8, ViT-B/8, /16) in plain PyTorch, loaded from a local checkpoint, as MaskCut's features.

The module names and shapes match the official DINO model definition (facebookresearch/dino
``vision_transformer.py``: qkv with bias, MLP ratio 4, LayerNorm eps 1e-6, no classifier head), so
``dino_deitsmall8_pretrain.pth`` / ``dino_vitbase8_pretrain.pth`` load directly (tested key by key); wrapped checkpoints ("teacher", "student",
"model", "state_dict"; prefixes "module.", "backbone.") are unwrapped. MaskCut uses the *keys* of the last
attention layer as patch features.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from s2d.errors import ConfigError

ARCHS = {"vit_small": (384, 12, 6), "vit_base": (768, 12, 12), "vit_tiny": (192, 12, 3)}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, return_keys: bool = False):
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4)  # (3, B, h, N, d)
        q, k, v = qkv[0], qkv[1], qkv[2]
        if return_keys:
            return k.transpose(1, 2).reshape(B, N, C)  # (B, N, C)
        out = F.scaled_dot_product_attention(q, k, v)   # (B, h, N, d)
        return self.proj(out.transpose(1, 2).reshape(B, N, C))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = nn.Sequential()
        self.mlp.fc1 = nn.Linear(dim, 4 * dim)
        self.mlp.act = nn.GELU()
        self.mlp.fc2 = nn.Linear(4 * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class DinoViT(nn.Module):
    def __init__(self, arch: str = "vit_small", patch: int = 8, base_grid: int = 28):
        super().__init__()
        if arch not in ARCHS:
            raise ConfigError("masks.dino_arch", f"'{arch}' is not one of {sorted(ARCHS)}")
        dim, depth, heads = ARCHS[arch]
        self.patch = patch
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv2d(3, dim, patch, patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + base_grid * base_grid, dim))
        self.blocks = nn.ModuleList([Block(dim, heads) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim, eps=1e-6)

    def _pos(self, h: int, w: int) -> torch.Tensor:
        """Position embedding for an h x w patch grid, resized as the official ``interpolate_pos_encoding``:
        unchanged for the training grid, else bicubic by scale factors (size + 0.1) / n (the 0.1 keeps the
        output size from rounding down)."""
        cls, grid = self.pos_embed[:, :1], self.pos_embed[:, 1:]
        n = int(math.sqrt(grid.shape[1]))
        if h == w == n:
            return self.pos_embed
        grid = grid.reshape(1, n, n, -1).permute(0, 3, 1, 2)
        grid = F.interpolate(grid, scale_factor=((h + 0.1) / n, (w + 0.1) / n), mode="bicubic")
        return torch.cat([cls, grid.permute(0, 2, 3, 1).reshape(1, h * w, -1)], 1)

    def _tokens(self, images: torch.Tensor) -> tuple[torch.Tensor, int, int]:
        x = self.patch_embed.proj(images)  # (B, C, h, w)
        B, C, h, w = x.shape
        x = torch.cat([self.cls_token.expand(B, -1, -1), x.flatten(2).transpose(1, 2)], 1) + self._pos(h, w)
        return x, h, w

    def patch_tokens(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) normalised -> last-layer patch tokens (B, C, h, w) (trainable: used as a backbone)."""
        x, h, w = self._tokens(images)
        for blk in self.blocks:
            x = blk(x)
        x = self.norm(x)[:, 1:]
        return x.transpose(1, 2).reshape(x.shape[0], -1, h, w)

    @torch.no_grad()
    def last_keys(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) normalised -> keys of the last attention layer per patch (B, h, w, C)."""
        x, h, w = self._tokens(images)
        B, C = x.shape[0], x.shape[2]
        for blk in self.blocks[:-1]:
            x = blk(x)
        k = self.blocks[-1].attn(self.blocks[-1].norm1(x), return_keys=True)  # (B, 1 + hw, C)
        return k[:, 1:].reshape(B, h, w, C)


def load_dino(checkpoint: str | Path | None, arch: str = "vit_small") -> tuple[DinoViT, dict]:
    """Build the ViT and load ``checkpoint``; returns the model and a key-mapping report."""
    if checkpoint is None:
        raise ConfigError("masks.dino_checkpoint", "masks.features=dino needs a local DINO checkpoint "
                          "(e.g. dino_deitsmall8_pretrain.pth); nothing is downloaded")
    path = Path(checkpoint)
    if not path.is_file():
        raise ConfigError("masks.dino_checkpoint", f"file {path} does not exist (expected a DINO ViT checkpoint, "
                          "e.g. dino_deitsmall8_pretrain.pth)")
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ConfigError("masks.dino_checkpoint", f"cannot load {path}: {e}") from None
    for key in ("teacher", "student", "model", "state_dict"):
        if isinstance(sd, dict) and key in sd and isinstance(sd[key], dict):
            sd = sd[key]
    sd = {k.removeprefix("module.").removeprefix("backbone."): v for k, v in sd.items()}
    if "patch_embed.proj.weight" not in sd or "pos_embed" not in sd:
        raise ConfigError("masks.dino_checkpoint", f"{path} is not a DINO ViT state dict (no patch_embed/pos_embed)")
    patch = int(sd["patch_embed.proj.weight"].shape[-1])
    grid = int(round(math.sqrt(sd["pos_embed"].shape[1] - 1)))
    model = DinoViT(arch, patch, grid)
    own = model.state_dict()
    shape_mismatch = [k for k in sd if k in own and own[k].shape != sd[k].shape]
    if shape_mismatch:
        raise ConfigError("masks.dino_arch", f"{path} does not fit {arch}: shape mismatch for {shape_mismatch[:5]}")
    result = model.load_state_dict(sd, strict=False)
    missing = [k for k in result.missing_keys]
    if missing:
        raise ConfigError("masks.dino_checkpoint", f"{path} lacks {len(missing)} weights of {arch}: {missing[:8]}")
    model.eval()
    return model, {"loaded": len(sd) - len(result.unexpected_keys), "unexpected": list(result.unexpected_keys),
                   "patch": patch, "arch": arch}


def dino_feature_fn(model: DinoViT, device: str = "cpu"):
    """-> a function (H, W, 3) uint8 -> (H//p, W//p, C) L2-normalised last-layer keys."""
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    model = model.to(device)

    def features(frame: np.ndarray) -> np.ndarray:
        p = model.patch
        H, W = frame.shape[:2]
        h, w = max(1, H // p), max(1, W // p)
        x = torch.from_numpy(np.ascontiguousarray(frame)).permute(2, 0, 1)[None].float() / 255  # (1, 3, H, W)
        x = F.interpolate(x, size=(h * p, w * p), mode="bilinear", align_corners=False)
        k = model.last_keys(((x - mean) / std).to(device))[0]  # (h, w, C)
        return F.normalize(k, dim=-1).cpu().numpy().astype(np.float32)

    return features
