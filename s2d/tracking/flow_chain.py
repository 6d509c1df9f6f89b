"""Dense optical-flow chaining: DIS optical flow (OpenCV) between consecutive frames, points integrated by
bilinear sampling of the flow, visibility by forward-backward consistency.

Its cost is dominated by the dense flow fields, which depend on the video only. Computed once per call and
shared by every query, they make one batched call for all masks of a video nearly as cheap as tracking a
single mask, which is exactly the saving of the batched structure (a learned tracker such as CoTracker
behaves the same way: its per-frame features dominate). A point is visible at a frame while every step so
far was forward-backward consistent and it is inside the frame; once lost it keeps moving with the flow but
stays invisible. The check: |f + b|^2 < fb_relative * (|f|^2 + |b|^2) + fb_threshold^2, with f = f(x) the forward
flow and b = b(x + f) the backward flow where it lands. ``fb_relative`` = 0 is a fixed threshold in pixels;
Sundaram, Brox & Keutzer (ECCV 2010, the dense point trajectories that motion segmentation builds on) use 0.01
with 0.5 px^2, because flow errors grow with the motion: a fixed 1 px loses the points of fast movers (a jumping
horse at 240p) while slow ones are kept.
"""
from __future__ import annotations

import cv2
import numpy as np

from s2d.tracking.base import Tracks, check_queries, sweep
from s2d.tracking.flow_cache import PRESET, FlowCache
from s2d.tracking.params import TrackerParams


def _sample(flow: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Bilinear sample of flow (H, W, 2) at points p (n, 2) -> (n, 2); border values outside."""
    h, w = flow.shape[:2]
    x = np.clip(p[:, 0], 0, w - 1)
    y = np.clip(p[:, 1], 0, h - 1)
    x0 = np.floor(x).astype(int)
    y0 = np.floor(y).astype(int)
    x1 = np.minimum(x0 + 1, w - 1)
    y1 = np.minimum(y0 + 1, h - 1)
    ax = (x - x0)[:, None]
    ay = (y - y0)[:, None]
    return ((1 - ay) * ((1 - ax) * flow[y0, x0] + ax * flow[y0, x1]) +
            ay * ((1 - ax) * flow[y1, x0] + ax * flow[y1, x1]))


class FlowChainTracker:
    """``cache``: a FlowCache whose folder the motion masks filled, so the flow of a video is computed once."""

    def __init__(self, fb_threshold: float = TrackerParams.fb_threshold, preset: int = PRESET,
                 cache: FlowCache | None = None, fb_relative: float = TrackerParams.fb_relative):
        self.fb_threshold, self.fb_relative = fb_threshold, fb_relative
        self.cache = cache if cache is not None else FlowCache(None, preset)
        self._memo: tuple[str, np.ndarray, np.ndarray] | None = None

    def _video_flows(self, gray: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """The whole video's flow from the cache, kept in memory for the next window of the same video (a
        window's calls come one after another), so that the file is read once per video."""
        key = self.cache.key(gray)
        if self._memo is None or self._memo[0] != key:
            self._memo = None  # the last video's fields go before this one's are read
            self._memo = (key, *self.cache.flows(gray, key))
        return self._memo[1], self._memo[2]

    def _advance(self, flows: dict[int, tuple[np.ndarray, np.ndarray]], shape: tuple[int, int]):
        """A step t -> next: move by the flow (f), check by the flow back (g); every point moves with the flow,
        a failed check or leaving the frame marks it lost."""
        h, w = shape

        def advance(t: int, nxt: int, p: np.ndarray, lost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            f, g = flows[t]
            fp = _sample(f, p)
            moved = p + fp
            bp = _sample(g, moved)
            back = moved + bp
            if self.fb_relative > 0:
                consistent = ((back - p) ** 2).sum(1) < self.fb_relative * ((fp ** 2).sum(1) + (bp ** 2).sum(1)) + \
                    self.fb_threshold ** 2
            else:  # the fixed threshold exactly as before fb_relative existed (same floating-point test)
                consistent = np.linalg.norm(back - p, axis=1) < self.fb_threshold
            ok = consistent & (moved[:, 0] >= -0.5) & (moved[:, 0] <= w - 0.5) & (moved[:, 1] >= -0.5) & \
                (moved[:, 1] <= h - 0.5)
            return moved, ok

        return advance

    def track(self, frames: np.ndarray, queries: np.ndarray) -> Tracks:
        return self.track_window(frames, 0, len(frames), queries)

    def track_window(self, frames: np.ndarray, start: int, stop: int, queries: np.ndarray) -> Tracks:
        """``track(frames[start:stop], queries)`` (query frames counted from ``start``), with the flow of the
        whole video: its cache entry is the one the motion masks made, where a slice of the video would be
        keyed apart and computed again. Every flow field depends on its two frames only, so the tracks are the
        slice's own."""
        gray = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames]
        if getattr(self.cache, "root", None) is None:  # nothing kept: the slice's own flow
            fwd, bwd = self.cache.flows(gray[start:stop])  # (T-1, H, W, 2) each
        else:
            fwd, bwd = self._video_flows(gray)
            fwd, bwd = fwd[start:stop - 1], bwd[start:stop - 1]
        T, H, W = stop - start, *frames.shape[1:3]
        q = check_queries(queries, T, H, W).astype(np.float64)
        points = np.zeros((T, len(q), 2), np.float32)
        visible = np.zeros((T, len(q)), bool)
        forward = {t: (fwd[t], bwd[t]) for t in range(T - 1)}          # t -> t + 1
        backward = {t + 1: (bwd[t], fwd[t]) for t in range(T - 1)}     # t + 1 -> t
        sweep(q, list(range(T)), points, visible, self._advance(forward, (H, W)), np.float64)
        sweep(q, list(range(T - 1, -1, -1)), points, visible, self._advance(backward, (H, W)), np.float64)
        return Tracks(points, visible)
