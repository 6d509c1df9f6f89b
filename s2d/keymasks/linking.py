"""Linking: candidates that match the same masks across the video are one instance."""
from __future__ import annotations

import numpy as np

from s2d.keymasks.visibility import dbscan_hamming


def adaptive_dbscan_params(num_columns: int) -> tuple[float, int]:
    """(eps, min_samples) by the width of the match matrix, as the method prescribes."""
    if num_columns > 50:
        return 0.05, 5
    if num_columns < 10:
        return 0.1, 3
    return 0.1, 5


def link(match: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Binary match matrix (Q candidates, M frame masks) -> cluster labels (Q,) (-1 = unlinked) and the
    indices of the columns used (masks matched by at least one candidate)."""
    used = np.flatnonzero(match.any(axis=0))
    if len(used) == 0 or match.shape[0] == 0:
        return np.full(match.shape[0], -1, np.int64), used
    eps, min_samples = adaptive_dbscan_params(len(used))
    return dbscan_hamming(match[:, used], eps, min_samples), used
