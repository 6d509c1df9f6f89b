"""DAVIS-2017 unsupervised J&F: equal to a per-pair port of davis2017-evaluation, and hand-computed cases."""
from __future__ import annotations

import logging
import math
import warnings

import cv2
import numpy as np
import pytest
from PIL import Image
from scipy.optimize import linear_sum_assignment

from s2d.data.sources import open_dataset
from s2d.evaluation.davis_jf import (davis_jf, davis_unsupervised_video, disk, evaluate_davis_folders,
                                     proposals_from_predictions, seg2bmap, voc_palette, write_davis_results)
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


def ref_db_statistics(per_frame_values):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)
        M = np.nanmean(per_frame_values)
        O = np.nanmean(per_frame_values > 0.5)
    ids = np.round(np.linspace(1, len(per_frame_values), 5) + 1e-10) - 1
    ids = ids.astype(np.uint8)
    D_bins = [per_frame_values[ids[i]:ids[i + 1] + 1] for i in range(0, 4)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)
        D = np.nanmean(D_bins[0]) - np.nanmean(D_bins[3])
    return M, O, D


def ref_evaluate(davis_root, results_root, sequences):
    """The reference's DAVISEvaluation.evaluate (unsupervised) + evaluation_method.py's global numbers, on files:
    objects 1..max id of the first annotation, proposals 1..max label of the result PNGs, void = 255."""
    J = {"M": [], "R": [], "D": []}
    F = {"M": [], "R": [], "D": []}
    for seq in sequences:
        files = sorted((davis_root / seq).glob("*.png"))
        masks = np.stack([np.array(Image.open(f)) for f in files]).astype(float)
        void = masks == 255
        masks[void] = 0
        n = int(np.max(masks[0]))
        gt = (np.arange(1, n + 1)[:, None, None, None] == masks[None]) > 0
        res = np.stack([np.array(Image.open(results_root / seq / f.name)) for f in files]).astype(float)
        L = int(np.max(res))
        res = (np.arange(1, L + 1)[:, None, None, None] == res[None]) > 0
        j, f = ref_unsupervised(gt, res, void)
        for ii in range(n):
            for store, arr in ((J, j[ii]), (F, f[ii])):
                for key, val in zip("MRD", ref_db_statistics(arr)):
                    store[key].append(val)
    out = {"J-Mean": np.mean(J["M"]), "J-Recall": np.mean(J["R"]), "J-Decay": np.mean(J["D"]),
           "F-Mean": np.mean(F["M"]), "F-Recall": np.mean(F["R"]), "F-Decay": np.mean(F["D"])}
    out["J&F-Mean"] = (out["J-Mean"] + out["F-Mean"]) / 2
    return out
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


# ---- the protocol on its own files ------------------------------------------------------------------------
def _davis_case(seed: int, root):
    """A small DAVIS-2017 tree (JPEGImages/480p, Annotations_unsupervised/480p, ImageSets/2017/val.txt) and
    predictions for it. Covers objects absent from the first frame (below and above its highest id), void
    pixels, hidden duplicate tubes (lower-scored exact copies), empty predictions, score ties, up to 20
    predictions and, now and then, a sequence longer than 256 frames (the reference's uint8 bin edges)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    seqs, preds = [], {}
    for s in range(int(rng.integers(1, 4))):
        name = f"seq{s}"
        t = 300 if rng.random() < 0.1 else int(rng.integers(1, 9))
        h, w = (12, 14) if t > 20 else (int(rng.integers(10, 30)), int(rng.integers(10, 30)))
        yy, xx = np.mgrid[:h, :w]
        n = int(rng.integers(0, 4))
        label = np.zeros((t, h, w), np.uint8)
        objs = []
        for i in range(n):
            c, r, vel = rng.uniform(0, [w, h]), rng.uniform(2, max(h, w) / 2.5), rng.uniform(-2, 2, 2)
            m = np.stack([((xx - c[0] - vel[0] * k) ** 2 + (yy - c[1] - vel[1] * k) ** 2) < r * r for k in range(t)])
            start = int(rng.integers(0, t)) if rng.random() < 0.4 else 0  # enters later
            m[:start] = False
            label[m] = i + 1
            objs.append(m)
        label[rng.random((t, h, w)) < 0.03] = 255  # void
        for k in range(t):
            Image.new("RGB", (w, h)).save(_mk(root / "JPEGImages" / "480p" / name) / f"{k:05d}.jpg")
            im = Image.fromarray(label[k], mode="P")
            im.putpalette(voc_palette().flatten().tolist())
            im.save(_mk(root / "Annotations_unsupervised" / "480p" / name) / f"{k:05d}.png")
        masks = []
        for _ in range(int(rng.integers(0, 9))):
            if objs and rng.random() < 0.7:
                masks.append(np.roll(objs[int(rng.integers(len(objs)))], int(rng.integers(-2, 3)), axis=2))
            else:
                masks.append(rng.random((t, h, w)) < rng.uniform(0, 0.2))
            if rng.random() < 0.2:
                masks.append(masks[-1].copy())  # a hidden duplicate
        if rng.random() < 0.1:
            masks += [np.zeros((t, h, w), bool)] * 2
        scores = [float(x) for x in np.round(rng.random(len(masks)), 1)]
        if masks:
            preds[name] = VideoLabels.from_masks(name, np.stack(masks), scores=scores)
        else:
            preds[name] = VideoLabels(name, h, w, t)
        seqs.append(name)
    _mk(root / "ImageSets" / "2017")
    (root / "ImageSets" / "2017" / "val.txt").write_text("\n".join(seqs) + "\n")
    return seqs, preds


def _mk(p):
    p.mkdir(parents=True, exist_ok=True)
    return p


def _blob(t, h, w, frames, x0, y0, size=4):
    m = np.zeros((t, h, w), bool)
    for k in frames:
        m[k, y0:y0 + size, x0:x0 + size] = True
    return m


def test_hidden_prediction_is_no_proposal():
    """Objects: 1 on frames 0-1 (top left), 2 on frames 0, 2, 3 (bottom right). Predictions: a false positive
    at 0.9 elsewhere on every frame, and two exact copies of object 1 at 0.8 and 0.7: the 0.7 copy owns no
    pixel, so the result PNGs hold labels 1 and 2 only. All pairs are perfect, disjoint (farther apart than the
    boundary tolerance) or empty, so per frame F = J. Object 1 <-> the 0.8 copy: J 1 on every frame (both empty
    on 2-3); object 2 <-> the false positive: 0. J = F = J&F = 0.5. Had the hidden copy been a third (empty)
    proposal, object 2 would take it and score 1 on frame 1: 0.625."""
    t, h, w = 4, 40, 40
    o1, o2 = _blob(t, h, w, [0, 1], 2, 2), _blob(t, h, w, [0, 2, 3], 30, 30)
    gt = VideoLabels.from_masks("s", np.stack([o1, o2]))
    for inst, i in zip(gt.instances, (1, 2)):
        inst.extra["davis_id"] = i
    fp = _blob(t, h, w, range(4), 2, 30)
    pred = VideoLabels.from_masks("s", np.stack([fp, o1, o1]), scores=[0.9, 0.8, 0.7])
    assert proposals_from_predictions(pred).shape[0] == 2
    s = davis_jf([gt], {"s": pred})
    assert s["J-Mean"] == 0.5 and s["F-Mean"] == 0.5 and s["J&F-Mean"] == 0.5


def test_per_object_rows_are_the_reference_s_per_sequence_table():
    """The per-object rows of the case above, by hand: object 1 J = F = 1, object 2 J = F = 0; a second video
    with one exact object adds (1, 1). The data-set J-Mean and F-Mean are the means of the rows (3 objects:
    2/3), from one pass. A video without a prediction: its object is absent on 2 of its 4 frames, where the empty
    proposal matches (J = F = 1 by the protocol), so 0.5."""
    t, h, w = 4, 40, 40
    o1, o2 = _blob(t, h, w, [0, 1], 2, 2), _blob(t, h, w, [0, 2, 3], 30, 30)
    gt = VideoLabels.from_masks("s", np.stack([o1, o2]))
    other = VideoLabels.from_masks("u", o1[None])
    for v, ids in ((gt, (1, 2)), (other, (1,))):
        for inst, i in zip(v.instances, ids):
            inst.extra["davis_id"] = i
    fp = _blob(t, h, w, range(4), 2, 30)
    pred = VideoLabels.from_masks("s", np.stack([fp, o1, o1]), scores=[0.9, 0.8, 0.7])
    rows: list = []
    s = davis_jf([gt, other], {"s": pred, "u": VideoLabels.from_masks("u", o1[None])}, per_object=rows)
    assert rows == [("s", 1, 1.0, 1.0), ("s", 2, 0.0, 0.0), ("u", 1, 1.0, 1.0)]
    assert s["J-Mean"] == pytest.approx(2 / 3) and s["F-Mean"] == pytest.approx(2 / 3)
    rows = []
    davis_jf([other], {}, per_object=rows)
    assert rows == [("u", 1, 0.5, 0.5)]


def test_proposal_count_is_the_highest_painted_label():
    """A label below the highest one that owns no pixel is still an (empty) proposal, as in the PNGs."""
    t, h, w = 1, 10, 10
    a, b = _blob(t, h, w, [0], 0, 0), _blob(t, h, w, [0], 5, 5)
    pred = VideoLabels.from_masks("s", np.stack([a, a, b]), scores=[0.9, 0.8, 0.7])  # label 2 is hidden
    props = proposals_from_predictions(pred)
    assert props.shape[0] == 3 and not props[1].any() and props[2].sum() == 16


def test_objects_counted_from_the_first_frame(caplog):
    """Object 2 first appears on frame 2 while frame 0 holds only object 1: like the reference, J&F evaluates
    object 1 alone and warns naming the sequence and object. With object 2 on frame 0 and object 1 entering
    later, both count (1 is below the first frame's highest id)."""
    t, h, w = 4, 20, 20
    o1, o2 = _blob(t, h, w, range(4), 1, 1), _blob(t, h, w, [2, 3], 12, 12)
    gt = VideoLabels.from_masks("seqA", np.stack([o1, o2]))
    for inst, i in zip(gt.instances, (1, 2)):
        inst.extra["davis_id"] = i
    pred = VideoLabels.from_masks("seqA", np.stack([o1]))
    with caplog.at_level(logging.WARNING, logger="s2d.evaluation.davis_jf"):
        s = davis_jf([gt], {"seqA": pred})
    assert s["J-Mean"] == 1.0  # object 2 (missed) is not evaluated
    assert any("'seqA'" in r.getMessage() and "object 2 first appears on frame 2" in r.getMessage()
               for r in caplog.records)
    gt.instances[0].extra["davis_id"], gt.instances[1].extra["davis_id"] = 2, 1  # now frame 0 holds id 2
    s = davis_jf([gt], {"seqA": pred})
    # id 1 (the late object) is counted and missed: J 1 on frames 0-1 (both empty), 0 on 2-3 -> 0.5;
    # id 2 found: 1. J-Mean = 0.75
    assert s["J-Mean"] == 0.75


@pytest.mark.parametrize("seed", range(12))
def test_files_and_labelsets_equal_the_reference_protocol(seed, tmp_path):
    """Randomised DAVIS trees: s2d on the files (``evaluate_davis_folders``), s2d on the loaded labelsets
    (``davis_jf``) and the reference's structure on the files all agree exactly."""
    root, res_root = tmp_path / "DAVIS", tmp_path / "results"
    seqs, preds = _davis_case(seed, root)
    for s in seqs:
        write_davis_results(preds[s], res_root / s)
    ann = root / "Annotations_unsupervised" / "480p"
    first = [np.array(Image.open(sorted((ann / s).glob("*.png"))[0])) for s in seqs]
    if all(np.where(f == 255, 0, f).max() == 0 for f in first):
        pytest.skip("no object on any first frame: the reference has nothing to average")
    ref = ref_evaluate(ann, res_root, seqs)
    files = evaluate_davis_folders(ann, res_root, seqs)
    ds = open_dataset("davis", root)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        labelsets = davis_jf(ds.gt_labelset().videos, preds, {r.name: r.void for r in ds if r.void is not None})
    for k in ref:
        assert files[k] == ref[k], (k, files[k], ref[k])
        assert labelsets[k] == ref[k], (k, labelsets[k], ref[k])


def test_decay_bins_wrap_like_the_reference_beyond_256_frames():
    """The reference casts its bin edges to uint8: on a 300-frame sequence they wrap and the last bin is empty,
    so its decay is NaN. Same numbers here (NaN included)."""
    from s2d.evaluation.davis_jf import db_statistics

    vals = np.random.default_rng(0).random(300)
    ours = db_statistics(vals)
    np.testing.assert_equal(ours, tuple(float(x) for x in ref_db_statistics(vals)))
    assert math.isnan(ours[2])
    ids = (np.round(np.linspace(1, 300, 5) + 1e-10) - 1)
    assert (ids.astype(np.uint8) != ids.astype(int)).any()  # the case really wraps
