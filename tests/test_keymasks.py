"""Keymask discovery: hand-built visibility, Jaccard and linking cases, and the whole procedure."""
from __future__ import annotations

import numpy as np
import pytest

from s2d.keymasks import KeymaskParams, discover_keymasks
from s2d.keymasks.iou_linker import link_by_iou
from s2d.keymasks.linking import adaptive_dbscan_params, link
from s2d.keymasks.matching import label_maps, one_to_many, point_mask_jaccard
from s2d.keymasks.queries import grid_points, propagation_grid
from s2d.keymasks.visibility import cluster_visibility, runs, visibility_vectors
from s2d.tracking.base import Tracks


def test_grid_points_inside_mask():
    m = np.zeros((10, 10), bool)
    m[:5, :5] = True
    pts = grid_points(m, 5)  # lattice at 0.5, 2.5, 4.5, 6.5, 8.5 -> 3 x 3 inside (rounded 0, 2, 4)
    assert len(pts) == 9 and (pts < 5).all()
    tiny = np.zeros((10, 10), bool)
    tiny[7, 3] = True
    assert grid_points(tiny, 5).tolist() == [[3.0, 7.0]]   # no lattice point inside: the mask's own pixel
    assert propagation_grid(10_000) == 25 and propagation_grid(30_000) == 37 and propagation_grid(90_000) == 50


def test_visibility_vectors_hand_computed():
    visible = np.array([[1, 1, 1, 0],    # t = 0
                        [1, 0, 0, 0],    # t = 1
                        [0, 0, 1, 1]], bool)  # t = 2
    owner = np.array([0, 0, 0, 1])  # mask 0 has points 0..2, mask 1 has point 3; mask 2 has no points
    v = visibility_vectors(visible, owner, 3, gamma_thr=0.3)
    # mask 0: gamma = 1, 1/3, 1/3 -> all > 0.3; mask 1: 0, 0, 1
    assert v.tolist() == [[True, True, True], [False, False, True], [False, False, False]]


def test_runs():
    assert runs(np.array([0, 1, 1, 0, 1, 0, 1, 1, 1], bool)) == [(1, 2), (4, 4), (6, 8)]
    assert runs(np.zeros(3, bool)) == []


def test_visibility_clusters_ranges_and_candidates():
    T = 20
    vec = np.zeros((12, T), bool)
    vec[:6, 0:10] = True            # group A: 6 masks visible on frames 0..9
    vec[6:12, 12:20] = True         # group B: 6 masks visible on 12..19
    vec[5, 0:10] = False
    vec[5, 0:2] = True              # a weak member of A: visible on 2 of 10 frames (20 %)
    frames = np.array([0, 2, 4, 6, 8, 1, 12, 13, 14, 15, 16, 30])
    cl = cluster_visibility(vec, frames, eps=0.2, min_samples=5)
    assert len(cl) == 2
    a, b = cl
    assert a.ranges == [(0, 9)] and b.ranges == [(12, 19)]
    # mask 5 differs from group A on 8 of 20 frames (Hamming 0.4 > eps): noise, never a candidate
    assert sorted(a.candidates) == [0, 1, 2, 3, 4]
    assert 11 not in b.candidates                 # its own frame (30) is outside the range
    assert sorted(b.candidates) == [6, 7, 8, 9, 10]


def test_point_mask_jaccard_hand_computed():
    H, W, T = 4, 6, 2
    m0 = np.zeros((H, W), bool)
    m0[:, :3] = True                # frame 0 mask: left half  -> global 0
    m1 = np.zeros((H, W), bool)
    m1[:, 3:] = True                # frame 1 masks: right half -> global 1, left half -> global 2
    maps = label_maps([m0[None], np.stack([m1, ~m1])], np.array([0, 1]), H, W)
    # query 0 has 4 points; at t=1: two in the right half, one in the left, one outside the image
    pts = np.zeros((T, 4, 2))
    pts[0] = [[0, 0], [1, 1], [2, 2], [1, 3]]
    pts[1] = [[4, 0], [5, 1], [1, 2], [9, 9]]
    J = point_mask_jaccard(pts, np.zeros(4, int), 1, maps, np.ones((1, T), bool), 3)
    assert J.tolist() == [[4 / 4, 2 / 4, 1 / 4]]
    only_t1 = point_mask_jaccard(pts, np.zeros(4, int), 1, maps, np.array([[False, True]]), 3)
    assert only_t1.tolist() == [[0.0, 0.5, 0.25]]


def test_one_to_many_needs_five_frames():
    T = 6
    mask_frame = np.repeat(np.arange(T), 2)   # two masks per frame
    J = np.zeros((2, 12))
    J[0, :10] = 0.3    # query 0: both masks > 0.25 on frames 0..4 -> 5 frames
    J[1, :8] = 0.3     # query 1: only 4 frames
    assert one_to_many(J, mask_frame, T).tolist() == [True, False]


def test_adaptive_linking():
    assert adaptive_dbscan_params(60) == (0.05, 5)
    assert adaptive_dbscan_params(9) == (0.1, 3)
    assert adaptive_dbscan_params(30) == (0.1, 5)
    match = np.zeros((8, 8), bool)
    match[:4, :4] = True
    match[4:, 4:] = True
    labels, used = link(match)
    assert len(used) == 8 and len(set(labels[:4])) == 1 and len(set(labels[4:])) == 1 and labels[0] != labels[4]


class OracleTracker:
    """Tracks from the demo's true motion: isolates keymask logic from tracker errors."""

    def __init__(self, demo):
        self.demo = demo

    def track(self, frames, queries):
        from s2d.data.demo import true_tracks

        pts, vis = true_tracks(self.demo, queries)
        return Tracks(pts.astype(np.float32), vis)


def test_discovery_with_true_masks_and_tracks_recovers_each_object():
    from s2d.data.demo import make_demo_video

    v = make_demo_video(1, 16, 96, 128, 3)
    gt = v.masks()  # (K, T, H, W)
    fm = [np.stack([gt[k, t] for k in range(len(gt)) if gt[k, t].any()]) for t in range(16)]
    owner_obj = [[k for k in range(len(gt)) if gt[k, t].any()] for t in range(16)]
    fs = [np.ones(len(m)) for m in fm]
    res = discover_keymasks(v.frames, fm, fs, OracleTracker(v), KeymaskParams())
    obj_of = [k for t in range(16) for k in owner_obj[t]]
    assert res.summary["tracker_calls"] == 2
    assert res.instances
    for inst in res.instances:
        objs = {obj_of[i] for i in inst.members}
        assert len(objs) == 1                     # an instance never mixes objects
    found = {obj_of[inst.members[0]] for inst in res.instances}
    long_lived = {k for k in range(len(gt)) if gt[k].any(axis=(1, 2)).sum() >= 8}
    assert long_lived <= found                    # every object visible on half the video is found


def test_batched_and_per_mask_structures_give_identical_keymasks():
    from s2d.data.demo import make_demo_video
    from s2d.masks.frame_masks import color_feature_fn, frame_masks
    from s2d.tracking import FlowChainTracker

    v = make_demo_video(2, 12, 96, 128, 3)
    per = [frame_masks(f, color_feature_fn(8), refine=False) for f in v.frames]
    fm, fs = [m for m, _ in per], [s for _, s in per]
    a = discover_keymasks(v.frames, fm, fs, FlowChainTracker(), batched=True)
    b = discover_keymasks(v.frames, fm, fs, FlowChainTracker(), batched=False)
    assert [i.members for i in a.instances] == [i.members for i in b.instances]
    assert a.summary["tracker_calls"] == 2 and b.summary["tracker_calls"] > 2


def test_empty_video_gives_no_instances():
    frames = np.zeros((3, 8, 8, 3), np.uint8)
    res = discover_keymasks(frames, [np.zeros((0, 8, 8), bool)] * 3, [np.zeros(0)] * 3, OracleTracker(None))
    assert res.instances == [] and res.summary["masks_in"] == 0


def test_iou_linker_hand_case():
    a = np.zeros((3, 10, 10), bool)
    a[:, 2:6, 2:6] = True
    a[1, 2:6, 3:7] = True          # moves 1 px: IoU 12/20 = 0.6 >= 0.5
    b = np.zeros((10, 10), bool)
    b[7:, 7:] = True               # appears on frame 2 only
    fm = [a[0][None], a[1][None], np.stack([a[2], b])]
    tubes = link_by_iou(fm, [np.array([0.8]), np.array([0.6]), np.array([0.4, 0.9])])
    assert len(tubes) == 2
    (t0, s0), (t1, s1) = tubes
    assert all(m is not None for m in t0) and s0 == pytest.approx(0.6)
    assert t1[0] is None and t1[2] is not None and s1 == pytest.approx(0.9)


def test_cluster_without_a_majority_frame_has_no_ranges():
    """Six masks each visible on a different pair of frames are one DBSCAN cluster (Hamming distance 4/40 = 0.1),
    yet no frame sees more than half of them: no range, no candidate (and no crash downstream)."""
    T = 40
    vec = np.zeros((6, T), bool)
    for i in range(6):
        vec[i, 2 * i:2 * i + 2] = True
    cl = cluster_visibility(vec, np.arange(6) * 2, eps=0.2, min_samples=5)
    assert len(cl) == 1 and cl[0].ranges == [] and cl[0].candidates == {}


class _ShiftTracker:
    """Every point moves +2 px in x per frame, always visible: a stand-in whose answer is known."""

    def track(self, frames, queries):
        from s2d.tracking.base import Tracks

        T = len(frames)
        q = np.asarray(queries, np.float64)
        pts = np.zeros((T, len(q), 2), np.float32)
        for t in range(T):
            pts[t, :, 0] = q[:, 1] + 2 * (t - q[:, 0])
            pts[t, :, 1] = q[:, 2]
        return Tracks(pts, np.ones((T, len(q)), bool))


def test_stitching_joins_what_continues_and_nothing_else():
    """Instance 0 ends on frame 3 with a box at x 10..19; instance 1 starts on frame 6 where the box has moved
    3 x 2 px (x 16..25): J = 1. Instance 2 starts on frame 6 elsewhere (J = 0), instance 3 too late (gap 12 >
    max_gap 8), instance 4 on frame 2 overlaps instance 0 in time (never a successor). -> chains [0, 1], [2], [3],
    [4], and one tracker call."""
    from s2d.keymasks.stitching import chains, stitch_pairs

    def box(x0, y0=10):
        m = np.zeros((40, 60), bool)
        m[y0:y0 + 10, x0:x0 + 10] = True
        return m

    frames = np.zeros((20, 40, 60, 3), np.uint8)
    ends = [(3, box(10)), (9, box(30)), (8, box(40, 25)), (19, box(0)), (4, box(0, 25))]
    starts = [(0, box(4)), (6, box(16)), (6, box(40, 25)), (15, box(16)), (2, box(0, 25))]
    pairs, calls = stitch_pairs(ends, starts, frames, _ShiftTracker(), lambda_j=0.5, max_gap=8,
                                grid_args=(25, 50, 800.0))
    assert calls == 1 and [(i, j) for i, j, _ in pairs] == [(0, 1)] and pairs[0][2] == 1.0
    assert chains(5, pairs) == [[0, 1], [2], [3], [4]]
    # best J first, one successor and one predecessor each
    assert chains(4, [(0, 2, 0.6), (1, 2, 0.9), (0, 3, 0.55)]) == [[0, 3], [1, 2]]
    assert stitch_pairs(ends[:1], starts[:1], frames, _ShiftTracker(), 0.5, 8, (25, 50, 800.0)) == ([], 0)


def test_window_starts_cover_the_video_with_half_overlap():
    from s2d.keymasks.windows import window_starts

    assert window_starts(50, 64) == [0] and window_starts(64, 64) == [0] and window_starts(500, 0) == [0]
    assert window_starts(200, 64) == [0, 32, 64, 96, 128, 136]   # the last window ends at the last frame
    assert window_starts(65, 64) == [0, 1]
    for length, w in ((200, 64), (247, 64), (90, 32), (33, 8)):
        s = window_starts(length, w)
        covered = np.zeros(length, int)
        for a in s:
            covered[a:a + w] += 1
        assert covered.min() >= 1 and s[-1] + w == length
        assert all(b - a <= w // 2 for a, b in zip(s, s[1:]))     # consecutive windows share >= half


def test_window_instances_join_on_shared_keymasks_one_to_one():
    from s2d.keymasks.windows import groups_of, join_pairs

    def m(x0, x1):
        a = np.zeros((4, 10), bool)
        a[:, x0:x1] = True
        return a

    masks = [m(0, 4), m(5, 9), m(0, 4), m(5, 9), m(0, 3)]   # frame 10: masks 0, 1; frame 11: masks 2, 3, (4)
    left = [([0, 2], [10, 11]), ([1, 3], [10, 11])]           # two objects of window k
    right = [([3], [11]), ([2], [11])]                        # the same two in window k + 1, other order
    assert sorted(join_pairs(left, right, masks, 0.5)) == [(0, 1, 1.0), (1, 0, 1.0)]
    # another mask of the same place (IoU 3/4) joins too, but only once: the better pair wins
    assert join_pairs(left, [([4], [11]), ([2], [11])], masks, 0.5) == [(0, 1, 1.0)]
    assert join_pairs(left, [([4], [11])], masks, 0.5) == [(0, 0, 0.75)]
    assert join_pairs(left, [([4], [11])], masks, 0.8) == []
    assert join_pairs(left, [([4], [12])], masks, 0.5) == []  # no frame in common: left to stitching
    assert groups_of(5, [(0, 3), (3, 4)]) == [[0, 3, 4], [1], [2]]


class ShortLivedTracker(OracleTracker):
    """True positions, but each point visible only within ``reach`` frames of its query frame (and where truly
    visible): a flow tracker that loses its points for good after a while."""

    def __init__(self, demo, reach):
        super().__init__(demo)
        self.reach = reach

    def track(self, frames, queries):
        from s2d.data.demo import true_tracks

        # discovery in windows passes a slice of the video: find where it starts (the demo's frames are unique)
        s = next(i for i in range(len(self.demo.frames)) if np.array_equal(self.demo.frames[i], frames[0]))
        pts, vis = true_tracks(self.demo, queries + np.array([s, 0, 0]))
        pts, vis = pts[s:s + len(frames)], vis[s:s + len(frames)]
        t = np.arange(len(frames))[:, None]
        return Tracks(pts.astype(np.float32), vis & (np.abs(t - queries[:, 0][None]) <= self.reach))


def _short_lived_video():
    """A 72-frame demo video, its true masks per frame and the object of each, and a tracker whose points stay
    visible 8 frames either side of their query frame. -> (video, gt (K, T, H, W), masks per frame, their scores,
    object of each mask in order, tracker)."""
    from s2d.data.demo import make_demo_video

    T = 72
    v = make_demo_video(3, T, 96, 128, 3)
    gt = v.masks()
    fm = [np.stack([gt[k, t] for k in range(len(gt)) if gt[k, t].any()]) for t in range(T)]
    obj_of = [k for t in range(T) for k in range(len(gt)) if gt[k, t].any()]
    fs = [np.ones(len(x)) for x in fm]
    tracker = ShortLivedTracker(v, 8)
    return v, gt, fm, fs, obj_of, tracker


def test_long_video_with_short_lived_tracks_is_discovered_in_windows():
    """72 frames, points visible 8 frames either side of their query frame: over the whole video DBSCAN chains
    every mask into one cluster that is never visible as a majority (no instance at all); in 24-frame windows
    every object on screen for most of the video is found, as one instance joined across the windows, and no
    instance mixes objects."""
    v, gt, fm, fs, obj_of, tracker = _short_lived_video()
    whole = discover_keymasks(v.frames, fm, fs, tracker, KeymaskParams(window=0, min_window=0))
    assert whole.instances == [] and whole.summary["visibility_clusters"] == 1
    assert whole.summary["visible_clusters"] == 0  # what the keymasks stage names as points lost by the tracker
    res = discover_keymasks(v.frames, fm, fs, tracker, KeymaskParams(window=24))
    assert res.summary["windows"] == 5 and res.summary["joined_across_windows"] > 0
    found = [{obj_of[i] for i in inst.members} for inst in res.instances]
    assert all(len(objs) == 1 for objs in found)               # an instance never mixes objects
    long_lived = {k for k in range(len(gt)) if gt[k].any(axis=(1, 2)).sum() >= 48}
    assert long_lived and sorted(k for objs in found for k in objs if k in long_lived) == sorted(long_lived)
    members = [i for inst in res.instances for i in inst.members]
    assert len(members) == len(set(members))                   # each mask a keymask of one instance at most
    # a video that fits in one window is discovered exactly as before the key existed
    short = [x[:24] for x in (fm, fs)]
    a = discover_keymasks(v.frames[:24], *short, tracker, KeymaskParams(window=24))
    b = discover_keymasks(v.frames[:24], *short, tracker, KeymaskParams(window=0))
    assert [i.members for i in a.instances] == [i.members for i in b.instances] and "windows" not in a.summary


def test_windows_are_shortened_where_the_tracker_loses_the_points_too_soon():
    """keymasks.min_window: the 72-frame video of the test above, points visible 8 frames either side of their query
    frame. In 64-frame windows no visibility cluster has a majority frame (no instance); the windows are halved
    once, to 32 frames (17 of which a point lasts), and every object on screen for most of the video is found,
    no instance mixing objects. Where the first windows find instances, or min_window is 0 or above half the
    window, discovery is the same as without the key."""
    from s2d.keymasks.discover import points_lost

    v, gt, fm, fs, obj_of, tracker = _short_lived_video()
    off = discover_keymasks(v.frames, fm, fs, tracker, KeymaskParams(window=64, min_window=0))
    assert off.instances == [] and points_lost(off.summary, KeymaskParams())
    assert "windows_shortened_from" not in off.summary
    too_long = discover_keymasks(v.frames, fm, fs, tracker, KeymaskParams(window=64, min_window=40))
    assert too_long.instances == [] and too_long.summary == off.summary
    res = discover_keymasks(v.frames, fm, fs, tracker, KeymaskParams(window=64, min_window=16))
    assert res.summary["window"] == 32 and res.summary["windows_shortened_from"] == 64
    at32 = discover_keymasks(v.frames, fm, fs, tracker, KeymaskParams(window=32, min_window=0))
    assert [i.members for i in res.instances] == [i.members for i in at32.instances]
    # the tracker calls of both tries are counted
    assert res.summary["tracker_calls"] == off.summary["tracker_calls"] + at32.summary["tracker_calls"]
    found = [{obj_of[i] for i in inst.members} for inst in res.instances]
    assert all(len(objs) == 1 for objs in found)
    long_lived = {k for k in range(len(gt)) if gt[k].any(axis=(1, 2)).sum() >= 48}
    assert long_lived and long_lived <= {k for objs in found for k in objs}
    # points that last: instances at the first try, nothing shortened
    a = discover_keymasks(v.frames, fm, fs, OracleTracker(v), KeymaskParams(window=64, min_window=16))
    b = discover_keymasks(v.frames, fm, fs, OracleTracker(v), KeymaskParams(window=64, min_window=0))
    assert a.instances and [i.members for i in a.instances] == [i.members for i in b.instances]
    assert a.summary == b.summary


def test_points_lost_is_the_diagnosis_of_a_tracker_that_loses_its_points():
    from s2d.keymasks.discover import points_lost

    p = KeymaskParams()
    lost = {"masks_in": 9, "visibility_clusters": 2, "visible_clusters": 0, "candidates": 0, "instances": 0}
    assert points_lost(lost, p)
    assert not points_lost({**lost, "instances": 1}, p)           # found something
    assert not points_lost({**lost, "visible_clusters": 1}, p)    # a majority frame: lost later, not for want of it
    assert not points_lost({**lost, "visibility_clusters": 0}, p)  # masks too scattered to cluster at all
    assert not points_lost({**lost, "masks_in": p.vis_min_samples - 1}, p)  # too few masks for any cluster


def test_videos_whose_masks_give_no_instance_are_named_with_the_step_that_lost_them():
    from s2d.stages.keymasks import without_instances

    p = KeymaskParams()
    rows = [
        {"video": "kept", "masks_in": 40, "visibility_clusters": 1, "candidates": 12, "instances": 2},
        {"video": "bare", "masks_in": 0, "visibility_clusters": 0, "candidates": 0, "instances": 0},
        {"video": "short", "masks_in": 3, "visibility_clusters": 0, "candidates": 0, "instances": 0},
        {"video": "noise", "masks_in": 9, "visibility_clusters": 0, "candidates": 0, "instances": 0},
        {"video": "brief", "masks_in": 9, "visibility_clusters": 2, "candidates": 0, "instances": 0},
        {"video": "unmatched", "masks_in": 9, "visibility_clusters": 1, "candidates": 4, "instances": 0},
        {"video": "lost", "masks_in": 9, "visibility_clusters": 1, "visible_clusters": 0, "candidates": 0,
         "instances": 0},
        {"video": "shortened", "masks_in": 9, "visibility_clusters": 1, "visible_clusters": 0, "candidates": 0,
         "instances": 0, "window": 16, "windows_shortened_from": 64},
    ]
    got = without_instances(rows, p)
    # a video with instances, or without any mask (the masks stage names those), is not listed
    assert [g.split(" ")[0] for g in got] == ["short", "noise", "brief", "unmatched", "lost", "shortened"]
    assert f"keymasks.member_frac={p.member_frac}" in got[4] and "tracker=cotracker" in got[4]
    assert "min_window" not in got[4]
    assert f"in windows of 16 frames too (keymasks.min_window={p.min_window})" in got[5]
    assert "3 mask(s)" in got[0] and f"keymasks.vis_min_samples={p.vis_min_samples}" in got[0]
    assert "no visibility cluster" in got[1] and f"keymasks.vis_eps={p.vis_eps}" in got[1]
    assert f"keymasks.range_frac={p.range_frac}" in got[2]
    assert f"keymasks.lambda_j={p.lambda_j}" in got[3]


def test_a_two_frame_video_is_named_when_its_masks_give_no_keymask(compose, tmp_path, caplog):
    """Through the stage: a video of 2 frames has masks but too few to cluster, and the log names it and why."""
    import logging

    from PIL import Image

    from s2d.data.demo import make_demo_video
    from s2d.stages import keymasks as keymasks_stage
    from s2d.stages import masks as masks_stage
    from s2d.stages.data import data_fingerprint, load_data

    moving = make_demo_video(0, 8, 96, 128, 2)
    for name, frames in (("whole", moving.frames), ("two", moving.frames[:2])):
        (tmp_path / "videos" / name).mkdir(parents=True)
        for t, f in enumerate(frames):
            Image.fromarray(f).save(tmp_path / "videos" / name / f"{t:05d}.png")
    cfg = compose("data=frames", f"data.root={tmp_path / 'videos'}", "data.short_side=96", "progress=false",
                  "keymasks.overlays=false")
    ds = load_data(cfg)
    data_fp = data_fingerprint(cfg, ds)
    masks = masks_stage.compute(cfg, ds, data_fp)
    assert 0 < sum(len(i.frames_with_mask) for i in masks.labels["two"].instances) < 5
    with caplog.at_level(logging.WARNING, logger="s2d.stages.keymasks"):
        out = keymasks_stage.compute(cfg, ds, masks.labels, masks.fingerprint)
    assert not out.labels["two"].instances and out.labels["whole"].instances
    msgs = [r.getMessage() for r in caplog.records if "no keymask instance" in r.getMessage()]
    assert len(msgs) == 1 and "1 of 2 video(s)" in msgs[0] and "two (" in msgs[0] and "whole" not in msgs[0]
    assert "keymasks.vis_min_samples=5" in msgs[0]
