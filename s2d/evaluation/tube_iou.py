"""Spatio-temporal tube IoU: sum over frames of intersection / sum over frames of union.

A frame where an instance has no mask (None) counts as an empty mask, so a frame where only one of the two
tubes is present adds that tube's area to the union, and a frame where neither is present adds nothing.
All pairs of a frame are computed at once: the frame's masks are decoded together and the intersections are
one matrix product, instead of two RLE merges per pair per frame.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from pycocotools import mask as mask_utils

from s2d.labelset.rle import _as_coco


def _decode_flat(rles: list[dict], h: int, w: int) -> np.ndarray:
    dec = mask_utils.decode([_as_coco(r) for r in rles])  # (H, W, n) uint8, Fortran order
    return dec.reshape(h * w, len(rles), order="F").astype(np.float32)  # (HW, n)


def tube_iou(dt: Sequence[Sequence[dict | None]], gt: Sequence[Sequence[dict | None]], height: int,
             width: int) -> np.ndarray:
    """dt: D tubes, gt: G tubes, each a per-frame list of RLE/None (same length T). Returns IoU (D, G)."""
    D, G = len(dt), len(gt)
    if D == 0 or G == 0:
        return np.zeros((D, G))
    T = len(gt[0])
    inter = np.zeros((D, G), np.float64)
    union = np.zeros((D, G), np.float64)
    # float32 products are exact integers as long as one frame has < 2^24 pixels (4k frames have 8.3M).
    for t in range(T):
        di = [i for i in range(D) if dt[i][t] is not None]
        gi = [j for j in range(G) if gt[j][t] is not None]
        if not di and not gi:
            continue
        a_d = np.zeros(D)
        a_g = np.zeros(G)
        if di and gi:
            both = _decode_flat([dt[i][t] for i in di] + [gt[j][t] for j in gi], height, width)
            dm, gm = both[:, :len(di)], both[:, len(di):]
            a_d[di] = dm.sum(0, dtype=np.float64)
            a_g[gi] = gm.sum(0, dtype=np.float64)
            it = dm.T @ gm  # (d, g)
            inter[np.ix_(di, gi)] += it
            union[np.ix_(di, gi)] -= it
        else:
            # one side absent on this frame: areas alone, no decode needed
            if di:
                a_d[di] = mask_utils.area([_as_coco(dt[i][t]) for i in di])
            if gi:
                a_g[gi] = mask_utils.area([_as_coco(gt[j][t]) for j in gi])
        union += a_d[:, None] + a_g[None, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)
