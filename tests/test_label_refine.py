"""label.refine: the dense labelset's masks GrabCut-refined on their frames; fingerprints of runs without it."""
from __future__ import annotations

import numpy as np

from s2d.inference.video_predict import Tube, tube_instances
from s2d.labelset import rle


def _square_video(T=3, H=64, W=80):
    """A textured bright square (rows 20..43, cols 28..51) on a textured dark background."""
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 40, (T, H, W, 3)).astype(np.uint8)
    frames[:, 20:44, 28:52] = rng.integers(200, 255, (T, 24, 24, 3)).astype(np.uint8)
    truth = np.zeros((H, W), bool)
    truth[20:44, 28:52] = True
    return frames, truth


def _iou(a, b):
    return (a & b).sum() / (a | b).sum()


def test_refine_tubes_pulls_coarse_masks_to_the_object_and_re_encodes():
    from s2d.stages.label import refine_tubes

    frames, truth = _square_video()
    coarse = np.zeros_like(truth)
    coarse[16:48, 22:56] = True                      # the square grown by 4-6 px, as a coarse model predicts
    tube = Tube({0: coarse.copy(), 2: coarse.copy()}, [0.9])
    before = tube.rles(3)                            # encoded before refinement (as tube NMS does)
    assert rle.decode(before[0]).sum() == coarse.sum()
    out = refine_tubes([tube], frames)
    assert len(out) == 1 and sorted(out[0].masks) == [0, 2]
    for m in out[0].masks.values():
        assert _iou(m, truth) > 0.95 > _iou(coarse, truth)
    inst = tube_instances(out, 3)[0]
    assert inst.segmentations[1] is None
    np.testing.assert_array_equal(rle.decode(inst.segmentations[0]), out[0].masks[0])  # not the stale encoding


def test_refine_enters_the_label_fingerprint_only_when_on_and_never_the_predictions(compose):
    from s2d.stages.common import section
    from s2d.stages.label import label_settings

    off, on = compose("label.refine=false"), compose()
    before = {k: v for k, v in section(off, "label").items() if k != "refine"}  # the section before the key
    assert label_settings(off) == before                      # runs without refinement keep their fingerprints
    assert label_settings(on) == {**before, "refine": True}
    # the predictions' own key is final.refine: label.refine does not reach them
    assert label_settings(compose("final.refine=false"), "predict") == before
    assert label_settings(compose("label.refine=false"), "predict") == {**before, "refine": True}


def test_final_refine_reaches_the_predictions_and_their_fingerprint_only_when_on(compose, monkeypatch, tmp_path):
    from s2d.fingerprint import fingerprint
    from s2d.io.atomic import sha256_file
    from s2d.stages import final, label

    ckpt = tmp_path / "last.ckpt"
    ckpt.write_bytes(b"weights")
    calls = []
    monkeypatch.setattr(label, "load_model", lambda cfg, path, which: ("model", "crop"))
    monkeypatch.setattr(label, "predictions", lambda *a, refine=False: calls.append((a[7], refine)) or [])
    off, on = compose("final.refine=false"), compose()
    assert on.final.refine and not compose("experiment=paper").final.refine  # on by default, off in the paper's
    fp_off, fp_on = final.predict(off, None, ckpt, "d").fingerprint, final.predict(on, None, ckpt, "d").fingerprint
    assert calls == [(fp_off, False), (fp_on, True)]
    # off: the fingerprint predictions had before the key existed, so earlier runs find theirs
    assert fp_off == fingerprint("predict", 1, "d", sha256_file(ckpt), label.label_settings(off, "predict"))
    assert fp_on != fp_off


def test_refinement_on_threads_gives_the_serial_masks_in_order():
    from s2d.masks.refine import grabcut_refine, grabcut_refine_many
    from s2d.stages.label import refine_tubes

    rng = np.random.default_rng(0)
    T, H, W = 4, 64, 96
    frames = rng.integers(0, 40, (T, H, W, 3)).astype(np.uint8)
    coarse = []
    for t in range(T):                                # the square moves 6 px a frame: each frame's result differs
        x = 20 + 6 * t
        frames[t, 20:44, x:x + 24] = rng.integers(200, 255, (24, 24, 3)).astype(np.uint8)
        m = np.zeros((H, W), bool)
        m[16:48, x - 4:x + 28] = True                 # grown by 4 px, as a coarse model predicts
        coarse.append(m)
    pairs = [(frames[t], coarse[t]) for t in range(T)] * 3
    serial = [grabcut_refine(f, m) for f, m in pairs]
    assert all(not np.array_equal(serial[0], s) for s in serial[1:T])
    for workers in (1, 3, 8):
        out = grabcut_refine_many(pairs, workers)
        assert len(out) == len(pairs) and all(np.array_equal(x, y) for x, y in zip(out, serial))
    empty = np.zeros((H, W), bool)
    tubes = [Tube({0: coarse[0], 1: coarse[1], 3: coarse[3]}, [0.9]), Tube({2: coarse[2]}, [0.6]),
             Tube({1: empty}, [0.7])]                 # a tube whose only mask is empty is dropped
    one, many = refine_tubes(tubes, frames, workers=1), refine_tubes(tubes, frames, workers=4)
    assert [sorted(tb.masks) for tb in many] == [[0, 1, 3], [2]] == [sorted(tb.masks) for tb in one]
    for a, b in zip(one, many):
        assert a.scores == b.scores and all(np.array_equal(a.masks[t], b.masks[t]) for t in a.masks)
    np.testing.assert_array_equal(many[0].masks[3], serial[3])
    np.testing.assert_array_equal(many[1].masks[2], serial[2])
