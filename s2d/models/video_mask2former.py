"""Class-agnostic VideoMask2Former: backbone -> deformable pixel decoder -> video masked-attention decoder.

Constructor arguments are the ``model`` config keys (``ModelParams``, s2d/models/params.py). Input clips (B, T, 3, H, W) with values in
[0, 1]; outputs pred_logits (B, Q, 2) [object, no-object], pred_masks (B, Q, T, Hp/4, Wp/4) logits, and
aux_outputs for deep supervision. As the official model does, frames are normalised and then zero-padded at the
bottom and right to a multiple of ``size_divisibility`` (Hp, Wp); ``image_size`` = (H, W) comes back with the
outputs, and ``masks_at`` turns mask logits into masks at any size the official way (resize to the padded size,
crop, resize). Each ``B`` entry is one video: the official decoder in eval mode treats its whole input as one
video, which is what s2d's inference feeds it.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from s2d.models.backbone import CHANNELS, build_backbone
from s2d.models.params import ModelParams
from s2d.models.pixel_decoder import PixelDecoder
from s2d.models.transformer_decoder import VideoTransformerDecoder

PIXEL_MEAN = (0.485, 0.456, 0.406)
PIXEL_STD = (0.229, 0.224, 0.225)


def masks_at(mask_logits: torch.Tensor, image_size: tuple[int, int], out_size: tuple[int, int],
             size_divisibility: int = 32) -> torch.Tensor:
    """(..., h, w) logits on the padded stride-4 grid -> (..., *out_size) logits: resized to the padded input,
    cropped to the image, resized to ``out_size`` (all bilinear, align_corners=False), as the official inference
    post-processing does. Without padding (divisibility <= 1) this is one resize."""
    lead = mask_logits.shape[:-2]
    m = mask_logits.reshape(1, -1, *mask_logits.shape[-2:]).float()
    d = max(size_divisibility, 1)
    H, W = image_size
    padded = (H + (-H % d), W + (-W % d))
    if padded != (H, W):
        m = F.interpolate(m, size=padded, mode="bilinear", align_corners=False)[..., :H, :W]
    if (m.shape[-2], m.shape[-1]) != tuple(out_size):
        m = F.interpolate(m, size=out_size, mode="bilinear", align_corners=False)
    return m.reshape(*lead, *out_size)


class VideoMask2Former(nn.Module):
    def __init__(self, **settings):
        """``settings``: fields of ``ModelParams`` (the rest keep its defaults, an unknown one is refused) except
        ``pretrained``/``pretrained_which``, which ``from_config`` reads. ``dropout``: the deformable encoder's
        (MASK_FORMER.DROPOUT); the video decoder has none, as the official one. ``backbone_weights``: a local ResNet
        file (torchvision or detectron2 names) for the backbone alone."""
        super().__init__()
        p = ModelParams(**settings)
        if p.pretrained is not None:
            raise TypeError("VideoMask2Former(pretrained=...): use VideoMask2Former.from_config or load_pretrained")
        self.size_divisibility = p.size_divisibility
        self.backbone = build_backbone(p.backbone)
        self.pixel_decoder = PixelDecoder(CHANNELS[p.backbone], p.hidden_dim, p.mask_dim, p.nheads,
                                          p.enc_dim_feedforward, p.enc_layers, p.enc_points, p.dropout)
        self.decoder = VideoTransformerDecoder(p.hidden_dim, p.mask_dim, p.num_queries, p.nheads, p.dim_feedforward,
                                               p.dec_layers)
        if p.backbone_weights:
            from s2d.models.weights import load_pretrained

            self.backbone_report = load_pretrained(self, p.backbone_weights, key="model.backbone_weights",
                                                   scope="backbone.")
        self.register_buffer("pixel_mean", torch.tensor(PIXEL_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(PIXEL_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, clips: torch.Tensor) -> dict:
        B, T, _, H, W = clips.shape
        x = (clips.flatten(0, 1) - self.pixel_mean) / self.pixel_std  # (B*T, 3, H, W)
        d = self.size_divisibility
        if d > 1 and (H % d or W % d):  # zeros after normalisation, as detectron2's ImageList pads
            x = F.pad(x, (0, -W % d, 0, -H % d))
        mask_features, maps = self.pixel_decoder(self.backbone(x))
        return {**self.decoder(maps, mask_features, T), "image_size": (H, W)}

    def masks_at(self, mask_logits: torch.Tensor, image_size: tuple[int, int],
                 out_size: tuple[int, int]) -> torch.Tensor:
        """Mask logits of this model's outputs at any size the official way (see ``masks_at``)."""
        return masks_at(mask_logits, image_size, out_size, self.size_divisibility)

    def pad_targets(self, targets: list[torch.Tensor], image_size: tuple[int, int]) -> list[torch.Tensor]:
        """Target masks (N, T, H, W) at the input size -> zero-padded like the frames, so that they line up with
        the padded prediction grid (the official criterion pads its targets the same way)."""
        d = self.size_divisibility
        H, W = image_size
        if d <= 1 or not (H % d or W % d):
            return targets
        return [F.pad(t, (0, -W % d, 0, -H % d)) if t.shape[-2:] == (H, W) else t for t in targets]

    @classmethod
    def from_config(cls, cfg: dict, load_weights: bool = True) -> "VideoMask2Former":
        """A model from the ``model`` config section: the constructor keys, then ``pretrained`` (a local file of
        any kind ``s2d.models.weights`` reads; ``pretrained_which`` picks teacher or student) unless
        ``load_weights`` is False (a checkpoint's own weights follow)."""
        import logging

        cfg = dict(cfg)
        path, which = cfg.pop("pretrained", None), cfg.pop("pretrained_which", "teacher")
        if not load_weights:
            cfg["backbone_weights"] = None
        model = cls(**cfg)
        if path and load_weights:
            report = model.load_pretrained(path, which=which)
            logging.getLogger(__name__).info("model.pretrained: %s", report.summary())
        return model

    @classmethod
    def from_checkpoint(cls, path, which: str = "teacher", key: str = "checkpoint") -> "VideoMask2Former":
        """The teacher (or student) of an s2d training checkpoint, built from the model settings the checkpoint
        stores and filled by ``s2d.models.weights.load_pretrained`` (the file is read once, weights only)."""
        from pathlib import Path

        from s2d.errors import ConfigError
        from s2d.models.weights import load_pretrained

        p = Path(path)
        if not p.is_file():
            raise ConfigError(key, f"file {p} does not exist")
        ckpt = torch.load(p, map_location="cpu", weights_only=True)
        settings = (ckpt.get("hyper_parameters") or {}).get("model")
        if not isinstance(settings, dict):
            raise ConfigError(key, f"{p} is not an s2d training checkpoint (no model settings in hyper_parameters)")
        model = cls.from_config(settings, load_weights=False)
        load_pretrained(model, p, which=which, key=key,
                        tensors={k: v for k, v in ckpt["state_dict"].items() if isinstance(v, torch.Tensor)})
        return model.eval()

    @staticmethod
    def scores(pred_logits: torch.Tensor) -> torch.Tensor:
        """(B, Q, 2) -> (B, Q) foreground probability."""
        return pred_logits.softmax(-1)[..., 0]

    def load_pretrained(self, path: str | Path, which: str = "teacher", allow_missing: tuple[str, ...] = ()):
        """Initialise from a local checkpoint of any kind ``s2d.models.weights`` reads; returns its report."""
        from s2d.models.weights import load_pretrained

        return load_pretrained(self, path, which=which, allow_missing=allow_missing)
