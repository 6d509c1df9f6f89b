"""Pixel-accurate masks from patch-grid masks with OpenCV's GrabCut (a colour-model graph cut).

MaskCut works on 8x8-pixel patches, so its masks are blocky and miss thin parts. MaskCut's authors refine
with a dense CRF; GrabCut (cv2.grabCut, a maintained implementation of the same idea: colour GMMs plus a
contrast-sensitive Potts graph cut) does that job without an extra compiled dependency. The patch mask
marks "probably foreground", a band around it "probably background", and everything farther "background".

A learned model's mask (the dense labelset, the final model's predictions) is another case: its interior is
right and only its boundary is soft, while a colour model can be wrong inside an object that shares colours
with its surroundings (a white car on a grey road loses its white panels to the background). ``keep_core``
makes the mask eroded by the band sure foreground, so the cut moves the boundary at most ``band`` pixels either
way. A patch mask keeps its whole area open: a patch on the boundary can be half background.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Sequence

import cv2
import numpy as np


def grabcut_refine(frame: np.ndarray, mask: np.ndarray, band: int = 8, iters: int = 3,
                   keep_core: bool = False) -> np.ndarray:
    """frame (H, W, 3) uint8 RGB, mask (H, W) bool (upsampled patch mask, or a model's mask with ``keep_core``)
    -> refined (H, W) bool, inside the mask dilated by ``band`` (and, with ``keep_core``, holding the mask
    eroded by ``band``)."""
    if mask.sum() < 16 or mask.all():
        return mask
    H, W = mask.shape
    ys, xs = np.nonzero(mask)
    # work on the mask's neighbourhood only: faster, and the colour models stay local
    y0, y1 = max(0, ys.min() - 2 * band), min(H, ys.max() + 2 * band + 1)
    x0, x1 = max(0, xs.min() - 2 * band), min(W, xs.max() + 2 * band + 1)
    m = mask[y0:y1, x0:x1].astype(np.uint8)
    img = np.ascontiguousarray(frame[y0:y1, x0:x1, ::-1])  # BGR
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * band + 1, 2 * band + 1))
    near = cv2.dilate(m, k) > 0
    gc = np.full(m.shape, cv2.GC_BGD, np.uint8)
    gc[near] = cv2.GC_PR_BGD
    gc[m > 0] = cv2.GC_PR_FGD
    if keep_core:
        # cv2.erode counts outside the crop as mask: where the mask meets the frame's edge (the crop is clipped
        # there) that edge is not the object's and stays core; elsewhere the crop has 2 bands of margin
        gc[cv2.erode(m, k) > 0] = cv2.GC_FGD
    if not (gc == cv2.GC_BGD).any() and not (gc == cv2.GC_PR_BGD).any():
        return mask
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    # GrabCut seeds its colour models with k-means on OpenCV's per-thread RNG; without a reset the result of a
    # frame would depend on how many frames this thread refined before (a resumed run would differ).
    cv2.setRNGSeed(0)
    try:
        cv2.grabCut(img, gc, None, bgd, fgd, iters, cv2.GC_INIT_WITH_MASK)
    except cv2.error:  # degenerate colour models (e.g. a flat region): keep the patch mask
        return mask
    out = np.zeros_like(mask)
    out[y0:y1, x0:x1] = (gc == cv2.GC_FGD) | (gc == cv2.GC_PR_FGD)
    return out


def grabcut_refine_many(pairs: Sequence[tuple[np.ndarray, np.ndarray]], workers: int = 1,
                        **settings) -> list[np.ndarray]:
    """[(frame (H, W, 3) uint8 RGB, mask (H, W) bool), ...] -> the refined masks (``grabcut_refine`` with
    ``settings``), in order, on ``workers`` threads. cv2.grabCut releases the GIL and ``grabcut_refine`` seeds
    OpenCV's RNG of the calling thread before each cut, so any number of threads gives the serial result (1.8x
    on 2 cores: benchmarks/refine_speed.py)."""
    if workers <= 1 or len(pairs) < 2:
        return [grabcut_refine(f, m, **settings) for f, m in pairs]
    with ThreadPoolExecutor(min(workers, len(pairs))) as ex:
        return list(ex.map(lambda fm: grabcut_refine(*fm, **settings), pairs))
