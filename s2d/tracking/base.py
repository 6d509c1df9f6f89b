"""The tracker interface. Queries carry their own start frame, so the masks of every frame of a video go to
the tracker together in ONE call (the authors' code calls the tracker once per mask)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol

import numpy as np


@dataclass
class Tracks:
    points: np.ndarray   # (T, N, 2) float32 x, y in pixels (pixel centres at integers)
    visible: np.ndarray  # (T, N) bool

    def __post_init__(self) -> None:
        assert self.points.ndim == 3 and self.points.shape[2] == 2, self.points.shape
        assert self.visible.shape == self.points.shape[:2], (self.visible.shape, self.points.shape)


class PointTracker(Protocol):
    def track(self, frames: np.ndarray, queries: np.ndarray) -> Tracks:
        """frames (T, H, W, 3) uint8 RGB; queries (N, 3) rows (t, x, y). Tracks cover every frame: forward and
        backward from each query's own frame, which is where it is visible at its query position."""
        ...


def check_queries(queries: np.ndarray, num_frames: int, height: int, width: int) -> np.ndarray:
    q = np.asarray(queries, np.float32).reshape(-1, 3)
    if len(q) and ((q[:, 0] < 0).any() or (q[:, 0] >= num_frames).any()):
        raise ValueError(f"query frame outside 0..{num_frames - 1}")
    if len(q) and ((q[:, 1] < -0.5).any() or (q[:, 1] > width - 0.5).any() or (q[:, 2] < -0.5).any()
                   or (q[:, 2] > height - 0.5).any()):
        raise ValueError("query point outside the frame")
    return q


# advance(t, next_t, points (n, 2), lost (n,) bool) -> (points at next_t (n, 2), still tracked (n,) bool)
Advance = Callable[[int, int, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


def sweep(q: np.ndarray, order: list[int], points: np.ndarray, visible: np.ndarray, advance: Advance,
          dtype=np.float32) -> None:
    """One sweep of a frame-to-frame tracker along ``order`` (increasing or decreasing frame index), filling
    ``points`` (T, N, 2) and ``visible`` (T, N) in place. A query joins the sweep at its own frame and from then
    on moves with every step; a point ``advance`` reports as not tracked stays invisible for the rest of the
    sweep (the tracker decides how a lost point still moves). The bookkeeping every tracker shares; the
    trackers differ only in ``advance``."""
    start = q[:, 0].astype(int)
    alive = np.zeros(len(q), bool)   # joined this sweep
    lost = np.zeros(len(q), bool)
    cur = np.zeros((len(q), 2), dtype)
    for t, nxt in zip(order, order[1:] + [None]):
        born = start == t
        cur[born] = q[born, 1:]
        alive |= born
        points[t, alive] = cur[alive]
        visible[t, alive] = ~lost[alive]
        if nxt is None or not alive.any():
            continue
        idx = np.flatnonzero(alive)
        moved, ok = advance(t, nxt, cur[idx], lost[idx])
        lost[idx[~ok]] = True
        cur[idx] = moved
