"""Bridging a tracker failure: temporally disjoint instances that continue one another become one.

Visibility grouping splits an object in two when the tracker loses its points midway (fast motion, blur,
deformation): the masks before and after the loss form two clusters with disjoint frames, and no candidate of
one is ever compared with a mask of the other. This step asks the tracker once more, as propagate-and-match
does: the last keymask of every instance is tracked forward, and where its points land on the first keymask of a
later, disjoint instance with point-mask Jaccard > lambda_J (within ``max_gap`` frames), the two are one object.
Two objects visible at the same time never share a frame's keymasks, so they are never joined. One tracker call
per video for all instances; each instance gets at most one successor and one predecessor (the best J).
"""
from __future__ import annotations

import numpy as np

from s2d.keymasks.queries import build_queries, propagation_grid
from s2d.tracking.base import PointTracker


def stitch_pairs(ends: list[tuple[int, np.ndarray]], starts: list[tuple[int, np.ndarray]], frames: np.ndarray,
                 tracker: PointTracker, lambda_j: float, max_gap: int, grid_args: tuple[int, int, float]
                 ) -> tuple[list[tuple[int, int, float]], int]:
    """ends[i] = (frame, mask) of instance i's last keymask, starts[i] its first. -> (i, j, J) for every pair
    where j starts after i ends, within ``max_gap`` frames, and i's tracked points land in j's first keymask
    with J > lambda_j; and the number of tracker calls made (0 or 1)."""
    n = len(ends)
    pairs = [(i, j) for i in range(n) for j in range(n)
             if i != j and 0 < starts[j][0] - ends[i][0] <= max_gap]
    if not pairs:
        return [], 0
    src = sorted({i for i, _ in pairs})
    lo, hi, ppc = grid_args
    q, owner = build_queries([ends[i][1] for i in src], [ends[i][0] for i in src],
                             [propagation_grid(int(ends[i][1].sum()), lo, hi, ppc) for i in src], over_box=True)
    tracks = tracker.track(frames, q)
    H, W = frames.shape[1:3]
    xy = np.round(tracks.points).astype(np.int64)  # (T, N, 2)
    out = []
    for i, j in pairs:
        k = src.index(i)
        sel = owner == k
        t, mask = starts[j]
        x, y = xy[t, sel, 0], xy[t, sel, 1]
        inside = (x >= 0) & (x < W) & (y >= 0) & (y < H)  # points outside the image count for nobody
        hits = np.zeros(len(x), bool)
        hits[inside] = mask[y[inside], x[inside]]
        J = float(hits.sum() / max(sel.sum(), 1))
        if J > lambda_j:
            out.append((i, j, J))
    return out, 1


def chains(n: int, pairs: list[tuple[int, int, float]]) -> list[list[int]]:
    """Greedy one-to-one joining, best J first -> groups of instance indices in temporal order."""
    succ: dict[int, int] = {}
    pred: dict[int, int] = {}
    for i, j, _ in sorted(pairs, key=lambda p: -p[2]):
        if i not in succ and j not in pred:
            succ[i], pred[j] = j, i
    groups = []
    for i in range(n):
        if i in pred:
            continue
        g = [i]
        while g[-1] in succ:
            g.append(succ[g[-1]])
        groups.append(g)
    return groups
