"""Decoded training frames kept in memory, least recently used first out, within a byte budget.

A training run reads the same frames over and over (every clip of a video, every epoch); decoding a PNG or
JPEG again each time is a large share of a CPU step on small data sets. Only frames that decoded are kept, so a
broken frame still raises (and is substituted or reported) each time it is asked for. Each data-loader worker
holds its own cache: the budget is per process.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Callable, Hashable

import numpy as np


class FrameCache:
    def __init__(self, max_bytes: int):
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
        self.max_bytes = max_bytes
        self.bytes = 0
        self.hits = self.misses = 0
        self._frames: OrderedDict[Hashable, np.ndarray] = OrderedDict()

    def __len__(self) -> int:
        return len(self._frames)

    def get(self, key: Hashable, read: Callable[[], np.ndarray]) -> np.ndarray:
        """The frame for ``key``, from memory or from ``read()`` (which may raise; nothing is kept then).
        The array is the cached one, not a copy: callers copy before they write (a clip stacks its frames)."""
        if key in self._frames:
            self.hits += 1
            self._frames.move_to_end(key)
            return self._frames[key]
        self.misses += 1
        img = read()
        if img.nbytes <= self.max_bytes:
            self._frames[key] = img
            self.bytes += img.nbytes
            while self.bytes > self.max_bytes:
                _, old = self._frames.popitem(last=False)
                self.bytes -= old.nbytes
        return img
