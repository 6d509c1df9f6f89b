"""MaskCut (CutLER): repeated normalized cuts on a patch-affinity graph, one object per cut.

For each cut: affinity A_ij = 1 if cos(f_i, f_j) > tau else eps; solve (D - A) x = lambda D x for the second
smallest eigenvector; bipartition at its mean; the foreground is the side holding the eigenvector's peak,
unless that side covers 3 or more image corners (object-centric prior); keep the connected component that
holds the seed. The patches of the found object are then removed from the graph and the next cut is made.
A cut whose mask overlaps the previous one by IoU > 0.5 or covers <= 1 % of the frame ends the search.
Score of a mask: 1 - lambda (lambda in [0, 1] for a good cut: small = a clean cut), clipped to [0, 1].
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy.linalg import eigh
from scipy.sparse.linalg import eigsh


@dataclass
class PatchMask:
    mask: np.ndarray   # (h, w) bool on the patch grid
    score: float


def _corners_in(bip: np.ndarray) -> int:
    return int(bip[0, 0]) + int(bip[0, -1]) + int(bip[-1, 0]) + int(bip[-1, -1])


def ncut(feats: np.ndarray, tau: float, eps: float = 1e-5) -> tuple[np.ndarray, np.ndarray, float]:
    """(n, C) L2-normalised features -> (bipartition (n,) bool, eigenvector (n,), eigenvalue)."""
    A = feats @ feats.T
    A = np.where(A > tau, 1.0, eps)
    d = A.sum(1)
    n = len(d)
    if n <= 400:  # small graphs: the dense generalized solver, exactly as CutLER
        vals, vecs = eigh(np.diag(d) - A, np.diag(d), subset_by_index=[1, 1])
        v = vecs[:, 0]
        lam = float(vals[0])
    else:
        # (D - A) x = lam D x  <=>  N y = (1 - lam) y with N = D^-1/2 A D^-1/2 and x = D^-1/2 y: the second
        # LARGEST eigenpair of N, which Lanczos finds in a few matrix-vector products instead of O(n^3).
        s = 1.0 / np.sqrt(d)
        N = A * s[:, None] * s[None, :]
        mu, ys = eigsh(N, k=2, which="LA", v0=np.sqrt(d), tol=1e-6)
        order = np.argsort(-mu)
        v = ys[:, order[1]] * s
        lam = float(1.0 - mu[order[1]])
    return v > v.mean(), v, lam


def maskcut(feats: np.ndarray, n_masks: int = 3, tau: float = 0.2, min_ratio: float = 0.01) -> list[PatchMask]:
    """(h, w, C) patch features -> up to ``n_masks`` object masks on the patch grid, in discovery order."""
    h, w, c = feats.shape
    flat = feats.reshape(-1, c).astype(np.float64)
    removed = np.zeros(h * w, bool)
    out: list[PatchMask] = []
    prev: np.ndarray | None = None
    for _ in range(n_masks):
        keep = np.flatnonzero(~removed)
        if len(keep) < 4:
            break
        bip_k, vec_k, lam = ncut(flat[keep], tau)
        bip = np.zeros(h * w, bool)
        bip[keep] = bip_k
        vec = np.zeros(h * w)
        vec[keep] = vec_k
        seed = int(keep[np.argmax(np.abs(vec_k))])
        grid = bip.reshape(h, w)
        if _corners_in(grid) >= 3 or not bip[seed]:
            bip = ~bip & ~removed
            vec = -vec
            seed = int(np.argmax(np.where(removed, -np.inf, vec)))
        n_cc, labels = cv2.connectedComponents(bip.reshape(h, w).astype(np.uint8), connectivity=4)
        lab = labels.reshape(-1)[seed]
        mask = (labels == lab) if lab > 0 else np.zeros((h, w), bool)
        if mask.mean() <= min_ratio:
            break
        if prev is not None:
            inter = (mask & prev).sum()
            if inter / max((mask | prev).sum(), 1) > 0.5:
                break
        out.append(PatchMask(mask, float(np.clip(1.0 - lam, 0.0, 1.0))))
        prev = mask
        removed |= mask.reshape(-1)
    return out
