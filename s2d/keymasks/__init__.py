"""Stage 1 of S2D, keymask discovery: pure functions from per-frame masks and point tracks to instances."""
from s2d.keymasks.discover import KeymaskParams, KeymaskResult, discover_keymasks

__all__ = ["KeymaskParams", "KeymaskResult", "discover_keymasks"]
