"""final.repeat_iou: a dense target that repeats a higher-scored target of its clip is no target."""
from __future__ import annotations

import copy

import pytest
import torch

from s2d.data.repeated_targets import repeated_targets


def _box(T, frames, y0, y1, x0, x1, H=8, W=8):
    m = torch.zeros(T, H, W)
    for t in frames:
        m[t, y0:y1, x0:x1] = 1
    return m


def test_repeats_hand_computed():
    a = _box(3, [0, 1, 2], 0, 2, 0, 2)                   # 4 px on each of 3 frames: 12
    same = a.clone()                                     # IoU 1
    c = _box(3, [0, 1], 0, 2, 0, 2)                      # a on two frames, absent on the third: 8 / 12 = 0.667
    far = _box(3, [0, 1, 2], 5, 7, 5, 7)                 # disjoint: 0
    masks = torch.stack([a, same, c, far])
    scores = torch.tensor([0.9, 0.1, 0.5, 0.3])
    assert repeated_targets(masks, scores, 0.75).tolist() == [False, True, False, False]
    assert repeated_targets(masks, scores, 0.6).tolist() == [False, True, True, False]
    # the higher score wins whichever comes first; equal scores go in index order
    assert repeated_targets(masks, torch.tensor([0.1, 0.9, 0.5, 0.3]), 0.75).tolist() == [True, False, False, False]
    assert repeated_targets(masks[:2], torch.tensor([0.4, 0.4]), 0.75).tolist() == [False, True]
    # soft warped masks count from 0.5, as the loss reads them
    assert repeated_targets(torch.stack([a, a * 0.6, a * 0.4]), torch.tensor([0.9, 0.5, 0.4]), 0.75).tolist() == \
        [False, True, False]


def test_greedy_against_the_kept_targets_only():
    """As tube NMS: b repeats a and goes; c repeats b but not a, and stays."""
    a = _box(1, [0], 0, 4, 0, 5)                          # 20 px
    b = _box(1, [0], 0, 4, 1, 6)                          # a & b 16 / 24 = 0.667
    c = _box(1, [0], 0, 4, 2, 7)                          # b & c 0.667, a & c 12 / 28 = 0.43
    got = repeated_targets(torch.stack([a, b, c]), torch.tensor([0.9, 0.8, 0.7]), 0.6)
    assert got.tolist() == [False, True, False]
    assert repeated_targets(torch.zeros(0, 1, 8, 8), torch.zeros(0), 0.75).tolist() == []
    assert repeated_targets(torch.zeros(2, 1, 8, 8), torch.ones(2), 0.75).tolist() == [False, False]  # empty: no IoU


def test_clip_dataset_leaves_out_the_repeat_in_dense_mode_only(tmp_path):
    from s2d.data.clips import AugmentConfig, ClipDataset
    from s2d.data.demo import DemoConfig, write_demo_dataset
    from s2d.data.sources import open_dataset

    write_demo_dataset(tmp_path / "d", DemoConfig(num_videos=1, num_frames=6, height=32, width=40, seed=1))
    ds = open_dataset("ytvis", tmp_path / "d")
    labels = ds.gt_labelset()
    v = labels.videos[0]
    for k, inst in enumerate(v.instances):
        inst.score = 0.9 - 0.1 * k
    n = len(v.instances)
    dup = copy.deepcopy(v.instances[0])                   # a second tube on object 0, scored as a duplicate
    dup.score = 0.05
    v.instances.append(dup)
    aug = AugmentConfig(enabled=False)
    plain = ClipDataset(ds, labels, 3, "dense", augment=aug, score_targets=True)[0]
    assert len(plain["targets"]) == n + 1 and torch.equal(plain["targets"][0], plain["targets"][-1])
    item = ClipDataset(ds, labels, 3, "dense", augment=aug, score_targets=True, repeat_iou=0.75)[0]
    assert torch.equal(item["targets"], plain["targets"][:-1])
    assert item["target_scores"].tolist() == pytest.approx(plain["target_scores"][:-1].tolist())
    assert item["known_empty"].shape == (n, 3)
    sparse = ClipDataset(ds, labels, 3, "sparse", augment=aug, repeat_iou=0.75)
    assert sparse.repeat_iou is None                      # keymask instances are never left out
    # with augmentation, the rule reads the warped masks: the copy goes in every item where object 0 is shown
    d = ClipDataset(ds, labels, 3, "dense", augment=AugmentConfig(size=(24, 32)), seed=2, repeat_iou=0.75)
    for i in range(len(d)):
        t = d[i]["targets"]
        same = [(t[j] > 0.5).equal(t[k] > 0.5) for j in range(len(t)) for k in range(j + 1, len(t))]
        assert not any(same), i


def test_final_repeat_iou_enters_the_final_fingerprint_only(compose, tmp_path):
    from s2d.stages.distill import checkpoint_dir, repeat_iou

    on, off = compose("final.repeat_iou=0.75"), compose()
    assert repeat_iou(on, "dense") == 0.75 and repeat_iou(on, "sparse") is None and repeat_iou(off, "dense") is None
    assert compose("experiment=paper").final.repeat_iou is None            # the method's targets
    assert checkpoint_dir(on, tmp_path, "final", "fp", "dense") != checkpoint_dir(off, tmp_path, "final", "fp", "dense")
    assert checkpoint_dir(on, tmp_path, "distill", "fp") == checkpoint_dir(off, tmp_path, "distill", "fp")
