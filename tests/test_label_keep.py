"""The dense labelset keeps the earlier labels its teacher misses (label.keep_iou): the match, the scores, the
wiring into the label stage."""
from __future__ import annotations

import numpy as np
import pytest

from s2d.labelset import rle
from s2d.inference.keep_labels import keep_missed, match_on_own_frames
from s2d.labelset.types import Instance, VideoLabels


def _tube(masks: dict[int, np.ndarray], length: int, score: float = 1.0) -> Instance:
    return Instance([rle.encode(masks[t]) if t in masks else None for t in range(length)], score)


def _box(y0, y1, x0, x1, size=(8, 8)) -> np.ndarray:
    m = np.zeros(size, bool)
    m[y0:y1, x0:x1] = True
    return m


def test_match_counts_only_the_earlier_instances_frames():
    """A sparse instance on frame 1 and a tube that covers it there exactly but is large on frames 0, 2, 3: IoU 1
    on the instance's own frames (over the whole tube it would be 16 / (16 + 3 * 64) = 0.077)."""
    sparse = _tube({1: _box(0, 4, 0, 4)}, 4)
    big = _tube({0: np.ones((8, 8), bool), 1: _box(0, 4, 0, 4), 2: np.ones((8, 8), bool),
                 3: np.ones((8, 8), bool)}, 4)
    assert match_on_own_frames([sparse], [big], 8, 8)[0, 0] == pytest.approx(1.0)
    # half of it: intersection 8 px, union 16 + 16 - 8 = 24 on frame 1
    shifted = _tube({1: _box(0, 4, 2, 6)}, 4)
    assert match_on_own_frames([sparse], [shifted], 8, 8)[0, 0] == pytest.approx(8 / 24)
    # two own frames: sums over both (frame 0 identical 16/16, frame 2 missed: 0/16) -> 16 / 32
    two = _tube({0: _box(0, 4, 0, 4), 2: _box(4, 8, 4, 8)}, 4)
    half = _tube({0: _box(0, 4, 0, 4)}, 4)
    assert match_on_own_frames([two], [half], 8, 8)[0, 0] == pytest.approx(0.5)


def test_keep_missed_keeps_unmatched_instances_scored_below():
    T = 4
    matched = _tube({0: _box(0, 4, 0, 4), 2: _box(0, 4, 0, 4)}, T, score=0.9)
    missed = _tube({1: _box(4, 8, 4, 8)}, T, score=0.6)
    barely = _tube({1: _box(0, 4, 0, 4)}, T, score=0.8)       # IoU 8 / 24 with the new tube on frame 1
    empty = Instance([None] * T, 1.0)                          # nothing to keep
    previous = VideoLabels("v", 8, 8, T, instances=[matched, missed, barely, empty])
    new = VideoLabels("v", 8, 8, T, instances=[_tube({t: _box(0, 4, 0, 4) if t != 1 else _box(0, 4, 2, 6)
                                                     for t in range(T)}, T, score=0.7)])
    kept = keep_missed(new, previous, iou_thr=0.5, score_scale=0.5)
    assert [k.score for k in kept] == [pytest.approx(0.3), pytest.approx(0.4)]   # missed, barely: 0.5 x own
    assert kept[0].segmentations == missed.segmentations and kept[0] is not missed
    assert all(k.extra == {"kept": True} for k in kept) and missed.extra == {}   # marked in the json's diagnostics
    # a lower bar: the one at IoU 1/3 is a match now
    assert [k.score for k in keep_missed(new, previous, 0.3, 0.5)] == [pytest.approx(0.3)]
    # a teacher that found nothing: every earlier instance with a mask is kept
    assert len(keep_missed(VideoLabels("v", 8, 8, T), previous, 0.5, 0.5)) == 3
    with pytest.raises(ValueError, match="video 'v'.*4 frames.*6 of"):
        keep_missed(VideoLabels("v", 8, 8, 6), previous, 0.5, 0.5)


def test_label_stage_adds_the_missed_labels(compose, tiny_demo, tmp_path):
    """A model that only ever predicts the left half of the frame; earlier labels with one instance there and one
    on the right: with label.keep_iou the right one joins the dense labelset at score_thr x its score, and the
    key enters the label stage's fingerprint settings only when set."""
    from s2d.data.clips import AugmentConfig
    from s2d.data.sources import open_dataset
    from s2d.labelset.types import Labelset
    from s2d.stages.label import label_settings, predictions
    from tests.test_inference_scale import LeftHalfModel, first_video_halves

    ds = open_dataset("ytvis", tiny_demo)
    name, (H, W, T), left, right = first_video_halves(ds)
    earlier = Labelset([VideoLabels(v, H, W, T, instances=[_tube({0: left, 3: left}, T, 0.9),
                                                           _tube({2: right}, T, 0.8)]) for v in ds.names])
    crop = AugmentConfig(size=(64, 80), crop_scale=(1.0, 1.0))
    counts = {}
    for keep in (None, 0.5):
        cfg = compose("progress=false", f"label.keep_iou={'null' if keep is None else keep}")
        out = predictions(cfg, ds, LeftHalfModel(), crop, 0.6, None, "label", f"fp{keep}", tmp_path / f"k{keep}",
                          previous=earlier)
        counts[keep] = [round(i.score, 3) for i in out[name].instances]
        assert [bool(i.extra.get("kept")) for i in out[name].instances] == [False] + [True] * (keep is not None)
        assert ("keep_iou" in label_settings(cfg)) == (keep is not None)
        assert "keep_iou" not in label_settings(cfg, "predict")
    assert len(counts[None]) == 1 and counts[0.5] == counts[None] + [round(0.6 * 0.8, 3)]
