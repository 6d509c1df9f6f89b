"""Proxy propagate-and-match: where do a candidate's tracked points land among the masks of other frames?"""
from __future__ import annotations

import numpy as np


def label_maps(frame_masks: list[np.ndarray], offsets: np.ndarray, height: int, width: int) -> np.ndarray:
    """Per-frame disjoint masks -> (T, H, W) int64 label maps holding GLOBAL mask indices (-1 = none)."""
    T = len(frame_masks)
    maps = np.full((T, height, width), -1, np.int64)
    for t, masks in enumerate(frame_masks):
        for k, m in enumerate(masks):
            maps[t][m] = offsets[t] + k
    return maps


def point_mask_jaccard(points: np.ndarray, owner: np.ndarray, num_queries: int, maps: np.ndarray,
                       frames: np.ndarray, num_masks: int) -> np.ndarray:
    """J(i, k) for frame masks k on the given frames.

    points (T, N, 2) tracked positions; owner (N,) query index in 0..num_queries-1; maps (T, H, W) global mask
    labels; frames (num_queries, T) bool: frames on which query i is compared (its cluster's merged range).
    J(i, k) = |{points of i inside mask k at k's frame}| / N_i. Visibility is ignored; points outside the
    image count for nobody. Returns (num_queries, num_masks) float.
    """
    T, H, W = maps.shape
    n_i = np.bincount(owner, minlength=num_queries).astype(np.float64)
    hits = np.zeros((num_queries, num_masks))
    xy = np.round(points).astype(np.int64)  # (T, N, 2)
    for t in range(T):
        use = frames[owner, t]
        x, y = xy[t, :, 0], xy[t, :, 1]
        ok = use & (x >= 0) & (x < W) & (y >= 0) & (y < H)
        lab = np.full(len(owner), -1, np.int64)
        lab[ok] = maps[t, y[ok], x[ok]]
        hit = lab >= 0
        np.add.at(hits, (owner[hit], lab[hit]), 1.0)
    return hits / np.maximum(n_i, 1)[:, None]


def one_to_many(J: np.ndarray, mask_frame: np.ndarray, num_frames: int, thr: float = 0.25,
                min_frames: int = 5) -> np.ndarray:
    """(Q, M) Jaccards -> (Q,) bool: the points hit more than one mask (J > thr) on >= min_frames frames."""
    over = J > thr  # (Q, M)
    per_frame = np.zeros((J.shape[0], num_frames), np.int64)
    for t in range(num_frames):
        cols = mask_frame == t
        if cols.any():
            per_frame[:, t] = over[:, cols].sum(1)
    return (per_frame > 1).sum(1) >= min_frames
