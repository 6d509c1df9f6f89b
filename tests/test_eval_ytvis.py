"""Class-agnostic YouTube-VIS video AP/AR: hand-computed answers and equality with the reference port."""
from __future__ import annotations

import numpy as np
import pytest

from s2d.evaluation import evaluate_ap
from s2d.evaluation.reference import reference_evaluate_ap
from s2d.evaluation.tube_iou import tube_iou
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
        for v in g:  # rename so six cases become one labelset of distinct videos
            v.name = f"{seed}-{v.name}"
        for v in d:
            v.name = f"{seed}-{v.name}"
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
