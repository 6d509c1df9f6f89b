"""Backbones returning multi-scale features {res2..res5} at strides 4, 8, 16, 32.

ResNets come from torchvision (weights=None: nothing is downloaded; ``s2d.models.weights`` loads local files
into them); ``tiny`` is a 4-stage conv net for CPU tests and demos.
"""
from __future__ import annotations


import torch
from torch import nn

from s2d.errors import ConfigError

CHANNELS = {"resnet18": (64, 128, 256, 512), "resnet34": (64, 128, 256, 512),
            "resnet50": (256, 512, 1024, 2048), "tiny": (16, 32, 64, 96),
            "dino_vits8": (384, 384, 384, 384), "dino_vitb8": (768, 768, 768, 768)}


def _conv(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.GroupNorm(4, cout), nn.ReLU(inplace=True))


class TinyBackbone(nn.Module):
    def __init__(self):
        super().__init__()
        c = CHANNELS["tiny"]
        self.stem = nn.Sequential(_conv(3, c[0], 2), _conv(c[0], c[0], 2))  # stride 4
        self.stages = nn.ModuleList([_conv(c[0], c[0], 1), _conv(c[0], c[1], 2), _conv(c[1], c[2], 2),
                                     _conv(c[2], c[3], 2)])

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.stem(x)
        out = {}
        for i, stage in enumerate(self.stages):
            x = stage(x)
            out[f"res{i + 2}"] = x
        return out


class ResNetBackbone(nn.Module):
    def __init__(self, name: str):
        super().__init__()
        import torchvision
        from torchvision.ops.misc import FrozenBatchNorm2d

        # Frozen BN (as Mask2Former): statistics do not depend on how a batch is split over GPUs.
        net = getattr(torchvision.models, name)(weights=None, norm_layer=FrozenBatchNorm2d)
        self.stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.stem(x)
        out = {}
        for i, layer in enumerate((self.layer1, self.layer2, self.layer3, self.layer4)):
            x = layer(x)
            out[f"res{i + 2}"] = x
        return out


class DinoBackbone(nn.Module):
    """A DINO ViT (patch 8) as a multi-scale backbone with a simple feature pyramid (ViTDet): the last layer's
    stride-8 patch tokens are upsampled to stride 4 and pooled to strides 16 and 32."""

    def __init__(self, arch: str):
        super().__init__()
        from s2d.models.dino import DinoViT

        self.vit = DinoViT(arch, patch=8)
        dim = self.vit.norm.normalized_shape[0]
        self.up = nn.ConvTranspose2d(dim, dim, 2, 2)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        tokens = self.vit.patch_tokens(x)  # (N, C, H/8, W/8)
        return {"res2": self.up(tokens), "res3": tokens, "res4": nn.functional.max_pool2d(tokens, 2),
                "res5": nn.functional.max_pool2d(tokens, 4)}


def build_backbone(name: str) -> nn.Module:
    if name == "tiny":
        return TinyBackbone()
    if name in ("dino_vits8", "dino_vitb8"):
        return DinoBackbone("vit_small" if name == "dino_vits8" else "vit_base")
    if name in CHANNELS:
        return ResNetBackbone(name)
    raise ConfigError("model.backbone", f"'{name}' is not one of {sorted(CHANNELS)}")
