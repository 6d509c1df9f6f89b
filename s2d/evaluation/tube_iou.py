"""Spatio-temporal tube IoU: sum over frames of intersection / sum over frames of union.

A frame where an instance has no mask (None) counts as an empty mask, so a frame where only one of the two
tubes is present adds that tube's area to the union, and a frame where neither is present adds nothing.

The reference makes two RLE merges (plus two area calls) per (detection, ground truth, frame), each a
separate call into pycocotools. Here all masks of the video go through ONE call of pycocotools' C ``rleIou``:
  * every ground truth is flagged "crowd", so the C code returns intersection / area(detection mask), from
    which the integer intersection is recovered exactly by rounding (areas < 2^31, relative error ~1e-16);
  * masks of frame t are declared with width W + t. ``rleIou`` computes a pair only when the bounding boxes
    overlap AND the declared sizes agree, and returns -1 otherwise, so pairs from different frames cost a
    box test instead of a merge. Decoding is unaffected: RLE runs are column-major and only the height is
    used to turn run positions into pixels.
The per-frame intersections are then summed into tubes with one bincount.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from pycocotools import mask as mask_utils

from s2d.labelset.rle import areas_of

FRAME_CHUNK = 8


def _flatten(tubes: Sequence[Sequence[dict | None]], height: int, width: int, frames: int):
    """-> pycocotools RLE dicts of every present mask in frame-major order (frame t declared W + t wide), their
    tube and frame indices, and where each frame starts in that order (frames + 1 offsets)."""
    objs, tube_idx, starts = [], [], [0]
    for t in range(frames):
        size = [height, width + t]
        for i, tube in enumerate(tubes):
            seg = tube[t]
            if seg is not None:
                objs.append({"size": size, "counts": seg["counts"]})  # str or bytes: pycocotools takes both
                tube_idx.append(i)
        starts.append(len(objs))
    starts = np.asarray(starts, np.int64)
    frame_idx = np.repeat(np.arange(frames), np.diff(starts))
    return objs, np.asarray(tube_idx, np.int64), frame_idx, starts


def tube_iou_with_areas(dt: Sequence[Sequence[dict | None]], gt: Sequence[Sequence[dict | None]], height: int,
                        width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """-> IoU (D, G), detection areas per frame (D, T), ground-truth areas per frame (G, T)."""
    D, G = len(dt), len(gt)
    T = len(dt[0]) if D else (len(gt[0]) if G else 0)
    d_objs, d_tube, d_frame, d_start = _flatten(dt, height, width, T)
    g_objs, g_tube, g_frame, g_start = _flatten(gt, height, width, T)
    a_d = areas_of(d_objs)  # (n_d,)
    a_g = areas_of(g_objs)  # (n_g,)
    d_areas = np.zeros((D, T))
    g_areas = np.zeros((G, T))
    d_areas[d_tube, d_frame] = a_d
    g_areas[g_tube, g_frame] = a_g
    # Frames go to rleIou in chunks: every call compares all pairs' boxes (quadratic in the chunk's frames),
    # every call has a fixed cost; FRAME_CHUNK frames per call balances the two. Objects are frame-major, so a
    # chunk is a contiguous slice on both sides.
    crowd = [1] * len(g_objs)
    pair_idx, pair_inter = [], []
    for f0 in range(0, T, FRAME_CHUNK):
        f1 = min(T, f0 + FRAME_CHUNK)
        d0, d1, g0, g1 = d_start[f0], d_start[f1], g_start[f0], g_start[f1]
        if d0 == d1 or g0 == g1:
            continue
        frac = np.asarray(mask_utils.iou(d_objs[d0:d1], g_objs[g0:g1], crowd[g0:g1]), np.float64)
        frac = frac.reshape(d1 - d0, g1 - g0)
        r, c = np.nonzero(frac > 0)  # -1: other frame, 0: no overlap
        pair_inter.append(np.rint(frac[r, c] * a_d[d0 + r]))  # exact integer intersections
        pair_idx.append(d_tube[d0 + r] * G + g_tube[g0 + c])
    if pair_idx:  # (D, G) sums of integers: exact in float64
        inter = np.bincount(np.concatenate(pair_idx), np.concatenate(pair_inter), D * G).reshape(D, G)
    else:
        inter = np.zeros((D, G))
    union = d_areas.sum(1)[:, None] + g_areas.sum(1)[None, :] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)
    return iou, d_areas, g_areas


def tube_iou(dt: Sequence[Sequence[dict | None]], gt: Sequence[Sequence[dict | None]], height: int,
             width: int) -> np.ndarray:
    """dt: D tubes, gt: G tubes, each a per-frame list of RLE/None (same length T). Returns IoU (D, G)."""
    return tube_iou_with_areas(dt, gt, height, width)[0]
