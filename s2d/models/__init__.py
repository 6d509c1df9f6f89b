"""Class-agnostic VideoMask2Former in plain PyTorch (no detectron2, no custom CUDA ops)."""
from s2d.models.video_mask2former import VideoMask2Former

__all__ = ["VideoMask2Former"]
