"""Inference shows the model its frames at the scale it trained at: the range, the resize, the wiring."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from s2d.data.clips import AugmentConfig
from s2d.inference.scale import (checkpoint_crop, coarse_scale_note, input_scale, resize_frames,
                                trained_scale_range)
from s2d.inference.video_predict import predict_video


def test_trained_range_hand_computed():
    demo = AugmentConfig(size=(96, 128), crop_scale=(0.6, 1.0))
    lo, hi = trained_scale_range((120, 160), demo)            # 12288 px crops of 19200 px frames
    assert lo == pytest.approx(0.8) and hi == pytest.approx(math.sqrt(12288 / 11520))
    assert input_scale((120, 160), demo) == 1.0                # 1 is inside the trained range: frames as they are
    lo, hi = trained_scale_range((240, 427), demo)             # 240p DAVIS
    assert input_scale((240, 427), demo) == pytest.approx(hi) == pytest.approx(math.sqrt(12288 / (0.6 * 102480)))
    assert input_scale((60, 80), demo) == pytest.approx(math.sqrt(12288 / 4800))  # crops enlarged: 1.6
    assert input_scale((240, 427), demo, fixed=0.7) == 0.7     # label.input_scale overrides


def test_crops_far_below_the_frame_size_are_named_with_crops_to_try():
    """The demo's crops on 240p or 360p frames teach objects at under half their size: a warning naming the key,
    the scales and crops of 0.8 of the short side (what the demo's and data=davis's crops are). Crops that teach
    half the size or more say nothing."""
    demo = AugmentConfig(size=(96, 128), crop_scale=(0.6, 1.0))
    assert coarse_scale_note((120, 160), demo) is None          # the demo: 0.80-1.03
    note = coarse_scale_note((240, 427), demo)                  # 0.35-0.45 (hand-computed in the test above)
    assert "train.crop_size=[96, 128]" in note and "0.35-0.45" in note and "[192,256]" in note
    note = coarse_scale_note((360, 640), demo)                  # sqrt(12288 / 230400) = 0.23, / 0.6: 0.30
    assert "0.23-0.30" in note and "[288,384]" in note
    assert "[384,288]" in coarse_scale_note((640, 360), demo)  # a phone's portrait video
    assert coarse_scale_note((240, 427), AugmentConfig(size=(192, 256), crop_scale=(0.6, 1.0))) is None
    # the boundary: 0.5 exactly at the smallest crop share is not coarse
    assert coarse_scale_note((200, 200), AugmentConfig(size=(60, 60), crop_scale=(0.36, 1.0))) is None
    assert coarse_scale_note((200, 200), AugmentConfig(size=(59, 59), crop_scale=(0.36, 1.0))) is not None


def test_resize_frames_keeps_content_and_dtype():
    frames = np.zeros((2, 40, 60, 3), np.uint8)
    frames[:, :20] = 200                                       # top half bright
    assert resize_frames(frames, 1.0) is frames
    small = resize_frames(frames, 0.5)
    assert small.shape == (2, 20, 30, 3) and small.dtype == np.uint8
    assert (small[:, :10] == 200).all() and (small[:, 10:] == 0).all()
    assert resize_frames(frames, 1.5).shape == (2, 60, 90, 3)


class LeftHalfModel(torch.nn.Module):
    """Predicts one object, the left half of whatever it is shown, and records the input sizes it saw."""

    def __init__(self):
        super().__init__()
        self.seen: list[tuple[int, int]] = []

    def forward(self, clips):
        B, T, _, H, W = clips.shape
        self.seen.append((H, W))
        masks = torch.full((B, 1, T, H // 4, W // 4), -10.0)
        masks[..., : (W // 4) // 2] = 10.0
        return {"pred_logits": torch.tensor([[[4.0, -4.0]]]).expand(B, -1, -1), "pred_masks": masks,
                "image_size": (H, W)}


def first_video_halves(ds) -> tuple[str, tuple[int, int, int], np.ndarray, np.ndarray]:
    """The first video of ``ds``: its name, (H, W, T), and the (H, W) masks of its frames' left half (what
    ``LeftHalfModel`` predicts) and right half."""
    name = ds.names[0]
    sk = ds.skeleton(name)
    H, W = sk.height, sk.width
    left, right = np.zeros((H, W), bool), np.zeros((H, W), bool)
    left[:, : W // 2], right[:, W // 2:] = True, True
    return name, (H, W, sk.length), left, right


def test_predict_video_at_a_scale_returns_masks_at_frame_size():
    frames = np.zeros((4, 96, 128, 3), np.uint8)
    model = LeftHalfModel()
    tubes = predict_video(model, frames, score_thr=0.5, window=12, scale=0.5)
    assert model.seen == [(48, 64)]                            # the model saw the frames at half size
    assert len(tubes) == 1 and sorted(tubes[0].masks) == [0, 1, 2, 3]
    m = tubes[0].masks[2]
    assert m.shape == (96, 128)                                # masks come back at the frames' size
    assert m[:, :64].all() and not m[:, 64:].any()             # ... and in the frames' coordinates


def test_checkpoint_crop_reads_the_stamped_training_crop(tmp_path):
    fallback = AugmentConfig(size=(96, 128), crop_scale=(0.6, 1.0))
    stamped = tmp_path / "stamped.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(2)},
                "s2d": {"config": {"train": {"crop_size": [192, 256], "crop_scale": [0.5, 0.9]}}}}, stamped)
    assert checkpoint_crop(stamped, fallback) == AugmentConfig(size=(192, 256), crop_scale=(0.5, 0.9))
    bare = tmp_path / "bare.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(2)}}, bare)
    assert checkpoint_crop(bare, fallback) == fallback


def test_label_predictions_show_the_model_the_trained_scale(compose, tiny_demo, tmp_path):
    """The label stage's inference resizes 64x80 demo frames to the scale 32x40 crops of 60-100 % of the frame
    trained at (the top of the range, sqrt(1280 / 3072) = 0.645), unless label.input_scale fixes it."""
    from s2d.data.sources import open_dataset
    from s2d.stages.label import predictions

    ds = open_dataset("ytvis", tiny_demo)
    crop = AugmentConfig(size=(32, 40), crop_scale=(0.6, 1.0))
    for override, expected in ((None, (41, 52)), (1.0, (64, 80))):
        cfg = compose("progress=false", *([] if override is None else [f"label.input_scale={override}"]))
        model = LeftHalfModel()
        out = predictions(cfg, ds, model, crop, 0.5, None, "label", f"fp{override}", tmp_path / f"lab{override}")
        assert set(model.seen) == {expected}
        v = out[ds.names[0]]
        assert (v.height, v.width) == (64, 80) and len(v.instances) == 1


def test_a_learning_stage_warns_once_for_the_most_common_frame_size(caplog):
    """The distill and final stages log the note for the data's most common frame size (one 120x160 video
    among three 360p ones does not hide it)."""
    import logging
    from types import SimpleNamespace

    from s2d.stages.distill import warn_if_coarse

    ds = [SimpleNamespace(video=SimpleNamespace(size=hw)) for hw in [(360, 640), (120, 160), (360, 640), (360, 640)]]
    train = {"crop_size": [96, 128], "crop_scale": [0.6, 1.0]}
    with caplog.at_level(logging.WARNING, logger="s2d.stages.distill"):
        warn_if_coarse(ds, train, "distill")
        warn_if_coarse(ds, {**train, "crop_size": [288, 384]}, "final")
    msgs = [r.getMessage() for r in caplog.records]
    assert len(msgs) == 1 and msgs[0].startswith("distill: train.crop_size=[96, 128] on 360x640 frames")
