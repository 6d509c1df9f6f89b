"""A teacher tube keeps one object of the labels it learned from (label.one_identity): the per-frame owner, the
choice of the kept instance, the guard for instances that follow each other in time, and the label stage's
wiring."""
from __future__ import annotations

import numpy as np
import pytest

from s2d.inference.identity import kept_identity, nearest_identity, one_identity, spans_overlap
from s2d.inference.video_predict import Tube, tube_instances
from s2d.labelset import rle
from s2d.labelset.frame_match import frame_objects
from s2d.labelset.types import Instance, VideoLabels

H, W, T = 8, 8, 6


def _box(x0, x1):
    m = np.zeros((H, W), bool)
    m[:, x0:x1] = True
    return m


A, B = _box(0, 3), _box(5, 8)  # two objects, 24 px each, apart


def _instance(masks: dict[int, np.ndarray]) -> Instance:
    return Instance([rle.encode(masks[t]) if t in masks else None for t in range(T)])


def _labels(*instances: dict[int, np.ndarray]) -> VideoLabels:
    return VideoLabels("v", H, W, T, instances=[_instance(m) for m in instances])


def test_nearest_identity_hand_computed():
    ids = np.array([-1, 0, -1, -1, 1, -1])
    # frame 0: nearest matched frame 1 (object 0); frame 2: 1 away from frame 1, 2 from frame 4; frame 3 the
    # reverse; frame 5: frame 4
    assert nearest_identity(ids).tolist() == [0, 0, 0, 1, 1, 1]
    assert nearest_identity(np.array([0, -1, 1])).tolist() == [0, 0, 1]  # a tie goes to the earlier frame
    assert nearest_identity(np.array([-1, -1])).tolist() == [-1, -1]


def test_spans_overlap():
    assert spans_overlap([0, 3], [2, 5]) and spans_overlap([2], [0, 4]) and spans_overlap([0, 3], [3, 4])
    assert not spans_overlap([0, 1], [2, 5]) and not spans_overlap([], [0])


def test_kept_identity_needs_two_instances_visible_together():
    both = _labels({t: A for t in range(T)}, {t: B for t in range(T)})
    assert kept_identity(np.array([0, 0, 0, 1, 1, -1]), both) == 0          # more frames on instance 0
    assert kept_identity(np.array([1, 0, 0, 1, 1, -1]), both) == 1          # 3 frames against 2
    assert kept_identity(np.array([1, 1, 0, 0, -1, -1]), both) == 1         # a tie: the first matched
    assert kept_identity(np.array([0, 0, -1, -1, -1, -1]), both) is None    # one object
    assert kept_identity(np.array([-1] * T), both) is None
    # one object that the labels split in time (frames 0-2, then 3-5): a tube that joins the two stays whole
    in_turn = _labels({0: A, 1: A, 2: A}, {3: A, 4: A, 5: A})
    assert kept_identity(np.array([0, 0, 0, 1, 1, 1]), in_turn) is None


def test_one_identity_cuts_the_frames_of_the_other_object():
    labels = _labels({t: A for t in range(T)}, {t: B for t in range(T)})
    # object A on frames 0-2, a frame with no match on 3 (the whole frame: IoU 24 / 64 with either), B on 4-5
    switch = Tube({0: A, 1: A, 2: A, 3: np.ones((H, W), bool), 4: B, 5: B}, [0.9, 0.8], [0.5])
    whole = Tube({t: B for t in range(T)}, [0.7])
    out, cut = one_identity([switch, whole], T, labels)
    assert cut == 1 and len(out) == 2
    # frame 3 is one frame from frame 2 (A) and from frame 4 (B): the tie goes to the earlier, so it stays
    assert sorted(out[0].masks) == [0, 1, 2, 3] and out[0].scores == [0.9, 0.8] and out[0].mask_scores == [0.5]
    assert out[0].cut == {4, 5} and switch.cut == set()      # the frames given to B are recorded, the input kept
    assert out[1] is whole
    # the record reaches the tube's instance (final.drop_cut_frames reads it there); an uncut tube has none
    cut_inst, whole_inst = tube_instances(out, T)
    assert cut_inst.extra == {"cut_frames": [4, 5], "teacher_score": pytest.approx(out[0].score)}
    assert whole_inst.extra == {"teacher_score": pytest.approx(0.7)}
    assert frame_objects(labels.instances, [_instance(switch.masks)], 0.5).tolist() == [[0, 0, 0, -1, 1, 1]]
    # nothing to read identities from: unchanged
    assert one_identity([switch], T, VideoLabels("v", H, W, T))[0][0] is switch


def test_label_stage_cuts_with_one_identity_only(compose, tiny_demo, tmp_path):
    """A model that predicts the left half of every frame; earlier labels with instance 0 on the left on frames
    0-1 (and on the right on frame 3) and instance 1 on the left on frames 2-3: the tube holds 0 and then 1, the
    two visible together on frames 2-3. With label.one_identity it keeps frames 0-1 (a tie, 2 frames each: the
    first matched), without it every frame; the key enters the fingerprint only when on, and only the label
    stage's."""
    from s2d.data.clips import AugmentConfig
    from s2d.data.sources import open_dataset
    from s2d.labelset.types import Labelset
    from s2d.stages.label import label_settings, predictions
    from tests.test_inference_scale import LeftHalfModel, first_video_halves
    from tests.test_label_keep import _tube

    ds = open_dataset("ytvis", tiny_demo)
    name, (h, w, length), left, right = first_video_halves(ds)
    earlier = Labelset([VideoLabels(v, h, w, length, instances=[_tube({0: left, 1: left, 3: right}, length, 0.9),
                                                                _tube({2: left, 3: left}, length, 0.9)])
                        for v in ds.names])
    crop = AugmentConfig(size=(64, 80), crop_scale=(1.0, 1.0))
    frames = {}
    for on in (False, True):
        cfg = compose("progress=false", "label.keep_iou=null", f"label.one_identity={on}")
        out = predictions(cfg, ds, LeftHalfModel(), crop, 0.6, None, "label", f"fp{on}", tmp_path / f"i{on}",
                          previous=earlier)
        (tube,) = out[name].instances
        frames[on] = tube.frames_with_mask
        # the frames cut away are named in the stored labelset (read back from its shards)
        assert tube.extra.get("cut_frames") == (list(range(2, length)) if on else None)
        assert ("one_identity" in label_settings(cfg)) == on
        assert "one_identity" not in label_settings(cfg, "predict")
    assert frames[False] == list(range(length)) and frames[True] == [0, 1]
    # where the final stage reads the cut frames (final.drop_cut_frames), a labelset made before they were named
    # is not reused: another fingerprint; elsewhere they are a diagnostic and the fingerprint stays
    assert label_settings(compose("final.drop_cut_frames=true"))["one_identity"] == {"cut_frames": True}
    assert label_settings(compose())["one_identity"] is True
    assert label_settings(compose("final.drop_cut_frames=true", "final.teach_absent=false"))["one_identity"] is True
    paper = compose("experiment=paper")
    assert paper.label.one_identity is False and "one_identity" not in label_settings(paper)


def test_frame_objects_picks_the_best_match_above_the_threshold():
    ref = [_instance({0: A, 1: A}), _instance({0: _box(0, 4), 1: B})]
    # frame 0: A vs A 1.0, A vs box(0,4) 24/32 -> instance 0; frame 1: A vs A 1.0; frame 2: no reference masks
    tubes = [_instance({0: A, 1: A, 2: A}), _instance({0: _box(0, 1), 1: B})]
    assert frame_objects(ref, tubes, 0.5).tolist() == [[0, 0, -1, -1, -1, -1], [-1, 1, -1, -1, -1, -1]]
