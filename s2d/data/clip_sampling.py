"""Which frames make a training clip (pure functions).

Sparse keymask labelsets: windows of ``length`` consecutive frames in which at least one instance has a
keymask on every frame; a video without such a window is sampled by the fallback: a random frame plus
``length - 1`` frames within +-``fallback_radius`` of it (sorted, distinct when the video is long enough).
Videos shorter than ``length`` repeat their last frame (padding) — deterministic, and tested.
"""
from __future__ import annotations

import numpy as np

from s2d.labelset.types import VideoLabels


def keymask_windows(labels: VideoLabels, length: int = 3) -> list[int]:
    """Start frames t such that some instance has a mask on t, t+1, ..., t+length-1."""
    T = labels.length
    have = np.zeros((len(labels.instances), T), bool)
    for i, inst in enumerate(labels.instances):
        have[i] = [s is not None for s in inst.segmentations]
    starts = []
    for t in range(0, T - length + 1):
        if have[:, t:t + length].all(axis=1).any():
            starts.append(t)
    return starts


def fallback_frames(num_frames: int, length: int, radius: int, rng: np.random.Generator) -> list[int]:
    if num_frames <= length:
        return pad_frames(list(range(num_frames)), length)
    centre = int(rng.integers(num_frames))
    lo, hi = max(0, centre - radius), min(num_frames - 1, centre + radius)
    pool = [t for t in range(lo, hi + 1) if t != centre]
    others = rng.choice(pool, size=min(length - 1, len(pool)), replace=False).tolist()
    return pad_frames(sorted([centre] + others), length)


def pad_frames(frames: list[int], length: int) -> list[int]:
    """Repeat the last frame until the clip has ``length`` frames (single-frame or short videos)."""
    return frames + [frames[-1]] * (length - len(frames))
