"""Stage masks: painting, MaskCut, DINO loading, imports matched by name, failure isolation."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from s2d.errors import ConfigError, S2DError
from s2d.masks.maskcut import maskcut, ncut
from s2d.masks.paint import paint_non_overlapping


def test_paint_largest_first_smaller_on_top():
    big = np.zeros((10, 10), bool)
    big[:, :] = True
    small = np.zeros((10, 10), bool)
    small[2:4, 2:4] = True
    weak = np.zeros((10, 10), bool)
    weak[8:, 8:] = True
    masks, scores = paint_non_overlapping(np.stack([big, small, weak]), np.array([0.5, 0.9, 0.1]), max_masks=10,
                                          min_score=0.35)
    assert len(masks) == 2 and list(scores) == [0.9, 0.5]          # by score; the 0.1 mask is dropped
    assert masks[0].sum() == 4 and masks[1].sum() == 96            # the small one keeps its pixels
    assert not (masks[0] & masks[1]).any()
    m1, _ = paint_non_overlapping(np.stack([big, small]), np.array([0.5, 0.9]), max_masks=1, min_score=0)
    assert len(m1) == 1 and m1[0].sum() == 4


def test_maskcut_finds_the_central_object():
    h, w = 12, 16
    feats = np.zeros((h, w, 4))
    feats[..., 0] = 1.0
    feats[4:8, 6:11] = [0, 1, 0, 0]     # a 4x5 object
    feats += np.random.default_rng(0).normal(0, 0.05, feats.shape)
    feats /= np.linalg.norm(feats, axis=-1, keepdims=True)
    found = maskcut(feats, n_masks=3, tau=0.5)
    assert len(found) >= 1
    expect = np.zeros((h, w), bool)
    expect[4:8, 6:11] = True
    assert (found[0].mask == expect).all() and 0 < found[0].score <= 1


def test_lanczos_cut_equals_dense_cut():
    from scipy.linalg import eigh

    rng = np.random.default_rng(1)
    f = rng.normal(size=(600, 8))
    f[:200] += 1.5
    f /= np.linalg.norm(f, axis=1, keepdims=True)
    bip, vec, lam = ncut(f, 0.2)  # n > 400: Lanczos on the normalised affinity
    A = np.where(f @ f.T > 0.2, 1.0, 1e-5)
    d = A.sum(1)
    vals, vecs = eigh(np.diag(d) - A, np.diag(d), subset_by_index=[1, 1])
    assert lam == pytest.approx(vals[0], abs=1e-6)
    same = (bip == (vecs[:, 0] > vecs[:, 0].mean())).mean()
    assert same > 0.99 or same < 0.01  # equal up to the sign of the eigenvector


def test_frame_masks_on_demo_frame():
    from s2d.data.demo import make_demo_video
    from s2d.masks.frame_masks import color_feature_fn, frame_masks

    v = make_demo_video(0, 4, 120, 160, 3)
    m, s = frame_masks(v.frames[0], color_feature_fn(8), max_masks=10, min_score=0.35)
    assert m.shape[1:] == (120, 160) and len(m) <= 10 and (s >= 0.35).all()
    assert m.sum(0).max() <= 1  # disjoint
    gt = v.masks()[:, 0]
    inter = (m[:, None] & gt[None]).sum((2, 3))
    union = (m[:, None] | gt[None]).sum((2, 3))
    assert (inter / np.maximum(union, 1)).max() > 0.5  # at least one object found


def _fake_dino_checkpoint(path, wrap=True):
    from s2d.models.dino import DinoViT

    model = DinoViT("vit_tiny", patch=8, base_grid=4)
    sd = {f"backbone.{k}": v for k, v in model.state_dict().items()}
    torch.save({"teacher": sd} if wrap else sd, path)
    return model


def test_dino_checkpoint_loads_and_gives_features(tmp_path):
    from s2d.models.dino import dino_feature_fn, load_dino

    ref = _fake_dino_checkpoint(tmp_path / "dino.pth")
    model, report = load_dino(tmp_path / "dino.pth", "vit_tiny")
    assert report["patch"] == 8 and report["unexpected"] == []
    for (k, a), b in zip(model.state_dict().items(), ref.state_dict().values()):
        assert torch.equal(a, b), k
    f = dino_feature_fn(model)(np.random.default_rng(0).integers(0, 255, (40, 56, 3), dtype=np.uint8))
    assert f.shape == (5, 7, 192)
    np.testing.assert_allclose(np.linalg.norm(f, axis=-1), 1, atol=1e-5)


def test_dino_errors_name_the_key(tmp_path):
    from s2d.models.dino import load_dino

    with pytest.raises(ConfigError, match="masks.dino_checkpoint.*does not exist"):
        load_dino(tmp_path / "nope.pth")
    with pytest.raises(ConfigError, match="masks.dino_checkpoint.*needs a local DINO checkpoint"):
        load_dino(None)
    _fake_dino_checkpoint(tmp_path / "d.pth", wrap=False)
    sd = torch.load(tmp_path / "d.pth", weights_only=True)
    del sd["backbone.blocks.3.attn.qkv.weight"]
    torch.save(sd, tmp_path / "partial.pth")
    with pytest.raises(ConfigError, match=r"lacks 1 weights.*blocks.3.attn.qkv.weight"):
        load_dino(tmp_path / "partial.pth", "vit_tiny")
    with pytest.raises(ConfigError, match="masks.dino_arch.*does not fit vit_small"):
        load_dino(tmp_path / "d.pth", "vit_small")


def _coco_import(tiny_demo, tmp_path, shuffle=True, drop=None):
    """A COCO json of the demo's ground truth per frame, images listed in a shuffled order."""
    from s2d.data.sources import open_dataset

    ds = open_dataset("demo", tiny_demo)
    images, anns = [], []
    for r in ds:
        m = r.gt.masks()
        for t, fn in enumerate(r.video.frame_names()):
            if drop == (r.name, t):
                continue
            iid = len(images) + 1
            images.append({"id": iid, "file_name": f"{r.name}/{fn}", "height": r.gt.height, "width": r.gt.width})
            for k in range(len(m)):
                if m[k, t].any():
                    from s2d.labelset import rle

                    anns.append({"image_id": iid, "segmentation": rle.encode(m[k, t]), "score": 0.9 - 0.1 * k})
    if shuffle:
        images = images[::-1]
    p = tmp_path / "cuts3d.json"
    p.write_text(json.dumps({"images": images, "annotations": anns}))
    return p, ds


def test_import_coco_matches_frames_by_name(tiny_demo, tmp_path, compose):
    from s2d.labelset.frames import frame_masks_of
    from s2d.stages import masks as masks_stage
    from s2d.stages.data import data_fingerprint, load_data

    p, ds = _coco_import(tiny_demo, tmp_path)
    cfg = compose("data.kind=ytvis", f"data.root={tiny_demo}", "masks=imported", f"masks.import_path={p}",
                  "progress=false")
    ds = load_data(cfg)
    ls = masks_stage.compute(cfg, ds, data_fingerprint(cfg, ds)).labels
    for r in ds:
        per = frame_masks_of(ls[r.name])
        gt = r.gt.masks()
        for t, (m, s) in enumerate(per):
            for k in range(len(m)):
                assert any((m[k] == gt[j, t]).all() for j in range(len(gt)))


def test_import_missing_frame_is_listed(tiny_demo, tmp_path, compose):
    from s2d.stages import masks as masks_stage
    from s2d.stages.data import load_data

    p, _ = _coco_import(tiny_demo, tmp_path, drop=("demo_01", 3))
    cfg = compose("data.kind=ytvis", f"data.root={tiny_demo}", "masks=imported", f"masks.import_path={p}")
    with pytest.raises(S2DError, match=r"(?s)do not cover 1 frame.*video 'demo_01': frames 3 \(00003\)"):
        masks_stage.make_producer(cfg, load_data(cfg))


def test_import_png_label_maps(tiny_demo, tmp_path):
    from s2d.masks.imported import ImportedMasks

    lab = np.zeros((64, 80, 3), np.uint8)
    lab[5:20, 5:20] = (255, 0, 0)
    lab[30:40, 50:70] = (0, 255, 0)
    (tmp_path / "demo_00").mkdir()
    Image.fromarray(lab).save(tmp_path / "demo_00" / "00000.png")
    imp = ImportedMasks(tmp_path, "png")
    masks, scores = imp.frame("demo_00", "00000", (32, 40))
    # nearest-neighbour halving keeps source rows/cols 2k: rows 5..19 -> k = 3..9 (7), so 7 x 7 = 49 and
    # rows 30..39 x cols 50..69 -> 5 x 10 = 50
    assert masks.shape == (2, 32, 40) and sorted(masks.sum((1, 2)).tolist()) == [49, 50]
    assert imp.frame("demo_00", "00001", (32, 40)) is None


def test_failure_on_one_video_keeps_the_others_and_rerun_redoes_only_it(tiny_demo, tmp_path, compose):
    from s2d.stages import masks as masks_stage
    from s2d.stages.data import data_fingerprint, load_data

    root = tmp_path / "d"
    shutil.copytree(tiny_demo, root)
    bad = root / "JPEGImages" / "demo_01" / "00002.png"
    good_bytes = bad.read_bytes()
    bad.write_bytes(good_bytes[:200])
    cfg = compose("data.kind=ytvis", f"data.root={root}", "progress=false", "masks.refine=false")
    ds = load_data(cfg)
    with pytest.raises(S2DError, match=r"(?s)1 of 2 video\(s\) failed.*demo_01.*frame 2") as e:
        masks_stage.compute(cfg, ds, data_fingerprint(cfg, ds))
    assert "kept" in str(e.value)
    bad.write_bytes(good_bytes)
    calls = []
    real = masks_stage.make_producer

    def counting(cfg_, ds_, folder=None):
        produce = real(cfg_, ds_, folder)
        return lambda r: (calls.append(r.name), produce(r))[1]

    masks_stage.make_producer = counting
    try:
        ds = load_data(cfg)
        ls, out_dir = masks_stage.compute(cfg, ds, data_fingerprint(cfg, ds))[:2]
    finally:
        masks_stage.make_producer = real
    assert calls == ["demo_01"] and ls.names == ["demo_00", "demo_01"]
    assert (out_dir / "MANIFEST.json").exists()


def test_maskcut_outside_names_the_masks_only_where_it_acts(compose):
    """masks.maskcut_outside enters the masks' fingerprint only with masks=motion_maskcut and a share other than
    0.5 (the rule before the key): motion-only masks (the real-video data configs) and the default demo masks
    keep the folders they had."""
    from s2d.fingerprint import fingerprint
    from s2d.stages.common import section
    from s2d.stages.masks import VERSION, masks_fingerprint

    def fp(source, share):
        return masks_fingerprint(compose(f"masks={source}", f"masks.maskcut_outside={share}"), "data")

    assert fp("motion_maskcut", 0.25) != fp("motion_maskcut", 0.5)
    assert fp("motion", 0.25) == fp("motion", 0.5)
    assert fp("maskcut", 0.25) == fp("maskcut", 0.5)
    before = section(compose("masks=motion_maskcut"), "masks")
    before.pop("maskcut_outside")
    before.pop("full_rate")  # a later key, named only on data with frames between its videos' (test_full_rate.py)
    before["flow"] = section(compose("masks=motion_maskcut"), "flow")
    assert fp("motion_maskcut", 0.5) == fingerprint("masks", VERSION, "data", before)


def test_the_flow_setting_names_the_masks_and_keymasks_that_read_the_flow(compose):
    """flow.finest_scale changes the motion masks and the flow tracker's tracks, so it enters their fingerprints;
    MaskCut's masks and another tracker's keymasks do not read the flow and keep their folders."""
    from s2d.stages.masks import masks_fingerprint

    def fp(source, level):
        return masks_fingerprint(compose(f"masks={source}", f"flow.finest_scale={level}"), "data")

    assert fp("motion", 0) != fp("motion", 1) and fp("motion_maskcut", 0) != fp("motion_maskcut", 1)
    assert fp("maskcut", 0) == fp("maskcut", 1)


def test_weak_motion_over_still_scenery_names_its_masks_apart_from_the_rule_before(compose):
    """With masks.motion.keep_weak on, the masks' fingerprint names the rule as it acts now (only over still
    scenery), so masks kept by the earlier rule, which also kept weak regions over parallax, are not reused; with
    the key off (the default) the fingerprint is the plain section's, the folders of before."""
    from s2d.fingerprint import fingerprint
    from s2d.masks.motion import STILL_SCENERY
    from s2d.stages.common import section
    from s2d.stages.masks import VERSION, masks_fingerprint

    def fp(key):
        return masks_fingerprint(compose("masks=motion", f"masks.motion.keep_weak={key}"), "data")

    def plain(key):
        m = section(compose("masks=motion", f"masks.motion.keep_weak={key}"), "masks")
        m.pop("maskcut_outside")
        m.pop("full_rate")
        m["flow"] = section(compose("masks=motion"), "flow")
        return m

    assert fp("false") == fingerprint("masks", VERSION, "data", plain("false"))
    earlier = plain("true")
    assert fp("true") != fingerprint("masks", VERSION, "data", earlier)
    earlier["motion"]["keep_weak"] = {"still_scenery": STILL_SCENERY}
    assert fp("true") == fingerprint("masks", VERSION, "data", earlier)
