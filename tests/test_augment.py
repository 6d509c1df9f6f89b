"""Training-clip augmentation: the composed warp against hand-computed geometry, the parameter distributions,
the colour formulas, and clip consistency."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from s2d.data.augment import (CROP_RATIO, AugmentConfig, AugmentParams, adjust_colour, augment_clip, sample_crop,
                              sample_params, warp_matrix)

STILL = dict(crop_scale=(1.0, 1.0), flip=0.0, rotation=0.0, brightness=0.0, contrast=0.0)


def apply(m: torch.Tensor, x: float, y: float) -> tuple[float, float]:
    u = m @ torch.tensor([x, y, 1.0])
    return float(u[0]), float(u[1])


def test_warp_matrix_maps_crop_corners_flips_and_rotates_counter_clockwise():
    p = AugmentParams((10, 20, 41, 31), False, 0.0, 1.0, 1.0, True)
    m = warp_matrix(p, (16, 21))                          # crop 41 x 31 -> 21 x 16: scale 1/2 on both axes
    assert apply(m, 10, 20) == pytest.approx((0, 0)) and apply(m, 50, 50) == pytest.approx((20, 15))
    m = warp_matrix(AugmentParams((10, 20, 41, 31), True, 0.0, 1.0, 1.0, True), (16, 21))
    assert apply(m, 10, 20) == pytest.approx((20, 0)) and apply(m, 50, 50) == pytest.approx((0, 15))
    # 90 degrees on a 5 x 5 output (no crop): the pixel right of the centre goes to the top, the top one left
    m = warp_matrix(AugmentParams((0, 0, 5, 5), False, 90.0, 1.0, 1.0, True), (5, 5))
    assert apply(m, 4, 2) == pytest.approx((2, 0), abs=1e-6)
    assert apply(m, 2, 0) == pytest.approx((0, 2), abs=1e-6)


def test_still_settings_return_the_clip_and_a_flip_mirrors_it():
    g = torch.Generator().manual_seed(0)
    imgs = torch.rand(2, 3, 24, 32, generator=g)
    masks = torch.zeros(2, 2, 24, 32)
    masks[0, :, 3:9, 4:20] = 1
    masks[1, 1, 10:20, 25:30] = 1
    a, m = augment_clip(imgs, masks, AugmentConfig(size=(24, 32), **STILL), seed=5)
    assert torch.allclose(a, imgs, atol=1e-4) and torch.equal(m, masks)
    a, m = augment_clip(imgs, masks, AugmentConfig(size=(24, 32), **{**STILL, "flip": 1.0}), seed=5)
    assert torch.allclose(a, imgs.flip(-1), atol=1e-4) and torch.equal(m, masks.flip(-1))


def test_a_crop_at_its_own_size_is_a_slice_of_the_frame():
    imgs = torch.rand(1, 3, 40, 60)
    p = AugmentParams((7, 5, 30, 20), False, 0.0, 1.0, 1.0, True)
    from kornia.geometry.transform import warp_affine
    out = warp_affine(imgs, warp_matrix(p, (20, 30))[None], (20, 30), align_corners=True)
    assert torch.allclose(out, imgs[..., 5:25, 7:37], atol=1e-4)


def test_crops_have_the_configured_area_and_ratio_and_fall_back_to_a_centred_crop():
    rng = np.random.default_rng(0)
    for _ in range(300):
        x0, y0, w, h = sample_crop(120, 160, (0.3, 0.9), rng)
        assert 0 <= x0 and x0 + w <= 160 and 0 <= y0 and y0 + h <= 120
        # rounding w and h to pixels moves area and ratio by at most a pixel's worth
        assert 0.3 - 0.02 <= w * h / (120 * 160) <= 0.9 + 0.02
        assert CROP_RATIO[0] - 0.03 <= w / h <= CROP_RATIO[1] + 0.03
    # an area fraction above 1 never fits: the largest centred crop of an allowed ratio (a 10:1 frame -> 4:3)
    assert sample_crop(30, 300, (2.0, 3.0), rng) == ((300 - 40) // 2, 0, 40, 30)
    assert sample_crop(90, 120, (2.0, 3.0), rng) == (0, 0, 120, 90)


def test_parameters_cover_their_ranges():
    cfg = AugmentConfig(flip=0.5, rotation=15.0, brightness=0.1, contrast=0.2)
    ps = [sample_params(120, 160, cfg, np.random.default_rng(s)) for s in range(400)]
    flips = sum(p.flip for p in ps)
    assert 150 < flips < 250                                   # p = 0.5, 400 draws: 5 sigma is +- 50
    angles = [p.angle for p in ps]
    assert -15 <= min(angles) < -13 and 13 < max(angles) <= 15
    assert all(0.9 <= p.brightness <= 1.1 and 0.8 <= p.contrast <= 1.2 for p in ps)
    assert 0 < sum(p.brightness_first for p in ps) < 400


def test_colour_formulas_hand_computed():
    x = torch.full((1, 3, 2, 2), 0.5)
    x[0, :, 0, 0] = 0.9
    p = AugmentParams((0, 0, 2, 2), False, 0.0, 1.2, 1.0, True)
    assert torch.allclose(adjust_colour(x, p), (x * 1.2).clamp(0, 1))          # 0.9 * 1.2 clamps to 1
    p = AugmentParams((0, 0, 2, 2), False, 0.0, 1.0, 0.5, True)
    grey = (0.9 + 3 * 0.5) / 4                                                 # equal channels: grey = value
    assert torch.allclose(adjust_colour(x, p), 0.5 * x + 0.5 * grey)
    both = AugmentParams((0, 0, 2, 2), False, 0.0, 1.5, 0.5, True)
    other = AugmentParams((0, 0, 2, 2), False, 0.0, 1.5, 0.5, False)
    assert not torch.allclose(adjust_colour(x, both), adjust_colour(x, other))  # the order matters, and is drawn


def test_augmentation_is_clip_consistent_and_handles_clips_without_instances():
    imgs = torch.rand(3, 3, 40, 50)
    imgs[1:] = imgs[0]                       # three identical frames ...
    masks = torch.zeros(2, 3, 40, 50)
    masks[0, :, 10:20, 10:30] = 1
    masks[1, :, 25:35, 5:15] = 1
    cfg = AugmentConfig(size=(32, 40))
    a, m = augment_clip(imgs, masks, cfg, seed=3)
    assert a.shape == (3, 3, 32, 40) and m.shape == (2, 3, 32, 40)
    assert torch.equal(a[0], a[1]) and torch.equal(a[0], a[2])   # ... stay identical: same parameters
    assert torch.equal(m[:, 0], m[:, 2]) and m.sum() > 0 and set(m.unique().tolist()) <= {0.0, 1.0}
    b, _ = augment_clip(imgs, masks, cfg, seed=3)
    assert torch.equal(a, b)                 # a seed fixes everything
    c, _ = augment_clip(imgs, masks, cfg, seed=4)
    assert not torch.equal(a, c)
    e, em = augment_clip(imgs, torch.zeros(0, 3, 40, 50), cfg, seed=3)
    assert em.shape == (0, 3, 32, 40) and torch.equal(e, a)


def test_a_mask_moves_with_its_object():
    """An object painted into the image and its mask go through the same warp: after augmentation the mask
    still covers the bright pixels (colour aside: brightness/contrast off)."""
    imgs = torch.zeros(1, 3, 60, 80)
    masks = torch.zeros(1, 1, 60, 80)
    imgs[0, :, 20:40, 30:60] = 1.0
    masks[0, 0, 20:40, 30:60] = 1
    cfg = AugmentConfig(size=(48, 64), brightness=0.0, contrast=0.0, rotation=30.0)
    for seed in range(10):
        a, m = augment_clip(imgs, masks, cfg, seed)
        bright = a[0, 0] > 0.5
        assert m[0, 0].bool().eq(bright).float().mean() > 0.99
        assert math.isclose(m.sum().item(), bright.sum().item(), rel_tol=0.05)


def test_a_clip_is_the_same_on_any_thread_count():
    """A data-loader worker runs on one thread and the main process on several: the clip must not depend on it
    (the learned numbers would, through the last bits of every pixel)."""
    g = torch.Generator().manual_seed(1)
    imgs = torch.rand(3, 3, 240, 427, generator=g)
    masks = (torch.rand(2, 3, 240, 427, generator=g) > 0.5).float()
    cfg = AugmentConfig(size=(192, 256))
    before = torch.get_num_threads()
    try:
        out = {}
        for n in (1, 2):
            torch.set_num_threads(n)
            out[n] = [augment_clip(imgs, masks, cfg, seed) for seed in range(4)]
    finally:
        torch.set_num_threads(before)
    for (a, am), (b, bm) in zip(out[1], out[2]):
        assert torch.equal(a, b) and torch.equal(am, bm)


def test_a_tube_the_crop_leaves_empty_is_no_target_and_takes_its_flag_and_score_along(sparse_data):
    """The official data path keeps only the instances a clip shows after augmentation: a tube cropped away on
    every frame would teach "object" to a query with no mask. Its known_empty flag and class target go with it,
    the remaining ones stay aligned with their targets."""
    import copy

    from s2d.data.clips import ClipDataset
    from s2d.labelset import rle
    from s2d.labelset.types import Instance
    from s2d.seeds import item_seed

    ds, labels = sparse_data
    labels = copy.deepcopy(labels)
    for v in labels:
        for k, inst in enumerate(v.instances):
            inst.score = 0.5 + 0.1 * k           # scores name the instances
        corner = np.zeros((v.height, v.width), bool)
        corner[:3, :3] = True                    # in the top-left corner on every frame: most crops miss it
        v.instances.append(Instance([rle.encode(corner)] * v.length, score=0.05, extra={"kept": True}))
    aug = AugmentConfig(size=(48, 64), crop_scale=(0.3, 0.5), rotation=0.0)
    d = ClipDataset(ds, labels, 3, "dense", augment=aug, seed=1, teach_absent=True, score_targets=True)
    dropped = corner_dropped = 0
    for epoch in range(2):
        d.epoch = epoch
        for i in range(len(d)):
            item = d[i]
            v = labels[item["video"]]
            # the oracle: every instance on the clip's frames through the same warp (the item's seed draws)
            rng = np.random.default_rng(item_seed(d.seed, epoch, i))
            assert d.frames_of(i, rng) == item["frames"]
            on = [inst for inst in v.instances if any(inst.segmentations[t] is not None for t in item["frames"])]
            full = torch.from_numpy(np.stack([rle.decode_many([inst.segmentations[t] for t in item["frames"]],
                                                              v.height, v.width) for inst in on])).float()
            _, warped = augment_clip(torch.zeros(3, 3, v.height, v.width), full, aug, int(rng.integers(2 ** 31)))
            shown = warped.flatten(1).any(1).tolist()
            want = [inst for inst, s in zip(on, shown) if s]
            assert torch.equal(item["targets"], warped[torch.tensor(shown)]), (epoch, i)
            assert bool(item["targets"].flatten(1).any(1).all())                  # no empty target
            assert item["target_scores"].tolist() == pytest.approx([inst.score for inst in want]), (epoch, i)
            assert item["known_empty"].tolist() == [[not inst.extra.get("kept", False)] * len(item["frames"])
                                                    for inst in want]
            dropped += len(on) - len(want)
            corner_dropped += on[-1].score == 0.05 and not shown[-1]
    assert dropped > corner_dropped > 0           # the corner tube and others were cropped away
