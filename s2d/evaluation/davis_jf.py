"""DAVIS-2017 unsupervised J&F, equal to the reference ``davis2017-evaluation``.

J (region) is the per-frame IoU with void pixels excluded (1 where both masks are empty); F (boundary) is the
F-measure of boundary pixels matched within ceil(0.008 * image diagonal) pixels. Each ground-truth object is
assigned one of up to 20 proposals by the Hungarian algorithm on mean (J + F) / 2 over the video.

The reference recomputes both boundaries and both dilations for every (object, proposal) pair; here every
mask's boundary and dilated boundary are computed once per frame and the pairs only count overlaps, which
gives the same numbers for (N + M) instead of 2 N M dilations.
"""
from __future__ import annotations

import warnings

import cv2
import numpy as np
from scipy.optimize import linear_sum_assignment

from s2d.labelset.types import VideoLabels

MAX_PROPOSALS = 20
BOUND_TH = 0.008


def disk(radius: float) -> np.ndarray:
    """skimage.morphology.disk: points with x^2 + y^2 <= r^2."""
    L = np.arange(-radius, radius + 1)
    X, Y = np.meshgrid(L, L)
    return ((X ** 2 + Y ** 2) <= radius ** 2).astype(np.uint8)


def seg2bmap(seg: np.ndarray) -> np.ndarray:
    """(H, W) mask -> (H, W) bool boundary map, as ``_seg2bmap`` of the reference (same size, no resampling)."""
    seg = seg.astype(bool)
    e = np.zeros_like(seg)
    s = np.zeros_like(seg)
    se = np.zeros_like(seg)
    e[:, :-1] = seg[:, 1:]
    s[:-1, :] = seg[1:, :]
    se[:-1, :-1] = seg[1:, 1:]
    b = seg ^ e | seg ^ s | seg ^ se
    b[-1, :] = seg[-1, :] ^ e[-1, :]
    b[:, -1] = seg[:, -1] ^ s[:, -1]
    b[-1, -1] = 0
    return b


def _boundaries(masks: np.ndarray, void: np.ndarray | None, bound_pix: float):
    """masks (K, T, H, W) -> boundary (K, T, H, W) bool and dilated boundary (K, T, H, W) bool."""
    k_, t_ = masks.shape[:2]
    se = disk(bound_pix)
    bnd = np.zeros(masks.shape, bool)
    dil = np.zeros(masks.shape, bool)
    for k in range(k_):
        for t in range(t_):
            m = masks[k, t] if void is None else masks[k, t] & ~void[t]
            b = seg2bmap(m)
            bnd[k, t] = b
            dil[k, t] = cv2.dilate(b.astype(np.uint8), se) > 0
    return bnd, dil


def _j_matrix(gt: np.ndarray, res: np.ndarray, void: np.ndarray | None) -> np.ndarray:
    """gt (N, T, H, W), res (M, T, H, W) -> J (M, N, T)."""
    n, t = gt.shape[:2]
    keep = np.ones(gt.shape[1:], bool) if void is None else ~void  # (T, H, W)
    g = (gt & keep).reshape(n, t, -1).astype(np.float32)
    r = (res & keep).reshape(res.shape[0], t, -1).astype(np.float32)
    # float32 products of 0/1 are exact integer counts; divide in float64 as the reference does
    inter = np.einsum("mtp,ntp->mnt", r, g).astype(np.float64)
    union = r.sum(-1, dtype=np.float64)[:, None, :] + g.sum(-1, dtype=np.float64)[None, :, :] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        j = inter / union
    j[np.isclose(union, 0)] = 1
    return j


def _f_matrix(gt: np.ndarray, res: np.ndarray, void: np.ndarray | None) -> np.ndarray:
    """gt (N, T, H, W), res (M, T, H, W) -> F (M, N, T)."""
    h, w = gt.shape[-2:]
    bound_pix = BOUND_TH if BOUND_TH >= 1 else np.ceil(BOUND_TH * np.linalg.norm((h, w)))
    gb, gd = _boundaries(gt, void, bound_pix)
    rb, rd = _boundaries(res, void, bound_pix)
    n, t = gt.shape[:2]
    m = res.shape[0]
    flat = lambda x: x.reshape(x.shape[0], t, -1).astype(np.float32)  # noqa: E731
    # exact integer counts (float32 sums of 0/1 products), then float64 ratios as in the reference
    fg_match = np.einsum("mtp,ntp->mnt", flat(rb), flat(gd)).astype(np.float64)  # proposal boundary near gt's
    gt_match = np.einsum("mtp,ntp->mnt", flat(rd), flat(gb)).astype(np.float64)  # gt boundary near proposal's
    n_fg = flat(rb).sum(-1, dtype=np.float64)[:, None, :].repeat(n, 1)          # (M, N, T)
    n_gt = flat(gb).sum(-1, dtype=np.float64)[None, :, :].repeat(m, 0)
    prec = np.where(n_fg > 0, fg_match / np.maximum(n_fg, 1), 1.0)
    rec = np.where(n_gt > 0, gt_match / np.maximum(n_gt, 1), 1.0)
    prec = np.where((n_fg > 0) & (n_gt == 0), 0.0, prec)
    rec = np.where((n_fg == 0) & (n_gt > 0), 0.0, rec)
    with np.errstate(divide="ignore", invalid="ignore"):
        f = np.where(prec + rec == 0, 0.0, 2 * prec * rec / (prec + rec))
    return f


def db_statistics(per_frame: np.ndarray) -> tuple[float, float, float]:
    """Mean, recall (fraction > 0.5) and decay (first quarter minus last quarter), as the reference."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)
        M = np.nanmean(per_frame)
        O = np.nanmean(per_frame > 0.5)
    ids = (np.round(np.linspace(1, len(per_frame), 5) + 1e-10) - 1).astype(int)
    bins = [per_frame[ids[i]:ids[i + 1] + 1] for i in range(4)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)
        D = np.nanmean(bins[0]) - np.nanmean(bins[3])
    return float(M), float(O), float(D)


def davis_unsupervised_video(gt: np.ndarray, res: np.ndarray, void: np.ndarray | None = None,
                             max_proposals: int = MAX_PROPOSALS) -> tuple[np.ndarray, np.ndarray]:
    """gt (N, T, H, W), res (M, T, H, W) bool -> per-object per-frame J (N, T) and F (N, T) after assignment."""
    if res.shape[0] > max_proposals:
        raise ValueError(f"{res.shape[0]} proposals, the DAVIS protocol allows at most {max_proposals}")
    if res.shape[0] < gt.shape[0]:
        pad = np.zeros((gt.shape[0] - res.shape[0], *res.shape[1:]), bool)
        res = np.concatenate([res, pad], axis=0)
    j = _j_matrix(gt, res, void)  # (M, N, T)
    f = _f_matrix(gt, res, void)
    score = (j.mean(axis=2) + f.mean(axis=2)) / 2  # (M, N)
    row, col = linear_sum_assignment(-score)
    return j[row, col, :], f[row, col, :]


def proposals_from_predictions(pred: VideoLabels, max_proposals: int = MAX_PROPOSALS) -> np.ndarray:
    """Top-scoring predicted tubes -> (M, T, H, W) non-overlapping proposals, like a DAVIS result PNG.

    Painted lowest score first so that where tubes overlap the higher-scoring one owns the pixel.
    """
    order = sorted(range(len(pred.instances)), key=lambda i: -pred.instances[i].score)[:max_proposals]
    masks = pred.masks()[order] if order else np.zeros((0, pred.length, pred.height, pred.width), bool)
    label = np.zeros((pred.length, pred.height, pred.width), np.int32)
    for rank in range(len(order) - 1, -1, -1):
        label[masks[rank]] = rank + 1
    return np.stack([label == r + 1 for r in range(len(order))]) if order else masks


def davis_jf(gt_videos: list[VideoLabels], pred_videos: dict[str, VideoLabels],
             voids: dict[str, np.ndarray] | None = None) -> dict[str, float]:
    """Data-set J&F: J/F mean, recall, decay over all objects of all videos, and J&F-Mean."""
    stats: dict[str, list[float]] = {k: [] for k in ("J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall",
                                                     "F-Decay")}
    for g in gt_videos:
        if not g.instances:
            continue
        gm = g.masks()
        p = pred_videos.get(g.name)
        res = proposals_from_predictions(p) if p is not None else np.zeros((0, *gm.shape[1:]), bool)
        j, f = davis_unsupervised_video(gm, res, None if voids is None else voids.get(g.name))
        for n in range(j.shape[0]):
            for name, arr in (("J", j[n]), ("F", f[n])):
                M, O, D = db_statistics(arr)
                stats[f"{name}-Mean"].append(M)
                stats[f"{name}-Recall"].append(O)
                stats[f"{name}-Decay"].append(D)
    out = {k: float(np.mean(v)) if v else float("nan") for k, v in stats.items()}
    out["J&F-Mean"] = (out["J-Mean"] + out["F-Mean"]) / 2
    return out
