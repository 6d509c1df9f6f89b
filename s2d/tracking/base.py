"""The tracker interface. Queries carry their own start frame, so the masks of every frame of a video go to
the tracker together in ONE call (the authors' code calls the tracker once per mask)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

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
