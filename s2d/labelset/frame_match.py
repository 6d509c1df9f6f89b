"""Which instance of one labelset each tube of another matches, frame by frame."""
from __future__ import annotations

import numpy as np
from pycocotools import mask as mask_utils

from s2d.labelset.types import Instance


def frame_objects(reference: list[Instance], tubes: list[Instance], iou_thr: float) -> np.ndarray:
    """(D, T) int: on each frame, the instance of ``reference`` (its index) whose mask each of the D ``tubes``'
    masks matches at IoU >= ``iou_thr`` (the best one), -1 where none does or the tube has no mask there. One
    pycocotools IoU call per frame, on the RLEs as they are."""
    T = len(tubes[0].segmentations) if tubes else 0
    out = np.full((len(tubes), T), -1, np.int64)
    for t in range(T):
        d_idx = [i for i, d in enumerate(tubes) if d.segmentations[t] is not None]
        g_idx = [j for j, g in enumerate(reference) if g.segmentations[t] is not None]
        if not d_idx or not g_idx:
            continue
        iou = np.asarray(mask_utils.iou([tubes[i].segmentations[t] for i in d_idx],
                                        [reference[j].segmentations[t] for j in g_idx], [0] * len(g_idx)),
                         np.float64).reshape(len(d_idx), len(g_idx))
        best = iou.argmax(1)
        ok = iou[np.arange(len(d_idx)), best] >= iou_thr
        out[np.asarray(d_idx)[ok], t] = np.asarray(g_idx)[best[ok]]
    return out


def held_objects(row: np.ndarray) -> tuple[int, ...]:
    """(T,) per-frame instance (-1: none), a row of ``frame_objects`` -> the instances matched on at least one
    frame, in order of their first matched frame."""
    seen: dict[int, None] = {}
    for j in row:
        if j >= 0:
            seen.setdefault(int(j), None)
    return tuple(seen)
