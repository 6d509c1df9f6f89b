"""Stage "masks": at most K non-overlapping masks with scores on every frame (pure functions, no I/O)."""
from s2d.masks.maskcut import maskcut
from s2d.masks.paint import paint_non_overlapping

__all__ = ["maskcut", "paint_non_overlapping"]
