"""Weight-free patch features for MaskCut: colour, texture and position, nothing downloaded.

Per patch of ``patch x patch`` pixels: the mean and standard deviation of CIE-Lab colour, the mean gradient
magnitude and orientation coherence (texture), and the patch centre (a weak position prior, so that a cut
prefers compact regions). Each group is standardised over the frame and weighted, then the vector is
L2-normalised, so a dot product is a cosine similarity as with DINO features.
"""
from __future__ import annotations

import cv2
import numpy as np


def color_features(frame: np.ndarray, patch: int = 8, position_weight: float = 0.5) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> (h, w, C) float32 with h = H // patch, w = W // patch."""
    H, W = frame.shape[:2]
    h, w = max(1, H // patch), max(1, W // patch)
    img = cv2.resize(frame, (w * patch, h * patch), interpolation=cv2.INTER_AREA) if (H, W) != (h * patch, w * patch) \
        else frame
    lab = cv2.cvtColor(img, cv2.COLOR_RGB2LAB).astype(np.float32)
    gray = lab[..., 0]
    gx = cv2.Sobel(gray, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(gray, cv2.CV_32F, 0, 1, ksize=3)

    def pool(x: np.ndarray) -> np.ndarray:  # (h*p, w*p, c) -> (h, w, c) mean over each patch
        x = x.reshape(h, patch, w, patch, -1)
        return x.mean(axis=(1, 3))

    mean = pool(lab)                                                   # (h, w, 3)
    std = np.sqrt(np.maximum(pool(lab ** 2) - mean ** 2, 0))           # (h, w, 3)
    mag = pool(np.sqrt(gx ** 2 + gy ** 2)[..., None])                  # (h, w, 1)
    # orientation coherence: |mean of the doubled-angle gradient vectors| / mean magnitude
    c2 = pool(np.stack([gx ** 2 - gy ** 2, 2 * gx * gy], -1))          # (h, w, 2)
    coh = np.linalg.norm(c2, axis=-1, keepdims=True) / (pool((gx ** 2 + gy ** 2)[..., None]) + 1e-6)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    pos = np.stack([xx / max(w - 1, 1), yy / max(h - 1, 1)], -1)       # (h, w, 2)

    def standardise(x: np.ndarray) -> np.ndarray:
        return (x - x.mean(axis=(0, 1))) / (x.std(axis=(0, 1)) + 1e-6)

    groups = [(mean, 1.0), (std, 0.6), (mag, 0.5), (coh, 0.3), (pos, position_weight)]
    feats = np.concatenate([standardise(g) * wgt / np.sqrt(g.shape[-1]) for g, wgt in groups], -1)
    feats /= np.linalg.norm(feats, axis=-1, keepdims=True) + 1e-6
    return feats.astype(np.float32)
