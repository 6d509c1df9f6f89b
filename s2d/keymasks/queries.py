"""Query points of masks: the points of a regular grid that fall inside each mask."""
from __future__ import annotations

import numpy as np


def grid_points(mask: np.ndarray, grid: int, box: tuple[int, int, int, int] | None = None,
                min_points: int = 5) -> np.ndarray:
    """Points (n, 2) as (x, y) of a grid x grid lattice that fall inside ``mask`` (H, W) bool.

    The lattice spans the frame, or ``box`` = (x0, y0, x1, y1) (inclusive) when given, with points at cell
    centres. A mask so small that no lattice point falls inside gets up to ``min_points`` of its own pixels
    (evenly spaced in raster order), so that every mask can be tracked.
    """
    H, W = mask.shape
    x0, y0, x1, y1 = box if box is not None else (0, 0, W - 1, H - 1)
    xs = x0 - 0.5 + (np.arange(grid) + 0.5) * (x1 - x0 + 1) / grid
    ys = y0 - 0.5 + (np.arange(grid) + 0.5) * (y1 - y0 + 1) / grid
    gx, gy = np.meshgrid(xs, ys)
    px = np.clip(np.round(gx).astype(int), 0, W - 1)
    py = np.clip(np.round(gy).astype(int), 0, H - 1)
    inside = mask[py, px]
    pts = np.stack([gx[inside], gy[inside]], 1)
    if len(pts) == 0 and mask.any():
        yy, xx = np.nonzero(mask)
        pick = np.linspace(0, len(xx) - 1, min(min_points, len(xx))).round().astype(int)
        pts = np.stack([xx[pick], yy[pick]], 1).astype(np.float64)
    return pts


def bbox(mask: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(mask)
    return int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())


def propagation_grid(area_px: int, lo: int = 25, hi: int = 50, px_per_cell: float = 800.0) -> int:
    """Grid size for re-tracking a candidate: clamp(area / 800, 25, 50) (laid over the mask's box)."""
    return int(np.clip(area_px / px_per_cell, lo, hi))


def build_queries(masks: list[np.ndarray], frames: list[int], grids: list[int], over_box: bool
                  ) -> tuple[np.ndarray, np.ndarray]:
    """All masks' query points in one array. -> queries (N, 3) rows (t, x, y) and owner (N,) mask index."""
    qs, owner = [], []
    for i, (m, t, g) in enumerate(zip(masks, frames, grids)):
        pts = grid_points(m, g, bbox(m) if over_box and m.any() else None)
        qs.append(np.column_stack([np.full(len(pts), t, np.float64), pts]))
        owner.append(np.full(len(pts), i, np.int64))
    if not qs:
        return np.zeros((0, 3)), np.zeros(0, np.int64)
    return np.concatenate(qs), np.concatenate(owner)
