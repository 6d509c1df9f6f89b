"""Visibility grouping: masks whose points are visible on the same frames belong together."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.cluster import DBSCAN


def visibility_vectors(visible: np.ndarray, owner: np.ndarray, num_masks: int, gamma_thr: float) -> np.ndarray:
    """visible (T, N) bool, owner (N,) -> (M, T) bool: gamma_t = fraction of the mask's points visible at t,
    the mask is visible at t if gamma_t > gamma_thr. A mask without points is never visible."""
    T = visible.shape[0]
    counts = np.bincount(owner, minlength=num_masks).astype(np.float64)  # (M,)
    vis_sum = np.zeros((num_masks, T))
    np.add.at(vis_sum, owner, visible.T.astype(np.float64))
    gamma = vis_sum / np.maximum(counts, 1)[:, None]                      # (M, T)
    return (gamma > gamma_thr) & (counts > 0)[:, None]


def dbscan_hamming(rows: np.ndarray, eps: float, min_samples: int) -> np.ndarray:
    """DBSCAN with the Hamming metric on binary rows (R, C) -> labels (R,), -1 = noise."""
    if len(rows) == 0:
        return np.zeros(0, np.int64)
    return DBSCAN(eps=eps, min_samples=min_samples, metric="hamming").fit(rows.astype(bool)).labels_


def runs(flags: np.ndarray) -> list[tuple[int, int]]:
    """Maximal runs of True in a 1-D bool array as inclusive (start, end) pairs."""
    d = np.diff(np.r_[0, flags.astype(np.int8), 0])
    starts = np.flatnonzero(d == 1)
    ends = np.flatnonzero(d == -1) - 1
    return list(zip(starts.tolist(), ends.tolist()))


@dataclass
class VisibilityCluster:
    label: int
    members: np.ndarray           # (m,) mask indices
    visible: np.ndarray           # (T,) bool: > member_frac of members visible
    ranges: list[tuple[int, int]]  # maximal visible runs, inclusive
    candidates: dict[int, tuple[int, int]]  # mask index -> the range it is a candidate for


def cluster_visibility(vectors: np.ndarray, mask_frames: np.ndarray, eps: float = 0.2, min_samples: int = 5,
                       member_frac: float = 0.5, range_frac: float = 0.3) -> list[VisibilityCluster]:
    """Cluster masks by visibility vectors and pick, per visible range, the candidate masks.

    A candidate is a member visible on more than ``range_frac`` of the range's frames whose own frame lies
    inside the range.
    """
    labels = dbscan_hamming(vectors, eps, min_samples)
    out = []
    for lab in sorted(set(labels.tolist()) - {-1}):
        members = np.flatnonzero(labels == lab)
        vis = vectors[members].mean(axis=0) > member_frac  # (T,)
        rngs = runs(vis)
        cands: dict[int, tuple[int, int]] = {}
        for i in members:
            for a, b in rngs:
                if a <= mask_frames[i] <= b and vectors[i, a:b + 1].mean() > range_frac:
                    cands[int(i)] = (a, b)
                    break
        out.append(VisibilityCluster(int(lab), members, vis, rngs, cands))
    return out
