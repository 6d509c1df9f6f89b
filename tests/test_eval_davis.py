"""DAVIS-2017 unsupervised J&F: equal to a per-pair port of davis2017-evaluation, and hand-computed cases."""
from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

from s2d.evaluation.davis_jf import davis_jf, davis_unsupervised_video, disk, proposals_from_predictions, seg2bmap
from s2d.labelset.types import VideoLabels


# ---- the reference, per pair, as davis2017-evaluation/davis2017/metrics.py writes it ----------------------
def ref_iou(annotation, segmentation, void):
    void = void.astype(bool)
    inters = np.sum((segmentation & annotation) & np.logical_not(void), axis=(-2, -1))
    union = np.sum((segmentation | annotation) & np.logical_not(void), axis=(-2, -1))
    j = inters / np.where(union == 0, 1, union)
    j[np.isclose(union, 0)] = 1
    return j


def ref_f_measure(fg, gt, void, bound_th=0.008):
    bound_pix = bound_th if bound_th >= 1 else np.ceil(bound_th * np.linalg.norm(fg.shape))
    fb = seg2bmap(fg * np.logical_not(void))
    gb = seg2bmap(gt * np.logical_not(void))
    fd = cv2.dilate(fb.astype(np.uint8), disk(bound_pix).astype(np.uint8))
    gd = cv2.dilate(gb.astype(np.uint8), disk(bound_pix).astype(np.uint8))
    gt_match = gb * fd
    fg_match = fb * gd
    n_fg, n_gt = np.sum(fb), np.sum(gb)
    if n_fg == 0 and n_gt > 0:
        precision, recall = 1, 0
    elif n_fg > 0 and n_gt == 0:
        precision, recall = 0, 1
    elif n_fg == 0 and n_gt == 0:
        precision, recall = 1, 1
    else:
        precision, recall = np.sum(fg_match) / float(n_fg), np.sum(gt_match) / float(n_gt)
    return 0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def ref_unsupervised(gt, res, void):
    if res.shape[0] < gt.shape[0]:
        res = np.concatenate([res, np.zeros((gt.shape[0] - res.shape[0], *res.shape[1:]), bool)])
    J = np.zeros((res.shape[0], gt.shape[0], gt.shape[1]))
    F = np.zeros_like(J)
    for ii in range(gt.shape[0]):
        for jj in range(res.shape[0]):
            J[jj, ii] = ref_iou(gt[ii], res[jj], void)
            F[jj, ii] = [ref_f_measure(res[jj, t], gt[ii, t], void[t]) for t in range(gt.shape[1])]
    row, col = linear_sum_assignment(-(J.mean(2) + F.mean(2)) / 2)
    return J[row, col], F[row, col]
# ----------------------------------------------------------------------------------------------------------


def _blobs(rng, n, t, h, w):
    yy, xx = np.mgrid[:h, :w]
    out = np.zeros((n, t, h, w), bool)
    for i in range(n):
        c, r = rng.uniform(0, [w, h]), rng.uniform(3, h / 3)
        for k in range(t):
            out[i, k] = ((xx - c[0] - k) ** 2 + (yy - c[1]) ** 2) < r * r
    return out


@pytest.mark.parametrize("seed", range(6))
def test_equals_per_pair_reference(seed):
    rng = np.random.default_rng(seed)
    t, h, w = 4, 30, 40
    gt = _blobs(rng, int(rng.integers(1, 4)), t, h, w)
    res = _blobs(rng, int(rng.integers(0, 5)), t, h, w)
    if len(res) and len(gt):
        res[0] = np.roll(gt[0], 2, axis=2)
    void = rng.random((t, h, w)) < 0.02
    j, f = davis_unsupervised_video(gt, res, void)
    rj, rf = ref_unsupervised(gt, res, void)
    np.testing.assert_allclose(j, rj, rtol=0, atol=1e-12)
    np.testing.assert_allclose(f, rf, rtol=0, atol=1e-12)


def test_hand_computed_j_and_perfect_f():
    gt = np.zeros((1, 1, 10, 10), bool)
    gt[0, 0, :, :5] = True          # 50 px
    res = np.zeros((1, 1, 10, 10), bool)
    res[0, 0, :, :4] = True         # 40 px inside gt
    j, f = davis_unsupervised_video(gt, res)
    assert j[0, 0] == pytest.approx(40 / 50)
    # bound = ceil(0.008 * hypot(10, 10)) = 1 px: boundaries one column apart still match
    assert f[0, 0] == pytest.approx(1.0)
    j, f = davis_unsupervised_video(gt, gt)
    assert j[0, 0] == 1 and f[0, 0] == 1
    # both empty on a frame: J = 1 and F = 1 by the protocol
    j, f = davis_unsupervised_video(np.zeros((1, 1, 5, 5), bool), np.zeros((1, 1, 5, 5), bool))
    assert j[0, 0] == 1 and f[0, 0] == 1


def test_too_many_proposals_is_an_error():
    with pytest.raises(ValueError, match="at most 20"):
        davis_unsupervised_video(np.zeros((1, 1, 4, 4), bool), np.zeros((21, 1, 4, 4), bool))


def test_proposals_do_not_overlap_and_higher_score_wins():
    a = np.zeros((1, 6, 6), bool)
    a[0, :4, :4] = True
    b = np.zeros((1, 6, 6), bool)
    b[0, 2:, 2:] = True
    pred = VideoLabels.from_masks("v", np.stack([a, b]), scores=[0.3, 0.9])
    props = proposals_from_predictions(pred)
    assert props.shape == (2, 1, 6, 6)
    assert props[0].sum() == 16 and props[0, 0, 3, 3]  # rank 0 = score 0.9 = b owns the overlap
    assert not (props[0] & props[1]).any()


def test_dataset_jf_on_real_davis_masks(davis_root):
    from s2d.data.sources import open_dataset

    ds = open_dataset("davis", davis_root, short_side=96, videos=["car-shadow", "blackswan"])
    gt = ds.gt_labelset()
    perfect = davis_jf(gt.videos, {v.name: v for v in gt})
    assert perfect["J&F-Mean"] == 1.0
    # shift every predicted mask 4 px right: J and F drop but stay well above 0
    shifted = {}
    for v in gt:
        m = np.roll(v.masks(), 4, axis=3)
        shifted[v.name] = VideoLabels.from_masks(v.name, m)
    s = davis_jf(gt.videos, shifted)
    assert 0.5 < s["J-Mean"] < 1.0 and 0.3 < s["F-Mean"] < 1.0
    assert s["J&F-Mean"] == pytest.approx((s["J-Mean"] + s["F-Mean"]) / 2)
    none = davis_jf(gt.videos, {})
    assert none["J-Mean"] == 0.0 and not math.isnan(none["J&F-Mean"])
