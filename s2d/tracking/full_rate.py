"""A point tracker run through the recording's frames between a video's frames (``tracker.full_rate``).

Where a data set keeps every 4th or 5th frame of a recording (SA-V, YouTube-VIS, ``data.stride``) and the frames
in between are on disk (``s2d.data.full_rate``), tracking between kept frames means following motion 4-5 times
as large per step, which the flow tracker's forward-backward check fails far more often. This wrapper hands the
tracker the recording instead, each query moved to its frame's place in it, and keeps the tracks on the kept
frames: a point is visible on a kept frame when the tracker finds it visible there, after every step between.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from s2d.tracking.base import PointTracker, Tracks


class FullRateTracker:
    """``tracker`` on ``full`` (F, H, W, 3), the recording; ``at`` (T,) the index in it of each kept frame."""

    def __init__(self, tracker: PointTracker, full: np.ndarray, at: Sequence[int]):
        self.tracker, self.full, self.at = tracker, full, np.asarray(at, int)
        if len(self.at) and (self.at[-1] >= len(full) or (np.diff(self.at) <= 0).any()):
            raise ValueError(f"kept frames {self.at[:10].tolist()}... must increase within the {len(full)} frames "
                             "of the recording")

    def track(self, frames: np.ndarray, queries: np.ndarray) -> Tracks:
        if len(frames) != len(self.at):
            raise ValueError(f"{len(frames)} frames given, but the recording keeps {len(self.at)}")
        return self.track_window(frames, 0, len(frames), queries)

    def track_window(self, frames: np.ndarray, start: int, stop: int, queries: np.ndarray) -> Tracks:
        """``track(frames[start:stop], queries)`` (query frames counted from ``start``), through the recording
        from kept frame ``start`` to kept frame ``stop - 1``."""
        a, b = int(self.at[start]), int(self.at[stop - 1]) + 1
        rows = self.at[start:stop] - a                                  # (stop - start,) kept frames in [a, b)
        q = np.asarray(queries, np.float32).reshape(-1, 3).copy()
        if len(q):
            t = q[:, 0].astype(int)
            if (t < 0).any() or (t >= stop - start).any():
                raise ValueError(f"query frame outside 0..{stop - start - 1}")
            q[:, 0] = rows[t]
        if hasattr(self.tracker, "track_window"):  # the flow tracker reads the whole recording's cached flow
            tr = self.tracker.track_window(self.full, a, b, q)
        else:
            tr = self.tracker.track(self.full[a:b], q)
        return Tracks(tr.points[rows], tr.visible[rows])
