"""Class-agnostic YouTube-VIS video AP/AR: hand-computed answers and equality with the reference port."""
from __future__ import annotations

import copy
import logging

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from s2d.errors import LabelsetError
from s2d.evaluation import evaluate_ap
from s2d.evaluation.reference import reference_evaluate_ap, reference_evaluate_json
from s2d.labelset.ytvis import labelset_from_json, predictions_from_json
from s2d.evaluation.tube_iou import tube_iou
from s2d.labelset.dense_iou import dense_tube_iou
from s2d.labelset import rle
from s2d.labelset.types import Instance, Labelset, VideoLabels

H, W = 20, 20


def box(x0, y0, x1, y1, h=H, w=W):
    m = np.zeros((h, w), bool)
    m[y0:y1, x0:x1] = True
    return rle.encode(m)


def video(name, instances, t=3, h=H, w=W, vid=1):
    return VideoLabels(name, h, w, t, [], instances, vid)


def test_tube_iou_hand_computed():
    a = box(0, 0, 10, 10)   # 100 px
    b = box(5, 0, 15, 10)   # 100 px, overlaps a by 50
    # frame 0: a vs b -> i 50, u 150; frame 1: a vs None -> u += 100; frame 2: both None -> nothing
    iou = tube_iou([[a, a, None]], [[b, None, None]], H, W)
    assert iou[0, 0] == pytest.approx(50 / 250)
    # frames where the detection is present but empty count with area 0
    empty = rle.encode(np.zeros((H, W), bool))
    assert tube_iou([[empty]], [[a]], H, W)[0, 0] == 0.0
    assert tube_iou([[a, a]], [[a, a]], H, W)[0, 0] == 1.0


def test_dense_tube_iou_hand_computed_and_equal_to_the_rle_one():
    import torch

    a = torch.zeros(2, 2, 2, dtype=torch.bool)
    a[0, 0] = True                                                   # 2 cells
    b = torch.zeros(2, 2, 2, dtype=torch.bool)
    b[0, 0, 0] = True                                                # 1 cell inside a[0]
    assert torch.allclose(dense_tube_iou(a, b), torch.tensor([[0.5, 0.0], [0.0, 0.0]]))  # empty pairs: 0
    rng = np.random.default_rng(0)
    d, g = rng.random((3, 4, H, W)) > 0.6, rng.random((2, 4, H, W)) > 0.5    # (tubes, T, H, W)
    enc = [[[rle.encode(f) for f in t] for t in x] for x in (d, g)]
    np.testing.assert_allclose(dense_tube_iou(torch.from_numpy(d), torch.from_numpy(g)).numpy(),
                               tube_iou(*enc, H, W), rtol=1e-6)


def test_known_answer_three_frame_video():
    """2 objects; the top detection matches object A exactly, the second matches B with tube IoU 2/3.

    IoU thresholds 0.50..0.65 (4 of 10): both matched -> precision 1 at every recall -> AP_t = 1.
    Thresholds 0.70..0.95 (6 of 10): only A -> precision 1 up to recall 0.5 -> 51 of 101 points.
    AP = (4 * 101 + 6 * 51) / 1010 = 71/101; AP75 = 51/101; AR1 = 0.5; AR10 = (4 * 1 + 6 * 0.5) / 10 = 0.7.
    """
    A = [box(0, 0, 10, 10)] * 3
    B = [box(10, 10, 20, 20)] * 3
    gt = Labelset([video("v", [Instance(A), Instance(B)])])
    d2 = [B[0], B[1], None]  # intersection 200, union 300
    pred = Labelset([video("v", [Instance(A, score=0.9), Instance(d2, score=0.8)])])
    for fn in (evaluate_ap, reference_evaluate_ap):
        s = fn(gt, pred)
        assert s["AP"] == pytest.approx(71 / 101, abs=1e-12)
        assert round(s["AP"], 5) == 0.70297
        assert s["AP50"] == pytest.approx(1.0)
        assert s["AP75"] == pytest.approx(51 / 101) and round(s["AP75"], 5) == 0.50495
        assert s["AR1"] == pytest.approx(0.5) and s["AR10"] == pytest.approx(0.7)
        # 100 px per frame is below 128^2: everything is "small", medium/large are undefined (-1)
        assert s["AP_S"] == pytest.approx(s["AP"]) and s["AP_M"] == -1 and s["AR_L"] == -1


def test_false_positive_ranked_first_halves_precision():
    A = [box(0, 0, 10, 10)]
    fp = [box(12, 12, 18, 18)]
    gt = Labelset([video("v", [Instance(A)], t=1)])
    pred = Labelset([video("v", [Instance(fp, score=0.9), Instance(A, score=0.5)], t=1)])
    s = evaluate_ap(gt, pred)
    # one GT, found at rank 2: precision 1/2 at recall 1 -> every recall point has precision 0.5
    assert s["AP"] == pytest.approx(0.5)
    assert s["AR1"] == 0.0 and s["AR10"] == 1.0
    assert s == reference_evaluate_ap(gt, pred)


def test_missing_predictions_and_unknown_videos():
    A = [box(0, 0, 10, 10)]
    gt = Labelset([video("a", [Instance(A)], t=1, vid=1), video("b", [Instance(A)], t=1, vid=2)])
    pred = Labelset([video("a", [Instance(A)], t=1, vid=1)])
    s = evaluate_ap(gt, pred)
    # half the objects found, with precision 1: precision 1 on recall points 0..0.5 = 51 of 101
    assert s["AR100"] == pytest.approx(0.5) and s["AP"] == pytest.approx(51 / 101)
    with pytest.raises(KeyError, match="not in the ground truth"):
        evaluate_ap(gt, Labelset([video("zzz", [], t=1)]))


def test_area_ranges_use_mean_nonzero_area():
    big = np.zeros((300, 300), bool)
    big[:200, :200] = True  # 40000 px: 128^2 <= a < 256^2 -> medium
    g = [rle.encode(big), None, rle.encode(big)]
    gt = Labelset([VideoLabels("v", 300, 300, 3, [], [Instance(g)], 1)])
    s = evaluate_ap(gt, Labelset([VideoLabels("v", 300, 300, 3, [], [Instance(g)], 1)]))
    # (the reference's precision is tp / (tp + fp + eps), so a perfect match is 1 - 2e-16)
    assert s["AP_M"] == pytest.approx(1.0) and s["AP_S"] == -1 and s["AP_L"] == -1


def _random_case(seed: int):
    rng = np.random.default_rng(seed)
    gts, dts = [], []
    for v in range(rng.integers(1, 12)):
        h, w = (rng.integers(8, 40), rng.integers(8, 40)) if rng.random() < 0.7 else (300, 300)
        t = int(rng.integers(1, 6))
        yy, xx = np.mgrid[:h, :w]
        g = VideoLabels(f"v{v}", h, w, t, [], [], v + 1)
        d = VideoLabels(f"v{v}", h, w, t, [], [], v + 1)
        tubes = []
        for _ in range(rng.integers(0, 5)):
            c, r, vel = rng.uniform(0, [w, h]), rng.uniform(2, max(h, w) / 2), rng.uniform(-3, 3, 2)
            m = np.stack([((xx - c[0] - vel[0] * k) ** 2 + (yy - c[1] - vel[1] * k) ** 2) < r * r for k in range(t)])
            segs = [rle.encode(m[k]) if m[k].any() and rng.random() < 0.85 else None for k in range(t)]
            if all(s is None for s in segs):
                continue
            inst = Instance(segs)
            if rng.random() < 0.08:
                inst.extra["iscrowd"] = 1
            g.instances.append(inst)
            tubes.append(m)
        for _ in range(rng.integers(0, 12)):
            if tubes and rng.random() < 0.7:
                m = np.roll(tubes[rng.integers(len(tubes))], rng.integers(-2, 3, 2), axis=(1, 2))
            else:
                m = rng.random((t, h, w)) < rng.uniform(0, 0.3)
            segs = [rle.encode(m[k]) if rng.random() < 0.9 else None for k in range(t)]
            d.instances.append(Instance(segs, score=float(np.round(rng.random(), 1))))  # ties on purpose
        gts.append(g)
        dts.append(d)
    return Labelset(gts), Labelset(dts)


@pytest.mark.parametrize("seed", range(40))
def test_equals_reference_on_random_cases(seed):
    gt, pred = _random_case(seed)
    ours, ref = evaluate_ap(gt, pred), reference_evaluate_ap(gt, pred)
    for k in ours:
        assert abs(ours[k] - ref[k]) <= 1e-12, (k, ours[k], ref[k])


def test_stored_gt_areas_are_what_the_reference_averages():
    """YouTube-VIS ground truth carries 'areas'; the reference averages those, not the decoded masks."""
    from s2d.labelset.ytvis import labelset_from_json, labelset_to_json

    big = np.zeros((300, 300), bool)
    big[:100, :100] = True  # 10000 px: small
    gt = Labelset([VideoLabels("v", 300, 300, 1, [], [Instance([rle.encode(big)])], 1)])
    obj = labelset_to_json(gt)
    obj["annotations"][0]["areas"] = [50000]  # the file says medium
    gt2 = labelset_from_json(obj)
    s = evaluate_ap(gt2, gt)
    assert s["AP_M"] == pytest.approx(1.0) and s["AP_S"] == -1
    assert s == reference_evaluate_ap(gt2, gt)


def test_worker_processes_give_the_serial_numbers():
    """Videos spread over forked workers: same metrics as one process, to the last bit, and as the reference."""
    gts, dts = [], []
    for seed in range(6):
        g, d = _random_case(seed)
        for v in [*g, *d]:  # rename so six cases become one labelset of distinct videos
            v.name = f"{seed}-{v.name}"
            v.id = 100 * seed + v.id
        gts += g.videos
        dts += d.videos
    gt, pred = Labelset(gts), Labelset(dts)
    serial = evaluate_ap(gt, pred, workers=1)
    assert evaluate_ap(gt, pred, workers=2) == serial
    assert evaluate_ap(gt, pred, workers=3) == serial
    assert serial == pytest.approx(reference_evaluate_ap(gt, pred), abs=1e-12)
    with pytest.raises(ValueError, match="workers"):
        evaluate_ap(gt, pred, workers=0)


def _dies_in_a_child(parent_pid: int, x: int) -> int:
    import os
    if os.getpid() != parent_pid:
        os._exit(3)  # a worker killed mid-job, e.g. by the out-of-memory killer
    return x * x


def test_a_dead_worker_falls_back_to_this_process():
    import os

    from s2d.evaluation.video_pool import map_items

    items = [(os.getpid(), k) for k in range(10)]
    with pytest.warns(UserWarning, match="worker process died"):
        assert map_items(_dies_in_a_child, items, workers=2) == [k * k for k in range(10)]


# ---- inputs the reference accepts beyond the common case ------------------------------------------------
# Every expected number below was computed by hand from the reference's rules and agrees with ytvoseval.py.

def _files_eval(dataset, results):
    """s2d's whole path from the two files' contents: parse, validate, evaluate."""
    gt = labelset_from_json(copy.deepcopy(dataset))
    return evaluate_ap(gt, predictions_from_json(copy.deepcopy(results), gt), workers=1)


def _full(x0, t=1):
    return [box(x0, 0, x0 + 10, 10)] * t


def _dataset(videos, anns, cats=(1,)):
    return {"videos": [{"id": v, "height": H, "width": W, "length": 1} for v in videos],
            "annotations": anns, "categories": [{"id": c, "name": f"c{c}"} for c in cats]}


def _ann(i, vid, segs, cat=1):
    return {"id": i, "video_id": vid, "category_id": cat, "iscrowd": 0, "segmentations": segs,
            "areas": [rle.area(s) for s in segs]}


def test_videos_out_of_id_order_settle_score_ties_by_sorted_id():
    """Each video has one object and one detection at 0.9 (right in video 1, wrong in video 2), listed in the
    file as video 2, then 1. The reference ranks video 1's detection first: precision 1 up to recall 0.5 and
    recall never higher -> AP = 51/101 = 0.50495. File order would rank the wrong one first: 0.25248."""
    ds = _dataset([2, 1], [_ann(1, 2, _full(0)), _ann(2, 1, _full(0))])
    res = [{"video_id": 2, "score": 0.9, "category_id": 1, "segmentations": _full(10)},
           {"video_id": 1, "score": 0.9, "category_id": 1, "segmentations": _full(0)}]
    # recall 0.5 reached at rank 1 with precision 1; never more: 51 recall points at precision 1
    s = _files_eval(ds, res)
    assert round(s["AP"], 5) == 0.50495 and s["AP"] == pytest.approx(51 / 101, abs=1e-12)
    assert s == reference_evaluate_json(ds, res)


def test_category_first_ordering_with_use_cats_0(caplog):
    """One object (category 1), two detections at 0.9: the wrong one (category 2) first in the file. The
    reference lists category 1's detections first, so the right one ranks first: AP 1, AR1 1."""
    ds = _dataset([1], [_ann(1, 1, _full(0))], cats=(1, 2))
    res = [{"video_id": 1, "score": 0.9, "category_id": 2, "segmentations": _full(10)},
           {"video_id": 1, "score": 0.9, "category_id": 1, "segmentations": _full(0)}]
    with caplog.at_level(logging.WARNING, logger="s2d.evaluation.ytvis_ap"):
        s = _files_eval(ds, res)
    assert s["AP"] == pytest.approx(1.0) and s["AR1"] == 1.0
    assert s == reference_evaluate_json(ds, res)
    msgs = [r.getMessage() for r in caplog.records]
    assert len(msgs) == 1 and msgs[0].startswith("2 prediction(s) ranked differently") and "category" in msgs[0]


def test_predictions_of_undeclared_categories_are_dropped(caplog):
    """A perfect detection with category 7 where the ground truth declares only 1: the reference drops it."""
    ds = _dataset([1], [_ann(1, 1, _full(0))])
    res = [{"video_id": 1, "score": 0.9, "category_id": 7, "segmentations": _full(0)}]
    with caplog.at_level(logging.WARNING, logger="s2d.evaluation.ytvis_ap"):
        s = _files_eval(ds, res)
    assert s["AP"] == 0.0 and s["AR100"] == 0.0
    assert s == reference_evaluate_json(ds, res)
    msgs = [r.getMessage() for r in caplog.records]
    assert len(msgs) == 1 and msgs[0].startswith("1 prediction(s) have a category_id") and "dropped" in msgs[0]


def test_ground_truth_with_annotation_id_0():
    """The reference stores the matched ground truth's id and reads 0 as "no match": a detection that finds
    annotation 0 is a false positive (the object is still taken). One object (id 0), one exact detection:
    AP 0, AR 0; the same files with id 1: AP 1."""
    res = [{"video_id": 1, "score": 0.9, "category_id": 1, "segmentations": _full(0)}]
    for ann_id, expected in ((0, 0.0), (1, 1.0)):
        ds = _dataset([1], [_ann(ann_id, 1, _full(0))])
        s = _files_eval(ds, res)
        assert s["AP"] == pytest.approx(expected) and s["AR1"] == expected
        assert s == reference_evaluate_json(ds, res)


def test_negative_and_infinite_scores_are_ranked_and_warned_once(caplog):
    """-0.5 ranks below 0.1 and inf above everything; one warning with both counts."""
    ds = _dataset([1], [_ann(1, 1, _full(0))])
    res = [{"video_id": 1, "score": -0.5, "category_id": 1, "segmentations": _full(0)},
           {"video_id": 1, "score": 0.1, "category_id": 1, "segmentations": _full(10)},
           {"video_id": 1, "score": float("inf"), "category_id": 1, "segmentations": _full(5)}]
    with caplog.at_level(logging.WARNING, logger="s2d.evaluation.ytvis_ap"):
        s = _files_eval(ds, res)
    # the right tube comes third: precision 1/3 at every recall point
    assert s["AP"] == pytest.approx(1 / 3) and s["AR1"] == 0.0 and s["AR10"] == 1.0
    assert s == reference_evaluate_json(ds, res)
    msgs = [r.getMessage() for r in caplog.records]
    assert msgs == ["1 prediction(s) with a negative score and 1 with an infinite one: accepted and ranked as "
                    "the reference evaluator ranks them"]


def test_nan_scores_and_bad_category_ids_name_the_prediction(tmp_path):
    ds = _dataset([1], [_ann(1, 1, _full(0))])
    gt = labelset_from_json(copy.deepcopy(ds))
    ok = {"video_id": 1, "score": 0.5, "category_id": 1, "segmentations": _full(0)}
    with pytest.raises(LabelsetError, match=r"predictions\[1\].*NaN"):
        predictions_from_json([ok, dict(ok, score=float("nan"))], gt)
    for bad in ("1", 1.5, None, True, [1]):
        with pytest.raises(LabelsetError, match=r"predictions\[1\].*'category_id' must be an integer"):
            predictions_from_json([ok, dict(ok, category_id=bad)], gt)
    assert predictions_from_json([dict(ok, category_id=1.0)], gt)["1"].instances[0].category_id == 1
    pred = predictions_from_json([ok], gt)
    pred.videos[0].instances[0].score = float("nan")
    with pytest.raises(ValueError, match="prediction 0 of video '1' has a NaN score"):
        evaluate_ap(gt, pred)


@pytest.mark.parametrize("seed", range(60))
def test_equals_reference_on_random_files(seed):
    """Randomised files with unsorted video ids, several categories with ties, undeclared categories,
    empty predictions, hidden duplicate tubes, crowd ground truth, stored areas and annotation id 0."""
    ds, res = _random_json_case(seed)
    ours, ref = _files_eval(ds, res), reference_evaluate_json(ds, res)
    for k in ref:
        assert abs(ours[k] - ref[k]) <= 1e-12, (k, ours[k], ref[k])


def _random_json_case(seed: int):
    """A YouTube-VIS dataset dict and results list that exercise the reference's quiet rules: video ids out of
    order and not contiguous, several declared categories (listed unsorted) with ground truth in each, score
    ties across categories and videos, predictions of undeclared categories, negative and infinite scores,
    predictions without any mask, hidden duplicate tubes, crowd ground truth, stored areas, an annotation id 0."""
    rng = np.random.default_rng(seed)
    n_cats = int(rng.integers(1, 4))
    cat_ids = [int(c) for c in rng.choice([1, 2, 3, 5, 9], size=n_cats, replace=False)]
    vid_ids = [int(v) for v in rng.choice(np.arange(1, 40), size=int(rng.integers(1, 8)), replace=False)]
    videos, anns, results = [], [], []
    start = 0 if rng.random() < 0.5 else 1
    ann_ids = iter(rng.permutation(np.arange(start, start + 40)).tolist())
    scores = [0.9, 0.5, 0.5, 0.3, 0.1] + ([-0.2, float("inf")] if rng.random() < 0.3 else [])
    for vid in vid_ids:
        h, w = (int(rng.integers(8, 30)), int(rng.integers(8, 30))) if rng.random() < 0.8 else (300, 300)
        t = int(rng.integers(1, 5))
        videos.append({"id": vid, "height": h, "width": w, "length": t, "file_names": [f"{vid}/{k}.jpg" for k in range(t)]})
        yy, xx = np.mgrid[:h, :w]
        tubes = []
        for _ in range(int(rng.integers(0, 4))):
            c, r, vel = rng.uniform(0, [w, h]), rng.uniform(2, max(h, w) / 2), rng.uniform(-3, 3, 2)
            m = np.stack([((xx - c[0] - vel[0] * k) ** 2 + (yy - c[1] - vel[1] * k) ** 2) < r * r for k in range(t)])
            segs = [_rle_json(m[k]) if m[k].any() and rng.random() < 0.85 else None for k in range(t)]
            if all(s is None for s in segs):
                continue
            areas = [None if s is None else int(m[k].sum()) for k, s in enumerate(segs)]
            if rng.random() < 0.1:
                areas = [None if a is None else a * 9 for a in areas]  # stored areas that differ from the masks
            anns.append({"id": next(ann_ids), "video_id": vid, "category_id": cat_ids[int(rng.integers(n_cats))],
                         "iscrowd": int(rng.random() < 0.08), "areas": areas, "segmentations": segs})
            tubes.append(m)
        for _ in range(int(rng.integers(0, 9))):
            if tubes and rng.random() < 0.7:
                m = np.roll(tubes[rng.integers(len(tubes))], rng.integers(-2, 3, 2), axis=(1, 2))
            else:
                m = rng.random((t, h, w)) < rng.uniform(0, 0.3)
            segs = [_rle_json(m[k]) if rng.random() < 0.9 else None for k in range(t)]
            if rng.random() < 0.05:
                segs = [None] * t  # a prediction without any mask
            cat = cat_ids[int(rng.integers(n_cats))] if rng.random() < 0.85 else 4  # 4 is never declared
            results.append({"video_id": vid, "score": scores[int(rng.integers(len(scores)))], "category_id": cat,
                            "segmentations": segs})
            if rng.random() < 0.15:  # a hidden duplicate: same tube, lower score, maybe another category
                results.append(dict(results[-1], score=0.1, category_id=cat_ids[0]))
    if not results:  # the reference refuses an empty results list
        results.append({"video_id": vid_ids[0], "score": 0.5, "category_id": cat_ids[0],
                        "segmentations": [None] * videos[0]["length"]})
    order = rng.permutation(len(results))
    results = [results[i] for i in order]
    rng.shuffle(videos)
    cats = [{"id": c, "name": f"c{c}"} for c in cat_ids]
    return {"videos": videos, "annotations": anns, "categories": cats}, results


def _rle_json(m):
    r = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
    return {"size": r["size"], "counts": r["counts"].decode()}
