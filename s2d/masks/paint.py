"""Non-overlapping per-frame masks: the largest mask is painted first and smaller ones over it, so a small
object in front of a large one keeps its pixels (as the method's stage 0 prescribes)."""
from __future__ import annotations

import numpy as np


def paint_non_overlapping(masks: np.ndarray, scores: np.ndarray, max_masks: int, min_score: float,
                          min_area: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """masks (N, H, W) bool, scores (N,) -> (K, H, W) bool disjoint masks and (K,) scores, K <= max_masks.

    Masks below ``min_score`` are dropped, the ``max_masks`` best-scoring are kept, then painted largest
    first; a mask left with fewer than ``min_area`` visible pixels is dropped. Output is ordered by score.
    """
    keep = np.flatnonzero(scores >= min_score)
    keep = keep[np.argsort(-scores[keep], kind="stable")][:max_masks]
    if len(keep) == 0:
        return np.zeros((0, *masks.shape[1:]), bool), np.zeros(0)
    order = keep[np.argsort(-masks[keep].sum(axis=(1, 2)), kind="stable")]  # largest first
    label = np.full(masks.shape[1:], -1, np.int64)
    for i in order:
        label[masks[i]] = i
    out_m, out_s = [], []
    for i in keep:  # by score
        m = label == i
        if m.sum() >= min_area:
            out_m.append(m)
            out_s.append(scores[i])
    if not out_m:
        return np.zeros((0, *masks.shape[1:]), bool), np.zeros(0)
    return np.stack(out_m), np.asarray(out_s, np.float64)
