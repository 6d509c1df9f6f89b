"""Masks from motion on hand-made sequences whose camera (a homography per frame) and moving objects are known."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from s2d.masks.motion import MotionParams, instances, merge_with_maskcut, motion_masks, smooth_along_flow

H, W = 120, 160


def _texture(h, w, seed, tint=(1.0, 1.0, 1.0)):
    """Smoothed noise with strong gradients: trackable everywhere, like natural texture; ``tint`` gives an
    object its own colours (an object coloured exactly like the scenery is the known limit of GrabCut)."""
    rng = np.random.default_rng(seed)
    img = cv2.GaussianBlur(rng.uniform(0, 255, (h, w, 3)).astype(np.float32), (0, 0), 2.0)
    img = (img - img.min()) / (img.max() - img.min()) * 255
    return (img * np.asarray(tint, np.float32)).clip(0, 255).astype(np.uint8)


def _camera(t, kind, rng):
    """Homography from the world plane to frame t."""
    if kind == "static":
        return np.eye(3)
    if kind == "pan":  # translation, a slow rotation and zoom: a moving camera over a planar scene
        a, s = np.deg2rad(0.6 * t), 1.0 + 0.006 * t
        return np.array([[s * np.cos(a), -s * np.sin(a), 40 - 2.5 * t], [s * np.sin(a), s * np.cos(a), 30 - 1.0 * t],
                         [0, 0, 1]])
    if kind == "shaky":  # hand-held: a few pixels of random jitter and rotation every frame
        dx, dy = rng.uniform(-4, 4, 2)
        a = np.deg2rad(rng.uniform(-1, 1))
        return np.array([[np.cos(a), -np.sin(a), 40 + dx], [np.sin(a), np.cos(a), 30 + dy], [0, 0, 1]])
    raise ValueError(kind)


def sequence(camera="static", objects=(), T=16, seed=0):
    """-> frames (T, H, W, 3) uint8 and true masks (N, T, H, W). ``objects``: (x, y, vx, vy, size, stop_at) in
    frame coordinates; an object moves (vx, vy) px per frame relative to the scenery until ``stop_at``."""
    rng = np.random.default_rng(seed)
    world = _texture(2 * H, 2 * W, seed)
    tints = [(1.0, 0.35, 0.3), (0.3, 0.45, 1.0), (0.35, 1.0, 0.4)]
    tex = [_texture(40, 40, seed + 10 + i, tints[i % 3]) for i in range(len(objects))]
    frames = np.zeros((T, H, W, 3), np.uint8)
    masks = np.zeros((len(objects), T, H, W), bool)
    for t in range(T):
        Hc = np.linalg.inv(_camera(t, camera, rng))  # world -> frame
        frames[t] = cv2.warpPerspective(world, Hc, (W, H), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        for i, (x, y, vx, vy, size, stop) in enumerate(objects):
            k = min(t, stop)
            # the object sits on the scenery and moves on it: place it through the camera, then add its own motion
            cx, cy, cw = Hc @ np.array([x + vx * k, y + vy * k, 1.0])
            x0, y0 = int(round(cx / cw)), int(round(cy / cw))
            ys, xs = slice(max(y0, 0), min(y0 + size, H)), slice(max(x0, 0), min(x0 + size, W))
            frames[t, ys, xs] = tex[i][: ys.stop - ys.start, : xs.stop - xs.start]
            masks[i, t, ys, xs] = True
    return frames, masks


def _iou(a, b):
    return (a & b).sum() / max((a | b).sum(), 1)


def _best_iou(per_frame, gt, t):
    return max((_iou(m, gt[t]) for m in per_frame[t][0]), default=0.0)


P = MotionParams()


def test_static_camera_one_object():
    frames, gt = sequence("static", [(40, 40, 3, 1, 28, 99)])
    per, ev = motion_masks(frames, P)
    counts = [len(m) for m, _ in per]
    ious = [_best_iou(per, gt[0], t) for t in range(len(frames))]
    assert sum(c == 1 for c in counts) >= 14, counts
    assert np.median(ious) >= 0.8 and min(ious) >= 0.5, np.round(ious, 2)
    assert (ev.reliability > 0.9).all()
    assert ev.gap == 1  # a mover above the floor keeps the neighbouring frames


def test_moving_camera_one_object():
    frames, gt = sequence("pan", [(70, 60, 3, 2, 30, 99)])
    per, _ = motion_masks(frames, P)
    ious = [_best_iou(per, gt[0], t) for t in range(len(frames))]
    assert np.median(ious) >= 0.75, np.round(ious, 2)
    extra = [len(m) - 1 for m, _ in per if len(m) > 1]
    assert sum(extra) <= 2, [len(m) for m, _ in per]  # the scenery itself is not an object


def test_two_objects_become_two_instances():
    frames, gt = sequence("pan", [(50, 50, 3, 0, 26, 99), (150, 120, -2, -3, 26, 99)], seed=3)
    per, _ = motion_masks(frames, P)
    two = [t for t, (m, _) in enumerate(per) if len(m) == 2]
    assert len(two) >= 12, [len(m) for m, _ in per]
    for t in two:
        m, _ = per[t]
        # each true object has its own mask, and no mask covers both
        assert max(_iou(m[0], gt[0, t]), _iou(m[1], gt[0, t])) >= 0.6
        assert max(_iou(m[0], gt[1, t]), _iou(m[1], gt[1, t])) >= 0.6
        assert not (m[0] & m[1]).any()


def test_an_object_that_stops_fades_out():
    frames, gt = sequence("static", [(40, 40, 4, 0, 28, 7)], T=20)
    per, _ = motion_masks(frames, P)
    moving = [_best_iou(per, gt[0], t) for t in range(1, 7)]
    assert min(moving) >= 0.6, np.round(moving, 2)
    # once it has stood still for a few frames nothing marks it any more (the smoothing carries it briefly)
    assert all(len(per[t][0]) == 0 for t in range(13, 20)), [len(m) for m, _ in per]


@pytest.mark.parametrize("camera", ["static", "pan", "shaky"])
def test_no_masks_without_independent_motion(camera):
    """A planar scene seen by a still, panning-zooming-rotating or shaking camera: nothing moves against the
    camera, so no frame gets a mask (rather than a scenery mask)."""
    frames, _ = sequence(camera, [], seed=5)
    per, ev = motion_masks(frames, P)
    assert sum(len(m) for m, _ in per) == 0, [len(m) for m, _ in per]
    assert float(np.percentile(ev.residual, 99)) < P.min_residual * min(H, W) / 240


def test_a_slow_mover_is_found_over_a_longer_gap():
    """An object drifting under a pixel per frame (the floor is 1.5 px at 120p) never clears it between
    neighbouring frames: no mask with ``max_gap=1``. By default the video is compared over a longer gap, and the
    object gets its mask on most frames, the scenery none."""
    frames, gt = sequence("static", [(40, 40, 0.75, 0.25, 28, 99)], T=20, seed=1)
    near, ev1 = motion_masks(frames, MotionParams(max_gap=1))
    assert ev1.gap == 1 and sum(len(m) for m, _ in near) <= 2, [len(m) for m, _ in near]
    per, ev = motion_masks(frames, P)
    assert ev.gap in (2, 4), ev.gap
    ious = [_best_iou(per, gt[0], t) for t in range(len(frames))]
    assert sum(i >= 0.6 for i in ious) >= 14, np.round(ious, 2)
    assert all(len(m) <= 1 for m, _ in per), [len(m) for m, _ in per]


def test_a_slow_body_beside_a_fast_part_is_found_over_a_longer_gap():
    """A walking animal: its legs clear the floor between neighbouring frames and its body does not. Here a small
    part moving 3 px a frame and a body moving 1 px a frame (the floor is 1.5 px at 120p) over a still scene. The
    part alone makes every frame show motion, so the share of moving frames never asks for a longer gap: without
    ``slow_body`` the body has no mask. Two frames apart the moving area is several times larger over a scenery
    that stays explained, so the video is compared there, and the body has its mask on most frames."""
    objects = [(20, 15, 3, 0, 10, 99), (80, 60, 1, 0, 28, 99)]  # the fast part, the slow body
    frames, gt = sequence("static", objects, T=20, seed=2)
    near, ev1 = motion_masks(frames, MotionParams(slow_body=False))
    assert ev1.gap == 1
    assert sum(_best_iou(near, gt[1], t) >= 0.6 for t in range(len(frames))) <= 3
    per, ev = motion_masks(frames, P)
    assert ev.gap == 2, ev.gap
    body = [_best_iou(per, gt[1], t) for t in range(len(frames))]
    part = [_best_iou(per, gt[0], t) for t in range(len(frames))]
    assert sum(i >= 0.6 for i in body) >= 14, np.round(body, 2)
    assert sum(i >= 0.3 for i in part) >= 14, np.round(part, 2)


def test_a_slower_body_needs_over_twice_the_area_and_still_scenery():
    """``shows_slower_body`` on hand-made maps of two 20 x 20 frames (border band 2 px, floor 0.25 px, min 4 px):
    10 moving pixels a frame at the shorter gap; at twice the gap 25 (more than twice: a slower body) or 20
    (twice: no), with the border's residual 0 or 1 px (scenery moving over the longer gap: no); a frame whose
    camera is unsure at either gap does not count."""
    from s2d.masks.motion import shows_slower_body

    def maps(area, border_px=0.0, rel=(1.0, 1.0)):
        prior = np.zeros((2, 20, 20), np.float32)
        for t in range(2):
            prior[t].reshape(-1)[100:100 + area] = 1.0
        res = np.zeros((2, 20, 20), np.float32)
        res[:, :2] = border_px
        res[:, -2:] = border_px
        res[:, :, :2] = border_px
        res[:, :, -2:] = border_px
        return res, prior, np.asarray(rel)

    _, pn, rn = maps(10)
    assert shows_slower_body((pn, rn), maps(25), P, 4)
    assert not shows_slower_body((pn, rn), maps(20), P, 4)
    assert not shows_slower_body((pn, rn), maps(25, border_px=1.0), P, 4)
    # frame 1 grows 10-fold but its camera is unsure at the longer gap: frame 0 alone (10 -> 20) decides
    res, pf, _ = maps(20)
    pf[1, 5:15] = 1.0
    assert not shows_slower_body((pn, rn), (res, pf, np.asarray([1.0, 0.5])), P, 4)
    assert shows_slower_body((pn, rn), (res, pf, np.asarray([1.0, 1.0])), P, 4)


def test_the_forecast_of_a_slower_body_counts_pixels_half_way_to_the_threshold():
    """``may_show_slower_body`` on two 20 x 20 frames whose threshold is the floor (0.25 px; the median residual
    is 0): 10 moving pixels (1 px) a frame, and 15 more at 0.2 px, over half the threshold, which twice the gap
    would double past it: 25 against 10, more than twice. With 5 more it is 15: no. A frame whose camera is
    unsure does not count."""
    from s2d.masks.motion import may_show_slower_body

    def maps(half_way, rel=(1.0, 1.0)):
        res = np.zeros((2, 20, 20), np.float32)
        prior = np.zeros((2, 20, 20), np.float32)
        for t in range(2):
            res[t].reshape(-1)[100:110] = 1.0
            prior[t].reshape(-1)[100:110] = 1.0
            res[t].reshape(-1)[110:110 + half_way] = 0.2
        return res, prior, np.asarray(rel)

    assert may_show_slower_body(maps(15), P, 4)
    assert not may_show_slower_body(maps(5), P, 4)
    assert not may_show_slower_body(maps(15, rel=(0.5, 0.5)), P, 4)


def _disc(r):
    yy, xx = np.mgrid[:H, :W]
    return (yy - 60) ** 2 + (xx - 80) ** 2 < r ** 2


@pytest.mark.parametrize("level", [0.65, 0.9])
def test_weak_motion_that_grabcut_cannot_colour_is_kept_as_motion_found_it(level):
    """An object with the scenery's own colours and a smoothed prior between 0.5 and 0.8 on it (a mover just
    above the floor): GrabCut has no definite foreground seed and settles on "all background", so without
    ``keep_weak`` the frame has no mask; with it the motion region itself is the mask. Where the prior reaches
    0.9 (a definite seed, eroded) GrabCut is anchored, and the key changes nothing."""
    frame, obj = _texture(H, W, 0), _disc(20)
    soft = np.where(obj, level, 0.1).astype(np.float32)
    off, _ = instances(frame, soft, MotionParams(keep_weak=False))
    on, _ = instances(frame, soft, MotionParams(keep_weak=True))
    if level < 0.8:
        assert len(off) == 0
        assert len(on) == 1 and np.array_equal(on[0], obj)
    else:
        assert len(off) == 1 and (off[0] & obj).sum() > 0.5 * obj.sum()
        assert len(on) == 1 and np.array_equal(on[0], off[0])


def test_still_scenery_is_the_median_frames_border_residual_under_half_the_floor():
    """``still_scenery`` on three 20 x 20 frames (border band 2 px, floor 0.25 px, so the bound is 0.125 px): the
    90th percentile of each frame's border residual, the median over frames. Border residuals 0.1, 0.1 and 0.9 px
    (one frame of parallax): 0.1, still. 0.2, 0.2 and 0: 0.2, not still. Only the border counts: 5 px of motion
    inside the frame changes nothing."""
    from s2d.masks.motion import still_scenery

    def maps(per_frame, inside=0.0):
        res = np.full((3, 20, 20), inside, np.float32)
        for t, px in enumerate(per_frame):
            res[t, :2], res[t, -2:], res[t, :, :2], res[t, :, -2:] = px, px, px, px
        return res

    assert still_scenery(maps([0.1, 0.1, 0.9]), P)
    assert not still_scenery(maps([0.2, 0.2, 0.0]), P)
    assert still_scenery(maps([0.1, 0.1, 0.9], inside=5.0), P)


def test_weak_motion_is_kept_only_over_still_scenery(monkeypatch):
    """``keep_weak`` acts on a video (a window of it) whose scenery the camera explains well under the floor: over
    parallax a region just above the floor is as likely scenery (DAVIS's goat, border residual 3.9 px against the
    3 px floor). What each frame's ``instances`` is told, with the scenery still or not, the key on or off."""
    import s2d.masks.motion as motion

    frames, _ = sequence("static", [(70, 60, 3, 2, 30, 99)], T=4)
    real = motion.instances
    for key, still, want in [(True, True, True), (True, False, False), (False, True, False)]:
        told = []

        def spy(*args, **kw):
            told.append((args[2] if len(args) > 2 else kw["p"]).keep_weak)
            return real(*args, **kw)

        monkeypatch.setattr(motion, "instances", spy)
        monkeypatch.setattr(motion, "still_scenery", lambda res, p, still=still: still)
        motion.motion_masks(frames, MotionParams(keep_weak=key))
        assert told == [want] * len(frames), (key, still)


def test_weak_motion_that_grabcut_trims_to_the_object_keeps_the_cut():
    """The motion region spills 3 px past an object whose colours are its own: GrabCut keeps the object, over half
    of the region, and that cut stands with ``keep_weak`` too (the region is given back only when the cut keeps
    under half of it)."""
    obj, spill = _disc(20), _disc(23)
    frame = np.where(obj[..., None], _texture(H, W, 1, (1.0, 0.3, 0.3)), _texture(H, W, 2, (0.3, 0.3, 1.0)))
    soft = np.where(spill, 0.65, 0.1).astype(np.float32)
    for keep in (False, True):
        masks, _ = instances(frame, soft, MotionParams(keep_weak=keep))
        assert len(masks) == 1 and _iou(masks[0], obj) > 0.95, keep


def test_every_frame_shown_twice_is_compared_two_frames_apart():
    """Half speed by repeating each frame: every frame has a neighbour identical to it, so the smaller residual
    of the two directions is zero everywhere and no frame shows motion between neighbours. The gap of 2 compares
    each frame with a different one; the masks then match the object as on the original video."""
    frames, gt = sequence("pan", [(70, 60, 3, 2, 30, 99)], T=12)
    twice, gt2 = np.repeat(frames, 2, 0), np.repeat(gt, 2, 1)
    near, _ = motion_masks(twice, MotionParams(max_gap=1))
    assert sum(len(m) for m, _ in near) == 0
    per, ev = motion_masks(twice, P)
    assert ev.gap == 2
    ious = [_best_iou(per, gt2[0], t) for t in range(len(twice))]
    assert np.median(ious) >= 0.75, np.round(ious, 2)


def test_moving_share_counts_frames_with_an_object_sized_region_and_a_sure_camera():
    """Four frames of 10 x 10 (min 4 px, at most half the frame): a 9 px region counts; 2 px is too small; 60 px is
    a failed camera model, not an object; 9 px on a frame whose border the camera explains only half of does
    not count either. 1 of 4."""
    from s2d.masks.motion import moving_share

    prior = np.zeros((4, 10, 10), np.float32)
    prior[0, :3, :3] = 1.0
    prior[1, :1, :2] = 1.0
    prior[2, :6] = 1.0
    prior[3, :3, :3] = 1.0
    assert moving_share(prior, np.array([1.0, 1.0, 1.0, 0.5]), 4, 0.5) == 0.25
    assert moving_share(prior, np.ones(4), 4, 0.5) == 0.5
    assert moving_share(prior, np.ones(4), 4, 0.6) == 0.75


def test_temporal_smoothing_weights_and_carries():
    """Unit weights and zero flow: the two-sided recursive average is sum_s beta^|t-s| p_s / sum_s beta^|t-s|;
    a frame of weight 0 is filled from its neighbours."""
    T = 5
    prior = np.zeros((T, 4, 4), np.float32)
    prior[2] = 1.0
    zero = np.zeros((T - 1, 4, 4, 2), np.float32)
    beta = 0.5
    out = smooth_along_flow(prior, np.ones(T), zero, zero, beta)
    w = beta ** np.abs(np.arange(T)[:, None] - np.arange(T)[None])
    expected = (w @ prior[:, 0, 0]) / w.sum(1)
    np.testing.assert_allclose(out[:, 0, 0], expected, rtol=1e-5)
    weights = np.ones(T)
    weights[2] = 0.0
    prior[2], prior[1], prior[3] = 0.0, 1.0, 1.0
    out = smooth_along_flow(prior, weights, zero, zero, beta)
    assert out[2, 0, 0] == pytest.approx((0.5 + 0.5) / (0.5 + 0.25 + 0.5 + 0.25), rel=1e-5)


def _smooth_stored(prior, weight, fwd, bwd, beta):
    """The smoothing's definition with every sum kept for every frame (what ``smooth_along_flow`` computed before
    it kept only the forward sums)."""
    from s2d.masks.motion import _grid, _warp

    T, h, w = prior.shape
    base = _grid(h, w)
    wp = prior * weight[:, None, None].astype(np.float32)
    wt = np.broadcast_to(weight[:, None, None].astype(np.float32), prior.shape)
    nf, df = wp.copy(), np.array(wt, np.float32)
    for t in range(1, T):
        nf[t] += beta * _warp(nf[t - 1], bwd[t - 1], base)
        df[t] += beta * _warp(df[t - 1], bwd[t - 1], base)
    nb, db = wp.copy(), np.array(wt, np.float32)
    for t in range(T - 2, -1, -1):
        nb[t] += beta * _warp(nb[t + 1], fwd[t], base)
        db[t] += beta * _warp(db[t + 1], fwd[t], base)
    num, den = nf + nb - wp, df + db - wt
    return np.where(den > 1e-3, num / np.maximum(den, 1e-3), 0.0).astype(np.float32)


@pytest.mark.parametrize("T", [1, 2, 7])
def test_smoothing_that_keeps_only_forward_sums_equals_its_definition_bit_for_bit(T):
    """Random priors, weights with unreliable frames (0) and random float16 flows (as the cache holds them): the
    lean smoothing gives every float32 of the stored-sums one."""
    rng = np.random.default_rng(T)
    prior = rng.uniform(0, 1, (T, 24, 32)).astype(np.float32)
    weight = rng.uniform(0, 1, T)
    weight[rng.uniform(size=T) < 0.3] = 0.0
    fwd = rng.normal(0, 3, (T - 1, 24, 32, 2)).astype(np.float16)
    bwd = rng.normal(0, 3, (T - 1, 24, 32, 2)).astype(np.float16)
    got = smooth_along_flow(prior, weight, fwd, bwd, 0.8)
    assert got.dtype == np.float32 and got.shape == prior.shape
    np.testing.assert_array_equal(got, _smooth_stored(prior, weight, fwd, bwd, 0.8))


def test_peak_memory_estimate_bounds_what_the_motion_masks_allocate():
    """The estimate the masks stage warns with (``peak_bytes``) against the arrays ``motion_masks`` holds at its
    peak, traced (numpy reports its allocations to tracemalloc): an upper bound, and not a loose one."""
    import tracemalloc

    from s2d.masks.motion import peak_bytes

    frames, _ = sequence("pan", [(70, 60, 3, 2, 30, 99)])
    tracemalloc.start()
    try:
        motion_masks(frames, P)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    estimate = peak_bytes(*frames.shape[:3])
    assert 0.5 * estimate < peak <= estimate, (peak, estimate)


def test_merge_keeps_motion_first_and_adds_static_objects():
    a = np.zeros((1, 10, 10), bool)
    a[0, :5, :5] = True
    cut = np.zeros((3, 10, 10), bool)
    cut[0, :5, :6] = True   # mostly the moving object: dropped
    cut[1, 6:, 6:] = True   # a static object elsewhere: kept
    cut[2, 4:6, :2] = True  # half inside: kept minus the motion pixels
    m, s = merge_with_maskcut((a, np.array([0.7])), (cut, np.array([0.9, 0.8, 0.6])), max_masks=10, min_area=0.01)
    assert len(m) == 3 and s.tolist() == [0.7, 0.8, 0.6]
    assert not (m[1:] & m[0]).any() and m[2].sum() == 2
    m, _ = merge_with_maskcut((a, np.array([0.7])), (cut, np.array([0.9, 0.8, 0.6])), max_masks=2, min_area=0.01)
    assert len(m) == 2


def test_merge_adds_the_object_a_maskcut_mask_joins_to_a_moving_one():
    """Colour groups a moving object (motion mask, 25 px) with a slower one it half hides (15 px): the MaskCut
    mask holds both, 15 / 40 = 0.375 of it outside the motion mask. A share of 0.25 adds exactly the hidden
    object; the default (0.5, "mostly outside") drops it. A MaskCut mask of the moving object with a one-pixel
    rim (5 / 30 outside) is dropped by both."""
    moving = np.zeros((1, 10, 10), bool)
    moving[0, :5, :5] = True
    hidden = np.zeros((10, 10), bool)
    hidden[5:8, :5] = True
    both = (moving[0] | hidden)[None]
    m, s = merge_with_maskcut((moving, np.array([0.7])), (both, np.array([0.9])), max_masks=10, min_area=0.01,
                              min_outside=0.25)
    assert len(m) == 2 and s.tolist() == [0.7, 0.9]
    assert np.array_equal(m[0], moving[0]) and np.array_equal(m[1], hidden)
    m, _ = merge_with_maskcut((moving, np.array([0.7])), (both, np.array([0.9])), max_masks=10, min_area=0.01)
    assert len(m) == 1
    rim = np.zeros((1, 10, 10), bool)
    rim[0, :5, :6] = True
    for share in (0.25, 0.5):
        m, _ = merge_with_maskcut((moving, np.array([0.7])), (rim, np.array([0.9])), max_masks=10, min_area=0.01,
                                  min_outside=share)
        assert len(m) == 1
    # the boundary: exactly the share outside is enough (15 / 40 = 0.375)
    m, _ = merge_with_maskcut((moving, np.array([0.7])), (both, np.array([0.9])), max_masks=10, min_area=0.01,
                              min_outside=0.375)
    assert len(m) == 2


def _touching(gt, t):
    """The two objects share an edge (or overlap) on frame t: one connected moving region."""
    k = np.ones((3, 3), np.uint8)
    return bool((cv2.dilate(gt[0, t].astype(np.uint8), k) & gt[1, t]).any())


def test_touching_objects_with_different_motions_are_split():
    """Two squares side by side slide past each other (one down, one up): where they touch, their motion region
    is one connected component. Two affine motions explain it, so each square gets its own mask; with the split
    off (``split_px=0``) those frames hold one mask covering both."""
    frames, gt = sequence("pan", [(50, 30, 0, 3, 26, 99), (76, 90, 0, -3, 26, 99)], T=16, seed=2)
    touch = [t for t in range(1, 15) if _touching(gt, t)]
    assert len(touch) >= 6, touch
    split, _ = motion_masks(frames, P)
    joined, _ = motion_masks(frames, MotionParams(split_px=0))
    for t in touch:
        # without the split one mask holds most of both squares
        both = [m for m in joined[t][0] if (m & gt[0, t]).sum() > 0.5 * gt[0, t].sum()
                and (m & gt[1, t]).sum() > 0.5 * gt[1, t].sum()]
        assert both, t
        # with it, each square has a mask of its own, and the masks stay disjoint
        m = split[t][0]
        assert max(_iou(x, gt[0, t]) for x in m) >= 0.6, t
        assert max(_iou(x, gt[1, t]) for x in m) >= 0.6, t
        assert m.sum(0).max() == 1


def test_split_by_motion_on_known_flow():
    """One object turning and moving: an affine motion explains its flow, so it stays one mask. Two halves moving
    apart: two layers, exactly the halves. Three parts moving three ways: not two rigid layers, left whole."""
    from s2d.masks.motion import split_by_motion

    H_, W_ = 120, 160
    comp = np.zeros((H_, W_), bool)
    comp[30:90, 40:120] = True
    ys, xs = np.mgrid[:H_, :W_].astype(np.float32)
    a = np.deg2rad(4.0)  # 4 degrees a frame about the centre, plus a drift: several px at the corners
    cx, cy = 80.0, 60.0
    fx = (np.cos(a) - 1) * (xs - cx) - np.sin(a) * (ys - cy) + 2.0
    fy = np.sin(a) * (xs - cx) + (np.cos(a) - 1) * (ys - cy) - 1.0
    flow = np.stack([fx, fy], -1)
    assert len(split_by_motion(comp, flow, P, 10)) == 1
    # the same region, its right half moving 6 px down against the left half
    flow2 = np.zeros((H_, W_, 2), np.float32)
    flow2[:, 80:, 1] = 6.0
    layers = split_by_motion(comp, flow2, P, 10)
    assert len(layers) == 2
    right = comp.copy()
    right[:, :80] = False
    assert max(_iou(layers[0], right), _iou(layers[1], right)) >= 0.95
    assert not (layers[0] & layers[1]).any() and ((layers[0] | layers[1]) == comp).all()
    # three bands moving three ways (a body whose parts move apart): two motions explain two thirds of it, under
    # ``split_fit``, so it stays whole; allowed to explain less, it is cut
    flow3 = np.zeros((H_, W_, 2), np.float32)
    flow3[:, :67] = (0.0, 6.0)
    flow3[:, 67:93] = (6.0, 0.0)
    flow3[:, 93:] = (0.0, -6.0)
    assert len(split_by_motion(comp, flow3, P, 10)) == 1
    assert len(split_by_motion(comp, flow3, MotionParams(split_fit=0.6), 10)) == 2


def test_a_video_without_any_mask_is_named_with_what_to_try(compose, tmp_path, caplog):
    """The masks stage names the videos on which motion found nothing (here a still video beside a moving one)
    and says what to try, instead of leaving the user to find an empty labelset two stages later."""
    import logging

    from PIL import Image

    from s2d.data.demo import make_demo_video
    from s2d.stages import masks as masks_stage
    from s2d.stages.data import data_fingerprint, load_data

    moving = make_demo_video(0, 6, 96, 128, 2)
    # "slow": the moving video with every frame shown twice, found by comparing frames 2 apart (and named so)
    # "boxed": the moving video with black bars of 12 rows above and below (letterboxed), named with its picture
    boxed = np.pad(moving.frames, ((0, 0), (12, 12), (0, 0), (0, 0)))
    for name, frames in (("moving", moving.frames), ("slow", np.repeat(moving.frames, 2, 0)),
                         ("still", [moving.frames[0]] * 6), ("boxed", boxed), ("single", moving.frames[:1])):
        (tmp_path / "videos" / name).mkdir(parents=True)
        for t, f in enumerate(frames):
            Image.fromarray(f).save(tmp_path / "videos" / name / f"{t:05d}.png")
    cfg = compose("data=frames", f"data.root={tmp_path / 'videos'}", "data.short_side=96", "progress=false")
    ds = load_data(cfg)
    with caplog.at_level(logging.INFO, logger="s2d.stages.masks"):
        out = masks_stage.compute(cfg, ds, data_fingerprint(cfg, ds))
    assert sorted(v.name for v in out.labels if not v.instances) == ["single", "still"]
    slow = [r.getMessage() for r in caplog.records if "moves slowly" in r.getMessage()]
    assert len(slow) == 1 and slow[0].startswith("masks: slow ") and "frames 2 apart" in slow[0]
    msgs = [r.getMessage() for r in caplog.records if "no mask on any frame" in r.getMessage()]
    assert len(msgs) == 1 and "1 of 5 video(s)" in msgs[0] and ": still;" in msgs[0] and "data.stride" in msgs[0]
    # a one-frame video is named apart: nothing there can move, so the slow-mover advice would mislead
    one = [r.getMessage() for r in caplog.records if "single frame" in r.getMessage()]
    assert len(one) == 1 and "1 of 5 video(s)" in one[0] and ": single;" in one[0] and "motion_maskcut" in one[0]
    bars = [r.getMessage() for r in caplog.records if "black bars" in r.getMessage()]
    # 12 of 120 rows at short side 96 are 9.6: rows 0-8 and 87-95 stay black, rows 9 and 86 are blended
    assert bars == ["masks: boxed has black bars at its edges: its motion masks are made on the picture, rows 9-86 "
                    "and columns 0-101 of 102x96"], bars
    found = out.labels["boxed"].masks()  # (N, T, H, W)
    assert found.any() and not found[..., :9, :].any() and not found[..., 87:, :].any()


def test_a_video_too_long_for_memory_is_named_before_its_masks_are_made(compose, tmp_path, caplog, monkeypatch):
    """The kernel kills a process that runs out of memory without a word: the masks stage says first, naming the
    video, its size, the need and what to change. The video that fits is not named."""
    import logging

    from PIL import Image

    import s2d.io.memory
    from s2d.data.demo import make_demo_video
    from s2d.masks.motion import peak_bytes
    from s2d.stages import masks as masks_stage
    from s2d.stages.data import data_fingerprint, load_data

    v = make_demo_video(0, 12, 96, 128, 2)
    for name, frames in (("short", v.frames[:4]), ("long", v.frames)):
        (tmp_path / "videos" / name).mkdir(parents=True)
        for t, f in enumerate(frames):
            Image.fromarray(f).save(tmp_path / "videos" / name / f"{t:05d}.png")
    free = (peak_bytes(4, 96, 128) + peak_bytes(12, 96, 128)) // 2
    monkeypatch.setattr(s2d.io.memory, "available_memory", lambda: free)
    cfg = compose("data=frames", f"data.root={tmp_path / 'videos'}", "data.short_side=96", "progress=false")
    ds = load_data(cfg)
    with caplog.at_level(logging.WARNING, logger="s2d.stages.masks"):
        out = masks_stage.compute(cfg, ds, data_fingerprint(cfg, ds))
    msgs = [r.getMessage() for r in caplog.records if "its motion masks need about" in r.getMessage()]
    assert len(msgs) == 1 and msgs[0].startswith("masks: long has 12 frames at 128x96"), msgs
    assert "data.max_frames" in msgs[0] and "data.short_side (now 96 px)" in msgs[0]
    assert len(out.labels.videos) == 2  # a warning, not an error: both videos get their masks


def test_a_long_video_is_made_in_windows_with_the_masks_of_the_whole_and_less_memory():
    """Step 9: windows of 8 frames, each with the 10 frames its smoothing reaches (beta 0.5) on either side,
    give the masks of the whole video made at once, and hold less; the estimate bounds what they hold."""
    import tracemalloc

    from s2d.masks.motion import peak_bytes, smoothing_reach

    frames, gt = sequence("static", [(30, 30, 2, 1, 30, 99)], T=48, seed=2)
    whole_p, win_p = MotionParams(smooth_beta=0.5), MotionParams(smooth_beta=0.5, window=8)
    assert smoothing_reach(0.5) == 10 and smoothing_reach(0.8) == 31  # 0.5^10, 0.8^31 < 1/1000
    peaks, runs, calls = [], [], []
    for p in (whole_p, win_p):
        tracemalloc.start()
        try:
            runs.append(motion_masks(frames, p, progress=calls.append))
            peaks.append(tracemalloc.get_traced_memory()[1])
        finally:
            tracemalloc.stop()
    (whole, ev_whole), (win, ev_win) = runs
    assert ev_whole.gaps == (1,) and ev_win.gaps == (1,) * 6 and len(calls) == 96
    assert [len(m) for m, _ in win] == [len(m) for m, _ in whole]
    for (a, _), (b, _) in zip(whole, win):
        assert all(_iou(x, y) >= 0.98 for x, y in zip(a, b))
    assert np.median([_best_iou(win, gt[0], t) for t in range(48)]) >= 0.8
    assert peaks[1] < 0.8 * peaks[0] and peaks[1] <= peak_bytes(48, H, W, win_p), peaks


def test_the_masks_stage_reads_a_video_a_window_at_a_time(tiny_demo):
    from s2d.data.sources import open_dataset
    from s2d.stages.masks import FrameWindows

    video = next(iter(open_dataset("ytvis", tiny_demo))).video
    frames = FrameWindows(video)
    assert len(frames) == len(video)
    np.testing.assert_array_equal(frames[2:5], video.frames(range(2, 5)))
    np.testing.assert_array_equal(frames[len(video) - 2:len(video) + 9], video.frames(range(len(video) - 2, len(video))))


def test_picture_box_finds_letterbox_and_pillarbox_bars_and_leaves_other_frames_whole():
    from s2d.masks.picture_area import picture_box

    rng = np.random.default_rng(0)
    frames = [rng.integers(40, 255, (100, 200), np.uint8) for _ in range(3)]

    def barred(top, bottom, left, right, level=12):
        out = []
        for f in frames:
            g = f.copy()
            g[:top], g[100 - bottom:], g[:, :left], g[:, 200 - right:] = level, level, level, level
            out.append(g)
        return out

    assert picture_box(frames) == (0, 100, 0, 200)
    assert picture_box(barred(12, 12, 0, 0)) == (12, 88, 0, 200)       # letterbox
    assert picture_box(barred(0, 0, 25, 25)) == (0, 100, 25, 175)      # pillarbox
    assert picture_box(barred(1, 1, 3, 3)) == (0, 100, 0, 200)         # under 2 % of a side: left
    assert picture_box(barred(30, 30, 0, 0)) == (0, 100, 0, 200)       # the picture would keep under half
    assert picture_box(barred(12, 12, 0, 0, level=60)) == (0, 100, 0, 200)   # grey, not black: picture
    # a bar lit on one frame of the video is picture (a title, a flash)
    lit = barred(12, 12, 0, 0)
    lit[1][:12, 50] = 200
    assert picture_box(lit)[:2] == (0, 88)


def test_a_letterboxed_video_gets_the_masks_of_its_picture():
    """Black bars above and below a panning shot: the masks are those of the picture alone, placed back in the
    frame (what the bars cost real footage is measured in docs/RESULTS.md, "Letterboxed video")."""
    frames, gt = sequence("pan", [(70, 60, 3, 2, 30, 99)])
    bar = 24
    boxed = np.zeros((len(frames), H + 2 * bar, W, 3), np.uint8)
    boxed[:, bar:bar + H] = frames
    plain, _ = motion_masks(frames, P)
    per, ev = motion_masks(boxed, P)
    assert ev.box == (bar, bar + H, 0, W) and ev.smoothed.shape[1:] == (H, W)
    assert sum(len(m) for m, _ in plain) >= 12
    for (m, s), (mb, sb) in zip(plain, per):
        assert mb.shape[1:] == (H + 2 * bar, W) and not mb[:, :bar].any() and not mb[:, bar + H:].any()
        assert np.array_equal(mb[:, bar:bar + H], m) and np.array_equal(s, sb)
