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
