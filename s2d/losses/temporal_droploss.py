"""Temporal DropLoss, the loss of S2D's sparse-to-dense distillation.

Paper definition (S2D, Sick et al. 2025): for a matched instance i with pseudo-label masks m_i^t over the clip's
frames t, L_TempDrop(i) = sum_t 1(|m_i^t| > 0) * L_mask(mhat_i^t, m_i^t): an (instance, frame) pair whose
pseudo-label is empty (no keymask there) contributes no loss, so the model is free to propagate the instance into
frames without a keymask instead of being taught that the object is absent. ``drop_rate`` generalises the
indicator for the ablation: an empty pair keeps weight 1 - drop_rate (1 = the paper, 0 = no dropping).
"""
from __future__ import annotations

import torch


def temporal_droploss_weights(targets: torch.Tensor, drop_rate: float = 1.0,
                              known_empty: torch.Tensor | None = None) -> torch.Tensor:
    """targets (n, T, H, W) matched pseudo-label masks -> (n * T,) weights of the per-(instance, frame) mask
    losses, instance-major: 1 where the mask is non-empty, 1 - drop_rate where it is empty. ``known_empty`` (n,)
    or (n, T) bool: instances (or their frames) whose empty frames are known to be empty (a dense labelset's tube,
    not a keymask instance), so absent rather than unlabelled: weight 1 there."""
    present = (targets.flatten(2).sum(-1) > 0).float()            # (n, T)
    if known_empty is not None:
        known = known_empty.to(present.device, present.dtype)
        present = torch.maximum(present, known if known.dim() == 2 else known[:, None])
    present = present.flatten()                                    # (n*T,)
    return present + (1 - present) * (1 - drop_rate)
