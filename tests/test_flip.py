"""Flip test-time augmentation (label.flip): the mirrored input, the pairing of queries, the merged outputs."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from s2d.inference.flip import merge, mirrored
from s2d.inference.video_predict import predict_video, predict_window
from s2d.models.video_mask2former import PIXEL_MEAN, PIXEL_STD


def test_mirrored_pads_with_the_mean_then_flips():
    clip = torch.rand(1, 2, 3, 5, 7)                                 # (B, T, 3, H, W), H and W not multiples of 4
    mean = torch.tensor(PIXEL_MEAN).view(1, 3, 1, 1)
    m = mirrored(clip, mean, 4)
    assert m.shape == (1, 2, 3, 8, 8)
    back = m.flip(-1)
    assert torch.allclose(back[..., :5, :7], clip)
    pad = torch.cat([back[..., 5:, :].flatten(-2), back[..., :5, 7:].flatten(-2)], -1)  # (1, 2, 3, 3 * 8 + 5)
    assert torch.allclose(pad, mean.view(1, 1, 3, 1).expand_as(pad))
    assert torch.equal(mirrored(clip, mean, 1), clip.flip(-1))      # no padding asked: a plain flip


def test_merge_pairs_queries_by_mask_iou_and_averages_only_pairs():
    a = torch.full((3, 1, 4, 4), -1.0)                               # (Q, T, h, w) logits
    a[0, :, :2, :2] = 3.0                                            # 4 cells
    a[1, :, 2:, 2:] = 1.0                                            # 4 cells
    a[2, :, 0, 3] = 2.0                                              # 1 cell
    b = torch.full((3, 1, 4, 4), -1.0)                               # the mirror's queries in another order
    b[2, :, :2, :2] = 1.0                                            # a[0]'s mask: IoU 1
    b[0, :, 2:, 2:3] = 5.0                                           # 2 of a[1]'s 4 cells: IoU 0.5
    b[1, :, 3, 0] = 2.0                                              # a cell no query of a holds: IoU 0 with all
    sa, sb = torch.tensor([0.9, 0.6, 0.3]), torch.tensor([0.2, 0.1, 0.7])
    s, m = merge(sa, a, sb, b)
    assert torch.allclose(s, torch.tensor([(0.9 + 0.7) / 2, (0.6 + 0.2) / 2, 0.3]))
    assert torch.equal(m[0], (a[0] + b[2]) / 2) and torch.equal(m[1], (a[1] + b[0]) / 2)
    assert torch.equal(m[2], a[2])                                   # unpaired: its own prediction
    s_hi, m_hi = merge(sa, a, sb, b, pair_iou=0.6)                  # a[1]'s pair no longer reaches it
    assert torch.allclose(s_hi, torch.tensor([0.8, 0.6, 0.3])) and torch.equal(m_hi[1], a[1])
    assert torch.equal(sa, torch.tensor([0.9, 0.6, 0.3]))            # inputs untouched


class MirrorModel(torch.nn.Module):
    """A stand-in that pads as VideoMask2Former (zeros after normalising, bottom and right, to a multiple of 8)
    and whose queries are pixel tests on the 4x-pooled red channel at fixed thresholds: it commutes with a flip of
    its padded input, so flip inference must give exactly what plain inference gives."""

    size_divisibility = 8

    def __init__(self):
        super().__init__()
        self.register_buffer("pixel_mean", torch.tensor(PIXEL_MEAN).view(1, 3, 1, 1))
        self.register_buffer("pixel_std", torch.tensor(PIXEL_STD).view(1, 3, 1, 1))
        self.thresholds = torch.tensor([-1.5, -0.5, 0.5, 1.5])         # (Q,): distinct masks, distinct scores

    def forward(self, clips):
        B, T, _, H, W = clips.shape
        x = (clips.flatten(0, 1) - self.pixel_mean) / self.pixel_std
        x = F.pad(x, (0, -W % 8, 0, -H % 8))
        red = F.avg_pool2d(x[:, :1], 4)                             # (B*T, 1, Hp/4, Wp/4)
        masks = (red - self.thresholds.view(1, -1, 1, 1)) * 4       # (B*T, Q, h, w)
        masks = masks.unflatten(0, (B, T)).transpose(1, 2)           # (B, Q, T, h, w)
        logits = torch.stack([self.thresholds, -self.thresholds], -1).expand(B, -1, -1)
        return {"pred_logits": logits, "pred_masks": masks, "image_size": (H, W)}


def ramp_frames(rng: np.random.Generator, T: int) -> np.ndarray:
    """(T, 21, 30, 3) uint8 (padded to 24 x 32 by the model): red rises left to right, so each threshold of
    ``MirrorModel`` cuts the frame at another column and no two queries share a mask."""
    frames = rng.integers(0, 256, (T, 21, 30, 3), dtype=np.uint8)
    ramp = np.linspace(0, 255, 30)[None, None, :] + rng.normal(0, 8, (T, 21, 30))
    frames[..., 0] = np.clip(ramp, 0, 255).astype(np.uint8)
    return frames


def test_flip_inference_equals_plain_inference_for_a_mirror_symmetric_model():
    frames = ramp_frames(np.random.default_rng(0), 3)
    model = MirrorModel()
    plain = predict_window(model, frames, 0.0, (21, 30))
    flip = predict_window(model, frames, 0.0, (21, 30), flip=True)
    assert np.array_equal(plain[0], flip[0]) and np.allclose(plain[1], flip[1])
    assert len({m.tobytes() for m in plain[0]}) == 4                 # four different masks: a real pairing


def test_flip_inference_with_a_misplaced_mirror_differs():
    """The test above is sensitive: flipping the mirror's logits back without the padding's shift (pad on the
    right before the flip) puts them off the plain grid, and the merged masks change."""
    frames = ramp_frames(np.random.default_rng(1), 2)
    model = MirrorModel()
    clip = torch.from_numpy(frames).permute(0, 3, 1, 2)[None].float() / 255
    right = model(clip.flip(-1))["pred_masks"][0].flip(-1)           # the model pads the flipped clip itself
    good = model(mirrored(clip, model.pixel_mean, 8))["pred_masks"][0].flip(-1)
    plain = model(clip)["pred_masks"][0]
    assert torch.allclose(good, plain) and not torch.allclose(right, plain)


def test_predict_video_runs_a_real_model_with_flip():
    from s2d.models import VideoMask2Former

    torch.manual_seed(0)
    model = VideoMask2Former(backbone="tiny", hidden_dim=32, mask_dim=32, num_queries=6, nheads=2,
                             enc_dim_feedforward=64, dim_feedforward=64, enc_layers=1, dec_layers=2).eval()
    frames = np.random.default_rng(0).integers(0, 256, (5, 40, 52, 3), dtype=np.uint8)
    tubes = predict_video(model, frames, score_thr=0.0, window=3, overlap=1, nms_iou=None, flip=True)
    assert tubes and all(m.shape == (40, 52) for tb in tubes for m in tb.masks.values())
    assert all(0.0 <= s <= 1.0 for tb in tubes for s in tb.scores)


def test_flip_enters_the_label_and_predict_fingerprints_only_when_on(compose):
    from s2d.stages.label import label_settings

    off, on = compose(), compose("label.flip=true")
    for stage in ("label", "predict"):
        assert "flip" not in label_settings(off, stage)           # runs made before the key keep their fingerprints
        assert label_settings(on, stage) == {**label_settings(off, stage), "flip": True}
