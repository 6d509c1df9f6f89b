"""Horizontal-flip test-time augmentation: a clip and its mirror image through the model, the two outputs merged.

A model trained with random flips predicts a mirrored clip about as well as the clip itself, and its errors on
the two differ (a mask boundary decided by a few stride-4 cells, a score near a threshold). Averaging the two
passes keeps what both agree on. It costs a second forward pass and a Q x Q assignment per window.

The mirrored pass is built so that its mask logits, flipped back, lie on the plain pass's grid cell for cell: the
model zero-pads its normalised frames at the bottom and right to a multiple of ``size_divisibility``, so the clip
is first padded with the pixel mean (zero after normalisation) to that multiple and then flipped; the model then
pads nothing, and the padding sits on the left in the mirror instead of the right.

Queries have no order across the two passes (query i of the clip need not hold the same object in the mirror), so
they are paired by the Hungarian algorithm on mask IoU over the whole clip. A pair whose IoU reaches ``pair_iou``
is averaged, foreground probability and mask logits; every other query of the plain pass keeps its own
prediction, and the mirror's unpaired queries are left out (what they hold, the plain pass did not see twice).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment

from s2d.labelset.dense_iou import dense_tube_iou

PAIR_IOU = 0.5  # a plain-pass query and a mirror query are one prediction from this mask IoU over the clip


def mirrored(clip: torch.Tensor, pixel_mean: torch.Tensor, size_divisibility: int) -> torch.Tensor:
    """clip (B, T, 3, H, W) in [0, 1] -> (B, T, 3, Hp, Wp): padded at the bottom and right with ``pixel_mean``
    (1, 3, 1, 1) to a multiple of ``size_divisibility`` (as the model pads), then flipped left to right."""
    d = max(int(size_divisibility), 1)
    H, W = clip.shape[-2:]
    ph, pw = -H % d, -W % d
    if ph or pw:
        B, T = clip.shape[:2]
        flat = clip.flatten(0, 1) - pixel_mean.to(clip)                    # (B*T, 3, H, W): the mean at zero
        clip = (F.pad(flat, (0, pw, 0, ph)) + pixel_mean.to(clip)).unflatten(0, (B, T))
    return clip.flip(-1)


def merge(scores: torch.Tensor, logits: torch.Tensor, scores_m: torch.Tensor, logits_m: torch.Tensor,
          pair_iou: float = PAIR_IOU) -> tuple[torch.Tensor, torch.Tensor]:
    """The plain pass's scores (Q,) and mask logits (Q, T, h, w), merged with the mirror pass's (Qm,) and
    (Qm, T, h, w), the latter already flipped back onto the same grid -> (Q,), (Q, T, h, w)."""
    iou = dense_tube_iou(logits > 0, logits_m > 0)                          # (Q, Qm)
    rows, cols = linear_sum_assignment(-iou.double().cpu().numpy())
    rows, cols = torch.as_tensor(rows, device=iou.device), torch.as_tensor(cols, device=iou.device)
    paired = iou[rows, cols] >= pair_iou
    r, c = rows[paired], cols[paired]                                       # (P,) each
    scores, logits = scores.clone(), logits.clone()
    scores[r] = (scores[r] + scores_m[c]) / 2
    logits[r] = (logits[r] + logits_m[c]) / 2
    return scores, logits
