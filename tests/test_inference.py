"""Whole-video inference: windows, stitching of tubes across windows, tube NMS."""
from __future__ import annotations

import numpy as np
import torch

from s2d.inference.video_predict import Tube, _windows, predict_video, tube_iou, tube_nms


def test_windows_cover_the_video_with_overlap():
    assert _windows(5, 12, 2) == [(0, 5)]
    w = _windows(30, 12, 2)
    assert w[0] == (0, 12) and w[-1][1] == 30
    assert all(b[0] == a[1] - 2 or b[0] < a[1] for a, b in zip(w, w[1:]))  # consecutive windows overlap
    covered = set()
    for s, e in w:
        covered |= set(range(s, e))
    assert covered == set(range(30))


class SquareModel(torch.nn.Module):
    """A stand-in VideoMask2Former: query 0 is a square moving right 1 px/frame (score 0.9), query 1 a copy of it
    (score 0.8, removed by NMS), query 2 scores 0.1 (below threshold). Frame index read from pixel (0, 0)."""

    def forward(self, clips):
        B, T, _, H, W = clips.shape
        h, w = H // 4, W // 4
        masks = torch.full((B, 3, T, h, w), -10.0)
        for j in range(T):
            t = int(round(float(clips[0, j, 0, 0, 0]) * 255))
            masks[:, 0, j, 2:6, t:t + 4] = 10.0
            masks[:, 1, j, 2:6, t:t + 4] = 10.0
        logits = torch.tensor([[4.0, -4.0], [2.0, -2.0], [-4.0, 4.0]]).expand(B, -1, -1)
        return {"pred_logits": logits, "pred_masks": masks}


def test_stitching_across_windows_gives_one_tube_per_object():
    T, H, W = 20, 32, 96
    frames = np.zeros((T, H, W, 3), np.uint8)
    frames[:, 0, 0, 0] = np.arange(T)
    tubes = predict_video(SquareModel(), frames, score_thr=0.5, window=8, overlap=2, nms_iou=0.75)
    assert len(tubes) == 1                        # one object, stitched over 4 windows; the duplicate is NMS'ed
    assert sorted(tubes[0].masks) == list(range(T))
    m = tubes[0].masks[10]                        # frame 10: square at x = 10..13 in mask units, x4 upsampled
    ys, xs = np.nonzero(m)
    assert (ys.min(), ys.max(), xs.min(), xs.max()) == (8, 23, 40, 55) and m[9:23, 41:55].all()
    no_nms = predict_video(SquareModel(), frames, score_thr=0.5, window=8, overlap=2, nms_iou=None)
    assert len(no_nms) == 2


def test_tube_iou_and_nms_hand_computed():
    a = np.zeros((4, 4), bool)
    a[:2] = True                                   # 8 px
    b = np.zeros((4, 4), bool)
    b[:1] = True                                   # 4 px inside a
    t1 = Tube({0: a, 1: a}, [0.9])
    t2 = Tube({0: b}, [0.5])
    assert tube_iou(t1, t2) == 4 / 16              # frame 0: 4 / 8; frame 1: t1 only, union += 8
    assert len(tube_nms([t1, t2], 0.2)) == 1 and len(tube_nms([t1, t2], 0.3)) == 2


def _random_tubes(rng, n, T, H, W):
    """n tubes of random rectangles, each present on a random subset of T frames."""
    tubes = []
    for _ in range(n):
        masks = {}
        for t in range(T):
            if rng.random() < 0.7:
                m = np.zeros((H, W), bool)
                y, x = rng.integers(0, H - 4), rng.integers(0, W - 4)
                m[y:y + rng.integers(2, H - y), x:x + rng.integers(2, W - x)] = True
                masks[t] = m
        if masks:
            tubes.append(Tube(masks, [float(rng.random())]))
    return tubes


def test_link_iou_matrix_equals_the_pairwise_definition():
    from s2d.inference.video_predict import link_iou_matrix, link_iou_pairwise

    rng = np.random.default_rng(0)
    T, H, W = 6, 12, 16
    prev = _random_tubes(rng, 7, T, H, W)
    window = rng.random((5, 4, H, W)) < 0.3            # K=5 masks of a window covering frames 3..6
    window[2] = False                                   # an empty mask: IoU 0 with tubes absent there
    shared = [3, 4]
    got = link_iou_matrix(prev, window, shared, 3)
    want = np.array([[link_iou_pairwise(p, window[k], shared, 3) for k in range(5)] for p in prev])
    assert got.shape == (len(prev), 5)
    np.testing.assert_array_equal(got, want)
    assert link_iou_matrix([], window, shared, 3).shape == (0, 5)


def test_tube_nms_keeps_what_the_pairwise_greedy_keeps():
    rng = np.random.default_rng(1)
    tubes = _random_tubes(rng, 20, 5, 10, 12)
    for tb in tubes[:8]:  # near-duplicates: one frame fewer, a lower or higher score
        t_drop = min(tb.masks)
        tubes.append(Tube({t: m for t, m in tb.masks.items() if t != t_drop or len(tb.masks) == 1},
                          [float(rng.random())]))
    for thr in (0.2, 0.5, 0.8):
        greedy = []
        for t in sorted(tubes, key=lambda t: -t.score):
            if all(tube_iou(t, k) < thr for k in greedy):
                greedy.append(t)
        assert [id(t) for t in tube_nms(tubes, thr)] == [id(t) for t in greedy]
    assert 1 < len(tube_nms(tubes, 0.5)) < len(tubes)   # the case is not trivial
    empty = Tube({}, [0.95])                             # a tube without masks overlaps nothing: kept, first
    with_empty = tube_nms([empty] + tubes, 0.5)
    assert with_empty[0] is empty and len(with_empty) == len(tube_nms(tubes, 0.5)) + 1


def test_inference_device_resolution(monkeypatch):
    import pytest

    from s2d.errors import ConfigError
    from s2d.inference.device import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == "cpu" and resolve_device("cpu") == "cpu"
    with pytest.raises(ConfigError, match="predict.device"):
        resolve_device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # as on a GPU machine: labels on the GPU
    assert resolve_device("auto") == "cuda" and resolve_device("cpu") == "cpu"
