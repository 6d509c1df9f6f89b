"""The dense labelset keeps the keymasks on their own frames (label.keymask_frames): the match, the masks taken,
the wiring into the label stage (round 1 only) and its fingerprint."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from s2d.inference.keep_labels import match_on_own_frames
from s2d.inference.keymask_frames import matched_pairs, take_keymask_frames
from s2d.inference.video_predict import Tube
from s2d.labelset import rle
from s2d.labelset.types import Instance, VideoLabels


def _box(y0, y1, x0, x1, size=(8, 8)) -> np.ndarray:
    m = np.zeros(size, bool)
    m[y0:y1, x0:x1] = True
    return m


def _instance(masks: dict[int, np.ndarray], length: int, score: float = 1.0) -> Instance:
    return Instance([rle.encode(masks[t]) if t in masks else None for t in range(length)], score)


def test_pairs_are_one_to_one_best_matches_first():
    """Keymask a on frame 0: IoU 1 with teacher 0; keymask b on frame 1: IoU 12/16 = 0.75 with teacher 0 and 8/20
    = 0.4 with teacher 1; keymask c: IoU 0 with both. a takes teacher 0 (the better match), b's best is taken
    and it gets none, c matches nothing."""
    T = 3
    a = _instance({0: _box(0, 4, 0, 4)}, T)
    b = _instance({1: _box(0, 4, 1, 4)}, T)                          # 12 px inside teacher 0's 16 on frame 1
    c = _instance({2: _box(6, 8, 6, 8)}, T)
    t0 = _instance({t: _box(0, 4, 0, 4) for t in range(T)}, T)
    t1 = _instance({1: _box(0, 4, 2, 6)}, T)                         # 8 px shared with b's 12: 8 / (12 + 16 - 8)
    assert np.allclose(match_on_own_frames([b], [t0, t1], 8, 8), [[0.75, 0.4]])
    assert matched_pairs([a, b, c], [t0, t1], 8, 8) == [(0, 0)]
    # without a, b's best (teacher 0) is free
    assert matched_pairs([b, c], [t0, t1], 8, 8) == [(0, 0)]
    # a bar under 0.4 still gives b nothing: it goes by its best tube, which a holds
    assert matched_pairs([a, b], [t0, t1], 8, 8, iou_thr=0.3) == [(0, 0)]
    assert matched_pairs([], [t0], 8, 8) == [] and matched_pairs([a], [], 8, 8) == []


def test_matched_tube_takes_the_keymasks_on_their_frames_only():
    """A teacher tube on frames 0-3 (the top-left 4x4) and a keymask instance on frames 1 and 3 (a 4x3 part of
    it, IoU 0.75): the tube's masks on frames 1 and 3 become the keymask's, frames 0 and 2 stay the teacher's,
    its scores stay; a second tube far away is left as it is; a cut frame that gets a keymask is no longer cut."""
    T = 4
    teacher = _box(0, 4, 0, 4)
    key = _box(0, 4, 0, 3)
    tubes = [Tube({t: teacher.copy() for t in range(T)}, [0.9, 0.7], [0.8], cut={3}),
             Tube({t: _box(6, 8, 6, 8) for t in range(T)}, [0.6])]
    keymasks = VideoLabels("v", 8, 8, T, instances=[_instance({1: key, 3: key}, T), Instance([None] * T, 1.0)])
    out, taken = take_keymask_frames(tubes, keymasks)
    assert taken == [0]
    assert [np.array_equal(out[0].masks[t], key if t in (1, 3) else teacher) for t in range(T)] == [True] * 4
    assert out[0].scores == [0.9, 0.7] and out[0].mask_scores == [0.8] and out[0].cut == set()
    assert all(np.array_equal(out[1].masks[t], tubes[1].masks[t]) for t in range(T))
    # the input tubes are not changed (new objects), and a replaced frame's encoded mask is the keymask's
    assert np.array_equal(tubes[0].masks[1], teacher) and tubes[0].cut == {3}
    assert rle.decode(out[0].rles(T)[1]).astype(bool).tolist() == key.tolist()
    # a keymask that matches no tube (IoU 1 / 19 with the first, 0 with the second) changes nothing
    far = VideoLabels("v", 8, 8, T, instances=[_instance({1: _box(3, 5, 3, 5)}, T)])
    same, none = take_keymask_frames(tubes, far)
    assert none == [] and all(np.array_equal(same[0].masks[t], teacher) for t in range(T))


def test_label_stage_takes_keymask_frames_in_round_one_only(compose, tiny_demo, tmp_path):
    """A model that predicts the left half of every frame; keymasks of its first video: the top half of the left
    half on frames 0 and 2 (IoU 0.5 with the teacher's tube there). With label.keymask_frames and the sparse
    keymasks the dense tube has the keymask on those frames and the left half elsewhere; with the key off, or the
    labels of a later round (sparse=False), the left half everywhere. The key enters the fingerprint settings
    only when on, and only for round 1's labelset."""
    from s2d.data.clips import AugmentConfig
    from s2d.data.sources import open_dataset
    from s2d.labelset.types import Labelset
    from s2d.stages.label import label_settings, predictions
    from tests.test_inference_scale import LeftHalfModel, first_video_halves

    ds = open_dataset("ytvis", tiny_demo)
    name, (H, W, T), left, _ = first_video_halves(ds)
    top = left.copy()
    top[H // 2:] = False
    earlier = Labelset([VideoLabels(v, H, W, T, instances=[_instance({0: top, 2: top}, T, 0.9)])
                        for v in ds.names])
    crop = AugmentConfig(size=(64, 80), crop_scale=(1.0, 1.0))
    for on in (False, True):
        cfg = compose("progress=false", f"label.keymask_frames={str(on).lower()}")
        for sparse in (True, False):
            out = predictions(cfg, ds, LeftHalfModel(), crop, 0.6, None, "label", f"fp{on}{sparse}",
                              tmp_path / f"k{on}{sparse}", previous=earlier, sparse=sparse)
            tube = out[name].instances[0]
            got = [rle.decode(tube.segmentations[t]).astype(bool) for t in range(T)]
            takes = on and sparse
            assert [np.array_equal(got[t], top if takes and t in (0, 2) else left) for t in range(T)] == [True] * T
            assert ("keymask_frames" in label_settings(cfg, sparse=sparse)) == takes
        assert "keymask_frames" not in label_settings(cfg, "predict")


class LeftHalfAndQuarterModel(torch.nn.Module):
    """Two objects on every frame: the left half (foreground probability 0.9997) and, inside it, the left quarter
    (0.982)."""

    def forward(self, clips):
        B, T, _, H, W = clips.shape
        masks = torch.full((B, 2, T, H // 4, W // 4), -10.0)
        masks[:, 0, ..., : (W // 4) // 2] = 10.0
        masks[:, 1, ..., : (W // 4) // 4] = 10.0
        return {"pred_logits": torch.tensor([[[4.0, -4.0], [2.0, -2.0]]]).expand(B, -1, -1), "pred_masks": masks,
                "image_size": (H, W)}


def test_label_keymask_first_ranks_the_tube_the_keymasks_support_above_its_duplicate(compose, tiny_demo, tmp_path,
                                                                                     monkeypatch):
    """Keymasks on the left quarter of frames 0 and 2; the teacher's left-half tube scores higher than its
    left-quarter tube, which matches the keymasks. By score the half goes first in the overlap decay and the
    quarter, all of whose pixels it covers, is scored 0; with label.keymask_first the quarter goes first and keeps
    its score, and the half keeps the share of its pixels the quarter leaves (a half). The key enters the
    fingerprint only where it acts: with keymask_frames, in round 1, with the overlap decay; like the other
    ranking keys it changes no mask, so a model trained with hard class targets is not trained again for it."""
    from s2d.config.schema import validate_config
    from s2d.data.clips import AugmentConfig
    from s2d.data.sources import open_dataset
    from s2d.labelset.types import Labelset
    from s2d.stages.label import label_settings, predictions

    ds = open_dataset("ytvis", tiny_demo)
    name = ds.names[0]
    sk = ds.skeleton(name)
    H, W, T = sk.height, sk.width, sk.length
    quarter = np.zeros((H, W), bool)
    quarter[:, : W // 4] = True
    earlier = Labelset([VideoLabels(v, H, W, T, instances=[_instance({0: quarter, 2: quarter}, T, 0.9)])
                        for v in ds.names])
    crop = AugmentConfig(size=(64, 80), crop_scale=(1.0, 1.0))
    for first in (False, True):
        cfg = compose("progress=false", "label.keymask_frames=true", f"label.keymask_first={str(first).lower()}")
        out = predictions(cfg, ds, LeftHalfAndQuarterModel(), crop, 0.6, None, "label", f"fp{first}",
                          tmp_path / f"f{first}", previous=earlier, sparse=True)
        by_area = sorted(out[name].instances, key=lambda i: int(rle.decode(i.segmentations[1]).sum()))
        assert len(by_area) == 2
        q, h = (i.score for i in by_area)
        if first:
            assert q == pytest.approx(1 / (1 + np.exp(-4.0)), abs=1e-4)
            assert h == pytest.approx(0.5 / (1 + np.exp(-8.0)), abs=0.02)
        else:
            assert q == pytest.approx(0.0, abs=0.02) and h == pytest.approx(1 / (1 + np.exp(-8.0)), abs=1e-4)
        assert ("keymask_first" in label_settings(cfg)) == first
        assert "keymask_first" not in label_settings(cfg, sparse=False)
        assert "keymask_first" not in label_settings(cfg, "predict")
    # label.compute: a folder of its own; with hard class targets the masks' fingerprint, with the scores as
    # targets (the default) the folder's
    from s2d.stages import label

    ckpt = tmp_path / "teacher.ckpt"
    ckpt.write_bytes(b"weights")  # only hashed: the model comes from the stand-in below
    monkeypatch.setattr(label, "load_model", lambda cfg, path, which="teacher": (LeftHalfAndQuarterModel(), crop))
    outs = {(first, targets): label.compute(compose(
        "progress=false", "label.refine=false", "label.keymask_frames=true", f"label.keymask_first={first}",
        f"final.score_targets={targets}"), ds, ckpt, "data-fp", (earlier, "keymasks-fp"))
        for first in ("false", "true") for targets in ("false", "true")}
    assert outs["false", "false"].folder != outs["true", "false"].folder
    assert outs["false", "false"].fingerprint == outs["true", "false"].fingerprint
    assert outs["false", "true"].fingerprint != outs["true", "true"].fingerprint
    on = ("label.keymask_frames=true", "label.keymask_first=true")
    validate_config(compose("experiment=davis2016", "label.keymask_first=true"))  # real video: accepted
    assert "keymask_first" not in label_settings(compose(*on, "label.overlap_decay=false"))
    assert "keymask_first" not in label_settings(compose("label.keymask_frames=false", "label.keymask_first=true"))


def test_on_for_real_video_off_for_the_demo_and_the_paper(compose):
    """The key is on for real video (every data config but the demo keeps the schema's default), off on the demo
    (whose labelset fingerprint is then what it was before the key existed) and with experiment=paper."""
    from s2d.stages.label import label_settings

    assert compose().label.keymask_frames is False and "keymask_frames" not in label_settings(compose())
    for data in ("experiment=davis2016", "data=mp4", "data=frames", "data=ytvis", "data=sav"):
        cfg = compose(data)
        assert cfg.label.keymask_frames is True and label_settings(cfg)["keymask_frames"] is True, data
    assert compose("experiment=paper", "data=mp4").label.keymask_frames is False
