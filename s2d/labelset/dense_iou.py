"""Tube IoU of dense masks: intersections over unions summed over every frame and pixel of two tubes.

The dense counterpart of ``s2d.evaluation.tube_iou`` (the evaluator's, on RLEs), for masks a model or a training
clip holds as tensors: one matrix product for all pairs.
"""
from __future__ import annotations

import torch


def dense_tube_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a (Na, T, H, W) and b (Nb, T, H, W) bool -> IoU (Na, Nb); 0 where both tubes are empty. The pixel counts
    are float32 matrix products of 0/1, exact while a tube holds fewer than 2^24 pixels."""
    fa, fb = a.flatten(1).float(), b.flatten(1).float()                   # (Na, N), (Nb, N)
    inter = fa @ fb.T                                                       # (Na, Nb)
    union = fa.sum(1)[:, None] + fb.sum(1)[None, :] - inter
    return torch.where(union > 0, inter / union.clamp(min=1), torch.zeros_like(inter))
