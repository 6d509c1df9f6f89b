"""Class-agnostic VideoMask2Former: backbone -> deformable pixel decoder -> video masked-attention decoder.

Constructor arguments are exactly the ``model`` config keys. Input clips (B, T, 3, H, W) with values in
[0, 1]; outputs pred_logits (B, Q, 2) [object, no-object], pred_masks (B, Q, T, H/4, W/4) logits, and
aux_outputs for deep supervision.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from s2d.models.backbone import CHANNELS, build_backbone, load_backbone_weights
from s2d.models.pixel_decoder import PixelDecoder
from s2d.models.transformer_decoder import VideoTransformerDecoder

PIXEL_MEAN = (0.485, 0.456, 0.406)
PIXEL_STD = (0.229, 0.224, 0.225)


class VideoMask2Former(nn.Module):
    def __init__(self, backbone: str = "resnet50", hidden_dim: int = 256, mask_dim: int = 256, num_queries: int = 100,
                 nheads: int = 8, dim_feedforward: int = 2048, dec_layers: int = 9, enc_layers: int = 6,
                 enc_dim_feedforward: int = 1024, enc_points: int = 4, dropout: float = 0.0,
                 backbone_weights: str | None = None):
        super().__init__()
        self.backbone = build_backbone(backbone)
        if backbone_weights:
            self.backbone_report = load_backbone_weights(self.backbone, backbone_weights)
        self.pixel_decoder = PixelDecoder(CHANNELS[backbone], hidden_dim, mask_dim, nheads, enc_dim_feedforward,
                                          enc_layers, enc_points, dropout)
        self.decoder = VideoTransformerDecoder(hidden_dim, mask_dim, num_queries, nheads, dim_feedforward, dec_layers,
                                               dropout)
        self.register_buffer("pixel_mean", torch.tensor(PIXEL_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(PIXEL_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, clips: torch.Tensor) -> dict:
        B, T = clips.shape[:2]
        x = (clips.flatten(0, 1) - self.pixel_mean) / self.pixel_std  # (B*T, 3, H, W)
        mask_features, maps = self.pixel_decoder(self.backbone(x))
        return self.decoder(maps, mask_features, T)

    @staticmethod
    def scores(pred_logits: torch.Tensor) -> torch.Tensor:
        """(B, Q, 2) -> (B, Q) foreground probability."""
        return pred_logits.softmax(-1)[..., 0]

    def load_pretrained(self, path: str | Path, allow_missing: tuple[str, ...] = ()) -> dict:
        """Initialise from a checkpoint (e.g. an image Mask2Former/CutLER export mapped to these names).

        Only keys listed in ``allow_missing`` (prefixes) may be absent; the report lists what was loaded.
        """
        sd = torch.load(path, map_location="cpu", weights_only=True)
        sd = sd.get("state_dict", sd.get("model", sd))
        sd = {k.removeprefix("model.").removeprefix("student."): v for k, v in sd.items()}
        own = self.state_dict()
        missing = sorted(k for k in own if k not in sd and not k.startswith(allow_missing))
        unexpected = sorted(k for k in sd if k not in own)
        shape = sorted(k for k in sd if k in own and sd[k].shape != own[k].shape)
        if missing or shape:
            from s2d.errors import ConfigError

            raise ConfigError("model.pretrained", f"{path}: {len(missing)} missing keys {missing[:6]}, "
                              f"{len(shape)} with a different shape {shape[:6]}")
        self.load_state_dict({k: v for k, v in sd.items() if k in own}, strict=False)
        return {"loaded": len(sd) - len(unexpected), "unexpected": unexpected}
