"""Pyramidal Lucas-Kanade (OpenCV) with forward-backward consistency, batched over all queries.

Per frame pair, ONE ``calcOpticalFlowPyrLK`` call moves every point that is currently tracked, whatever
query frame it started from; a second call moves them back. A point stays visible while LK converges, the
round trip returns within ``fb_threshold`` pixels and it is inside the frame. Once lost, a point is not
re-detected: its position is carried by the dense optical flow (DIS) at its position, so occluded points move
with their surroundings, and it stays invisible. Every point is tracked independently of the others, so one
call for all masks gives the same tracks as one call per mask. Backward tracking (query frame -> 0)
is the same procedure on the reversed frame order.
"""
from __future__ import annotations

import cv2
import numpy as np

from s2d.tracking.base import Tracks, check_queries, sweep
from s2d.tracking.flow_chain import _sample
from s2d.tracking.params import TrackerParams


class LucasKanadeTracker:
    def __init__(self, window: int = TrackerParams.window, levels: int = TrackerParams.levels,
                 fb_threshold: float = TrackerParams.fb_threshold, max_error: float = 30.0):
        self.window = window
        self.levels = levels
        self.fb_threshold = fb_threshold
        self.max_error = max_error
        self._dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
        self._params = dict(winSize=(window, window), maxLevel=levels,
                            criteria=(cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 20, 0.03))

    def _step(self, g0: np.ndarray, g1: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Move points p (n, 2) from g0 to g1 -> new points (n, 2), ok (n,)."""
        p0 = p.reshape(-1, 1, 2).astype(np.float32)
        p1, st, err = cv2.calcOpticalFlowPyrLK(g0, g1, p0, None, **self._params)
        pb, stb, _ = cv2.calcOpticalFlowPyrLK(g1, g0, p1, None, **self._params)
        p1, pb = p1.reshape(-1, 2), pb.reshape(-1, 2)
        fb = np.linalg.norm(pb - p, axis=1)
        h, w = g0.shape
        inside = (p1[:, 0] >= 0) & (p1[:, 0] <= w - 1) & (p1[:, 1] >= 0) & (p1[:, 1] <= h - 1)
        ok = (st[:, 0] == 1) & (stb[:, 0] == 1) & (fb < self.fb_threshold) & (err[:, 0] < self.max_error) & inside
        return p1, ok

    def _carry(self, g0: np.ndarray, g1: np.ndarray, p: np.ndarray) -> np.ndarray:
        """Lost points move with the dense DIS flow g0 -> g1 at their position. The flow depends on the frames
        only, so every point's track is independent of which other points share the call."""
        flow = self._dis.calc(g0, g1, None)
        return p + _sample(flow, p.astype(np.float64)).astype(np.float32)

    def _advance(self, gray: list[np.ndarray]):
        """A step t -> next: tracked points move by pyramidal LK (and may be lost); lost ones are carried by
        the dense flow, so a point that comes back into view is still in the right place."""

        def advance(t: int, nxt: int, p: np.ndarray, lost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            moved, ok = p.copy(), np.ones(len(p), bool)
            act = np.flatnonzero(~lost)
            if len(act):
                moved[act], ok[act] = self._step(gray[t], gray[nxt], p[act])
            if lost.any():
                moved[lost] = self._carry(gray[t], gray[nxt], p[lost])
            return moved, ok

        return advance

    def track(self, frames: np.ndarray, queries: np.ndarray) -> Tracks:
        T, H, W = frames.shape[:3]
        q = check_queries(queries, T, H, W)
        gray = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames]
        points = np.zeros((T, len(q), 2), np.float32)
        visible = np.zeros((T, len(q)), bool)
        sweep(q, list(range(T)), points, visible, self._advance(gray))
        sweep(q, list(range(T - 1, -1, -1)), points, visible, self._advance(gray))
        return Tracks(points, visible)
