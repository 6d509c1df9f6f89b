"""The baseline keymasks must beat: single-frame masks linked frame to frame by mask IoU.

Between consecutive frames, the masks of live tracks and the new frame's masks are assigned by the Hungarian
algorithm (SciPy) on IoU; pairs with IoU >= ``min_iou`` continue a track, the rest start new tracks. A track
that finds no match ends. Tube score = mean of its masks' scores.
"""
from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a (n, H, W), b (m, H, W) bool -> (n, m) IoU."""
    fa = a.reshape(len(a), -1).astype(np.float32)
    fb = b.reshape(len(b), -1).astype(np.float32)
    inter = fa @ fb.T
    union = fa.sum(1)[:, None] + fb.sum(1)[None] - inter
    return np.where(union > 0, inter / np.maximum(union, 1), 0.0)


def link_by_iou(frame_masks: list[np.ndarray], frame_scores: list[np.ndarray], min_iou: float = 0.5
                ) -> list[tuple[list[np.ndarray | None], float]]:
    """-> tubes as (per-frame mask or None, score)."""
    T = len(frame_masks)
    tubes: list[dict] = []
    live: list[int] = []  # tube indices that ended on the previous frame
    for t in range(T):
        masks, scores = frame_masks[t], np.asarray(frame_scores[t])
        taken = np.zeros(len(masks), bool)
        next_live = []
        if live and len(masks):
            prev = np.stack([tubes[i]["masks"][t - 1] for i in live])
            iou = _iou(prev, masks)
            rows, cols = linear_sum_assignment(-iou)
            for r, c in zip(rows, cols):
                if iou[r, c] >= min_iou:
                    tube = tubes[live[r]]
                    tube["masks"][t] = masks[c]
                    tube["scores"].append(float(scores[c]))
                    taken[c] = True
                    next_live.append(live[r])
        for c in np.flatnonzero(~taken):
            per: list[np.ndarray | None] = [None] * T
            per[t] = masks[c]
            tubes.append({"masks": per, "scores": [float(scores[c])]})
            next_live.append(len(tubes) - 1)
        live = next_live
    return [(tb["masks"], float(np.mean(tb["scores"]))) for tb in tubes]
