"""Where a labelset loses AP50 (s2d.evaluation.errors): hand-built labelsets with hand-computed kinds, ranks and
misses, and agreement with the evaluator (no costly error <=> AP50 100)."""
from __future__ import annotations

import numpy as np
import pytest

from s2d.evaluation import evaluate_ap
from s2d.evaluation.errors import FalsePositive, labelset_errors, match_video
from s2d.labelset import rle
from s2d.labelset.types import Instance, Labelset, VideoLabels
from s2d.report.errors import LISTED, describe_fp, error_lines

H, W, T = 12, 12, 4


def box(x0, y0, x1, y1):
    m = np.zeros((H, W), bool)
    m[y0:y1, x0:x1] = True
    return rle.encode(m)


OBJ0, OBJ1, SKY = box(0, 0, 4, 4), box(6, 6, 10, 10), box(0, 8, 3, 12)  # 16, 16 and 12 px, disjoint


def tube(*frames, score=1.0, **extra):
    return Instance(list(frames), score, extra=extra)


def video(name, instances):
    return VideoLabels(name, H, W, T, [], instances)


def ground_truth():
    return Labelset([video("a", [tube(OBJ0, OBJ0, OBJ0, OBJ0), tube(OBJ1, OBJ1, OBJ1, OBJ1)]),
                     video("b", [tube(OBJ0, OBJ0, OBJ0, OBJ0)])])


def predictions():
    thin = box(0, 0, 4, 1)  # a quarter of OBJ0: IoU 0.25 on every frame
    return Labelset([
        video("a", [tube(OBJ0, OBJ0, OBJ0, OBJ0, score=0.9),       # true: object 0
                    tube(OBJ0, OBJ0, OBJ0, OBJ0, score=0.8),       # the same object again
                    tube(OBJ1, OBJ1, OBJ1, OBJ1, score=0.7),       # true: object 1
                    tube(SKY, SKY, SKY, SKY, score=0.95),          # nothing
                    tube(OBJ0, OBJ0, OBJ1, OBJ1, score=0.85),      # object 0, then object 1
                    tube(OBJ1, None, None, None, score=0.1)]),     # a piece of object 1, after the last true tube
        video("b", [tube(thin, thin, thin, thin, score=0.75)])])   # a sliver of b's object


def test_kinds_ranks_and_misses_hand_computed():
    e = labelset_errors(ground_truth(), predictions())
    assert (e.objects, e.found) == (3, 2)
    # ranks by score over both videos: 0.95 sky 1, 0.9 true 2, 0.85 switch 3, 0.8 duplicate 4, 0.75 sliver 5,
    # 0.7 true 6 (the last true tube), 0.1 piece 7 (after it: costs nothing, not listed)
    # the switch: tube IoU with either object is 2 frames x 16 / (4 x 16 + 2 x 16) = 1/3
    assert e.false_positives == [
        FalsePositive("a", 3, 0.95, 1, "background", None, 0.0, ()),
        FalsePositive("a", 4, 0.85, 3, "switch", 0, pytest.approx(1 / 3), (0, 1)),
        FalsePositive("a", 1, 0.8, 4, "duplicate", 0, 1.0, (0,)),
        FalsePositive("b", 0, 0.75, 5, "inexact", 0, 0.25, ()),
    ]
    assert e.counts() == {"duplicate": 1, "switch": 1, "fragment": 0, "inexact": 1, "background": 1}
    (m,) = e.missed
    assert (m.video, m.object, m.best_iou, m.best_index) == ("b", 0, 0.25, 0)


def test_a_piece_in_time_is_a_fragment_and_a_costly_one_only_above_the_last_true_tube():
    gt = Labelset([video("a", [tube(OBJ0, OBJ0, OBJ0, OBJ0), tube(OBJ1, OBJ1, OBJ1, OBJ1)])])
    piece = tube(OBJ1, None, None, None, score=0.9)  # matches object 1 on 1 of its 4 frames: tube IoU 0.25
    pred = Labelset([video("a", [tube(OBJ0, OBJ0, OBJ0, OBJ0, score=0.95), piece,
                                 tube(OBJ1, OBJ1, OBJ1, OBJ1, score=0.5)])])
    (fp,) = labelset_errors(gt, pred).false_positives
    assert (fp.kind, fp.rank, fp.object, fp.iou, fp.held) == ("fragment", 2, 1, 0.25, (1,))
    piece.score = 0.4  # now after the last true tube: it lowers no precision that AP50 reads
    assert labelset_errors(gt, pred).false_positives == []


def test_matching_is_greedy_by_score_like_the_evaluator():
    # the first tube by score takes the object even though the second overlaps it more: the second is then a
    # duplicate, as in the YouTube-VIS evaluator
    ious = np.array([[0.6, 0.0], [0.9, 0.0], [0.0, 0.4]])
    assert match_video(ious, np.array([0.9, 0.8, 0.7]), 0.5).tolist() == [0, -1, -1]
    # a tube takes the free object of highest IoU; equal scores keep file order
    ious = np.array([[0.7, 0.8], [0.9, 0.6]])
    assert match_video(ious, np.array([0.5, 0.5]), 0.5).tolist() == [1, 0]
    assert match_video(np.zeros((2, 0)), np.array([0.5, 0.4]), 0.5).tolist() == [-1, -1]


def test_missing_videos_and_crowd_objects():
    gt = Labelset([video("a", [tube(OBJ0, OBJ0, OBJ0, OBJ0), tube(OBJ1, OBJ1, OBJ1, OBJ1, iscrowd=1)]),
                   video("b", [tube(OBJ1, OBJ1, OBJ1, OBJ1)])])
    pred = Labelset([video("a", [tube(OBJ0, OBJ0, OBJ0, OBJ0, score=0.9)])])  # no video b
    e = labelset_errors(gt, pred)
    assert (e.objects, e.found, e.false_positives) == (2, 1, [])  # the crowd object is neither found nor missed
    (m,) = e.missed
    assert (m.video, m.object, m.best_iou, m.best_index) == ("b", 0, 0.0, None)


def test_no_costly_error_is_the_same_as_ap50_100():
    gt, pred = ground_truth(), predictions()
    assert evaluate_ap(gt, pred)["AP50"] < 1.0
    # take away what the diagnosis names: the costly false positives, and add a tube for the missed object
    e = labelset_errors(gt, pred)
    drop = {(fp.video, fp.index) for fp in e.false_positives}
    mended = Labelset([video(v.name, [d for i, d in enumerate(v.instances) if (v.name, i) not in drop]) for v in pred])
    found = tube(OBJ0, OBJ0, OBJ0, OBJ0, score=0.05)
    mended["b"].instances.append(found)
    # ranked last, the found object puts the piece of object 1 (score 0.1) above a true tube: now it costs
    e2 = labelset_errors(gt, mended)
    assert ([(fp.video, fp.index, fp.kind) for fp in e2.false_positives], e2.missed) == ([("a", 2, "fragment")], [])
    assert evaluate_ap(gt, mended)["AP50"] < 1.0
    found.score = 0.6
    e3 = labelset_errors(gt, mended)
    assert (e3.false_positives, e3.missed, e3.found) == ([], [], 3)
    assert evaluate_ap(gt, mended)["AP50"] == pytest.approx(1.0)


def test_report_section_counts_and_lists():
    e = labelset_errors(ground_truth(), predictions())
    lines = error_lines({"dense labelset": e})
    assert "| dense labelset | 2 / 3 | 1 | 1 | 1 | 0 | 1 | 1 |" in lines
    assert "- rank 3: a tube 4 (score 0.85), switch, best on object 0 (tube IoU 0.33; holds objects 0 then 1 in turn)" \
        in lines
    assert "- rank 1: a tube 3 (score 0.95), background (overlaps no object)" in lines
    assert "- missed: b object 0 (best tube IoU 0.25: tube 0)" in lines
    assert error_lines({}) == []
    # long lists are cut at LISTED, the table keeps the full count
    many = type(e)(0.5, 3, 2, [e.false_positives[0]] * (LISTED + 3), e.missed)
    lines = error_lines({"x": many})
    assert sum(s.startswith("- rank") for s in lines) == LISTED
    assert "- ... and 3 more (the table counts them all)" in lines
    assert f"| x | 2 / 3 | 1 | 0 | 0 | 0 | 0 | {LISTED + 3} |" in lines
    assert describe_fp(e.false_positives[2]).endswith("duplicate of object 0 (tube IoU 1.00)")


def test_agrees_with_the_evaluator_on_random_labelsets():
    """No costly false positive and no missed object exactly when the evaluator's AP50 is 100."""
    rng = np.random.default_rng(0)

    def random_tube(score):
        frames = []
        for _ in range(T):
            if rng.random() < 0.2:
                frames.append(None)
                continue
            x, y = rng.integers(0, 8, 2)
            frames.append(box(x, y, x + rng.integers(2, 5), y + rng.integers(2, 5)))
        return tube(*frames, score=score)

    outcomes = set()
    for trial in range(40):
        gt = Labelset([video(f"v{i}", [random_tube(1.0) for _ in range(rng.integers(1, 3))]) for i in range(2)])
        pred = Labelset([video(v.name, [Instance(list(g.segmentations), float(rng.random()))
                                        for g in v.instances if rng.random() < 0.8]
                               + [random_tube(float(rng.random())) for _ in range(rng.integers(0, 3))])
                         for v in gt])
        e = labelset_errors(gt, pred)
        ap = evaluate_ap(gt, pred)
        clean = not e.false_positives and not e.missed
        assert clean == (ap["AP50"] == pytest.approx(1.0)), (trial, e, ap["AP50"])
        outcomes.add(clean)
    assert outcomes == {True, False}  # both sides of the equivalence were exercised
