"""Single-frame unsupervised masks with the built-in MaskCut: features -> cuts -> refine -> paint."""
from __future__ import annotations

from typing import Callable

import cv2
import numpy as np

from s2d.masks.features import color_features
from s2d.masks.maskcut import maskcut
from s2d.masks.paint import paint_non_overlapping
from s2d.masks.refine import grabcut_refine

FeatureFn = Callable[[np.ndarray], np.ndarray]  # (H, W, 3) uint8 -> (h, w, C) L2-normalised


def _is_background(m: np.ndarray) -> bool:
    """A region touching 3 or 4 image borders, or covering half the frame, is scenery rather than an object."""
    borders = int(m[0].any()) + int(m[-1].any()) + int(m[:, 0].any()) + int(m[:, -1].any())
    return borders >= 3 or m.mean() >= 0.5


def frame_masks(frame: np.ndarray, features: FeatureFn, cuts: int = 4, tau: float = 0.2, max_masks: int = 10,
                min_score: float = 0.35, min_area: float = 0.002, refine: bool = True
                ) -> tuple[np.ndarray, np.ndarray]:
    """(H, W, 3) uint8 -> masks (K, H, W) bool (disjoint, K <= max_masks) and scores (K,)."""
    H, W = frame.shape[:2]
    feats = features(frame)  # (h, w, C)
    found = maskcut(feats, cuts, tau)
    masks, scores = [], []
    for pm in found:
        m = cv2.resize(pm.mask.astype(np.uint8), (W, H), interpolation=cv2.INTER_NEAREST) > 0
        if _is_background(m):
            continue
        if refine:
            m = grabcut_refine(frame, m)
        if m.any():
            masks.append(m)
            scores.append(pm.score)
    if not masks:
        return np.zeros((0, H, W), bool), np.zeros(0)
    return paint_non_overlapping(np.stack(masks), np.asarray(scores), max_masks, min_score,
                                 max(1, int(min_area * H * W)))


def color_feature_fn(patch: int = 8, position_weight: float = 0.2) -> FeatureFn:
    return lambda frame: color_features(frame, patch, position_weight)
