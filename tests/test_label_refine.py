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
    from s2d.fingerprint import fingerprint
    from s2d.stages.common import section
    from s2d.stages.label import MODEL_MASK_REFINE, RANKING_KEYS, label_settings

    # tube ranking: test_rescore.py; one_identity: test_identity.py; split_apart: test_apart.py
    plain = ("label.mask_score=false", "label.overlap_decay=false", "label.one_identity=false",
             "label.split_apart=false")
    off, on = compose("label.refine=false", "label.keep_iou=null", *plain), compose("label.keep_iou=null", *plain)
    # the section before the keys (keep_iou enters only when set: tests/test_label_keep.py; keymask_frames only
    # when on, keymask_first only where it acts: tests/test_keymask_frames.py)
    before = {k: v for k, v in section(off, "label").items()
              if k not in ("refine", "keep_iou", "one_identity", "split_apart", "keymask_frames", "keymask_first",
                           "flip", *RANKING_KEYS)}
    assert label_settings(off) == before                      # runs without refinement keep their fingerprints
    assert label_settings(on) == {**before, "refine": MODEL_MASK_REFINE}
    # the predictions' own key is final.refine: label.refine does not reach them
    assert label_settings(compose("final.refine=false", *plain), "predict") == before
    assert label_settings(compose("label.refine=false", "label.keep_iou=null", *plain), "predict") == {
        **before, "refine": MODEL_MASK_REFINE}
    # sets refined the earlier way (the cut free to reach the whole mask, fingerprinted as True) are not reused
    assert fingerprint("label", 1, label_settings(on)) != fingerprint("label", 1, {**before, "refine": True})


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
    from s2d.stages.label import MODEL_MASK_REFINE, refine_tubes

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
    serial = [grabcut_refine(f, m, **MODEL_MASK_REFINE) for f, m in pairs]
    assert all(not np.array_equal(serial[0], s) for s in serial[1:T])
    for workers in (1, 3, 8):
        out = grabcut_refine_many(pairs, workers, **MODEL_MASK_REFINE)
        assert len(out) == len(pairs) and all(np.array_equal(x, y) for x, y in zip(out, serial))
    open_ = [grabcut_refine(f, m) for f, m in pairs[:T]]      # the single-frame masks' setting, on threads too
    assert all(np.array_equal(x, y) for x, y in zip(grabcut_refine_many(pairs[:T], 3), open_))
    empty = np.zeros((H, W), bool)
    tubes = [Tube({0: coarse[0], 1: coarse[1], 3: coarse[3]}, [0.9]), Tube({2: coarse[2]}, [0.6]),
             Tube({1: empty}, [0.7])]                 # a tube whose only mask is empty is dropped
    one, many = refine_tubes(tubes, frames, workers=1), refine_tubes(tubes, frames, workers=4)
    assert [sorted(tb.masks) for tb in many] == [[0, 1, 3], [2]] == [sorted(tb.masks) for tb in one]
    for a, b in zip(one, many):
        assert a.scores == b.scores and all(np.array_equal(a.masks[t], b.masks[t]) for t in a.masks)
    np.testing.assert_array_equal(many[0].masks[3], serial[3])
    np.testing.assert_array_equal(many[1].masks[2], serial[2])


def test_a_kept_core_holds_the_interior_a_colour_model_would_cut():
    """A bright object with a background-coloured panel inside (a white car's panels on a grey road): left open,
    the cut takes the panel out; with ``keep_core`` the mask eroded by the band stays, and whatever the cut does,
    the boundary moves at most ``band`` pixels either way."""
    import cv2

    from s2d.masks.refine import grabcut_refine

    rng = np.random.default_rng(1)
    H, W, band = 72, 96, 8
    frame = rng.integers(0, 40, (H, W, 3)).astype(np.uint8)
    frame[10:58, 12:84] = rng.integers(200, 255, (48, 72, 3)).astype(np.uint8)
    frame[26:42, 34:62] = rng.integers(0, 40, (16, 28, 3)).astype(np.uint8)  # the panel, >= 16 px from the edge
    mask = np.zeros((H, W), bool)
    mask[10:58, 12:84] = True                                                 # the whole object, panel included
    panel = np.zeros_like(mask)
    panel[26:42, 34:62] = True
    opened = grabcut_refine(frame, mask, band=band)
    kept = grabcut_refine(frame, mask, band=band, keep_core=True)
    assert opened[panel].mean() < 0.2                  # the colour model calls the panel background
    assert kept[panel].all() and _iou(kept, mask) > 0.97
    # bounds on a mask that is wrong on every side: grown right and down, shrunk left and up
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * band + 1, 2 * band + 1))
    wrong = np.zeros_like(mask)
    wrong[16:64, 18:92] = True
    out = grabcut_refine(frame, wrong, band=band, keep_core=True)
    core = cv2.erode(wrong.astype(np.uint8), k) > 0
    near = cv2.dilate(wrong.astype(np.uint8), k) > 0
    assert out[core].all() and not out[~near].any()
    assert _iou(out, mask) > _iou(wrong, mask)          # and inside those bounds it still moves toward the object
