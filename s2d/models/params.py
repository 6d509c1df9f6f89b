"""``ModelParams``: every model setting and its default, defined once. The config's ``model`` section is this
dataclass, ``VideoMask2Former(**settings)`` reads its settings through it, and ``conf/model/paper.yaml`` holds only
what the method's model changes (ResNet-50, 256 channels, 100 queries, 9 decoder and 6 encoder layers)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from s2d.choices import Backbone, Which


@dataclass
class ModelParams:
    """The defaults are a VideoMask2Former small enough to train on a CPU in minutes (the demo, the tests)."""
    backbone: Backbone = Backbone.tiny  # tiny | resnet18 | resnet34 | resnet50 | dino_vits8 | dino_vitb8
    hidden_dim: int = 32
    mask_dim: int = 32
    num_queries: int = 10
    nheads: int = 4
    dim_feedforward: int = 64
    dec_layers: int = 3
    enc_layers: int = 1
    enc_dim_feedforward: int = 64
    enc_points: int = 2
    dropout: float = 0.0               # the deformable encoder's; the video decoder has none (as official)
    backbone_weights: Optional[str] = None  # a local ResNet file (torchvision or detectron2 names)
    size_divisibility: int = 32        # frames zero-padded to a multiple of this after normalisation
    # read by VideoMask2Former.from_config, not by the constructor:
    pretrained: Optional[str] = None   # a local checkpoint of any kind s2d.models.weights reads
    pretrained_which: Which = Which.teacher  # teacher | student, for files that hold both
