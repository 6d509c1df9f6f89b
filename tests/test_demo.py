"""The embedded demo data: deterministic, and it really has what S2D is about."""
from __future__ import annotations

import numpy as np

from s2d.data.demo import DemoConfig, demo_fingerprint, make_demo_video, make_demo_videos, true_tracks, \
    write_demo_dataset
from s2d.data.sources import open_dataset


def test_same_seed_same_videos_different_seed_different():
    a = make_demo_video(5, num_frames=6, height=48, width=64, num_objects=3)
    b = make_demo_video(5, num_frames=6, height=48, width=64, num_objects=3)
    c = make_demo_video(6, num_frames=6, height=48, width=64, num_objects=3)
    assert np.array_equal(a.frames, b.frames) and np.array_equal(a.labels, b.labels)
    assert not np.array_equal(a.frames, c.frames)


def test_scene_has_camera_motion_occlusion_and_entering_objects():
    vids = make_demo_videos(DemoConfig(num_videos=4, num_frames=24, seed=0))
    # camera: the canvas->frame homography changes over time
    assert all(not np.allclose(v.homographies[0, 0], v.homographies[0, -1]) for v in vids)
    occluded = entering = leaving = 0
    for v in vids:
        H, W = v.labels.shape[1:]
        for k in range(1, v.num_objects + 1):
            visible = (v.labels == k).sum(axis=(1, 2))  # (T,)
            if visible[0] == 0 and visible[-1] > 0:
                entering += 1
            if visible[0] > 0 and visible[-1] == 0:
                leaving += 1
        # occlusion: a point on some object is, at another frame, inside the image but covered by another object
        for k in range(1, v.num_objects + 1):
            t0 = int(np.argmax((v.labels == k).any(axis=(1, 2))))
            ys, xs = np.nonzero(v.labels[t0] == k)
            q = np.stack([np.full(len(xs), t0), xs, ys], 1).astype(float)[::7]
            tracks, vis = true_tracks(v, q)
            xy = np.round(tracks).astype(int)
            inside = (xy[..., 0] >= 0) & (xy[..., 0] < W) & (xy[..., 1] >= 0) & (xy[..., 1] < H)
            t_idx, n_idx = np.nonzero(inside & ~vis)
            if len(t_idx):
                lab = v.labels[t_idx, xy[t_idx, n_idx, 1], xy[t_idx, n_idx, 0]]
                occluded += int(((lab != 0) & (lab != k)).any())
    assert entering >= 1 and leaving >= 1 and occluded >= 1
    # objects change shape (perspective + scale), not just position
    v = vids[0]
    areas = [(v.labels == 1).sum(axis=(1, 2))]
    assert np.ptp(areas[0][areas[0] > 0]) > 20


def test_true_tracks_follow_the_surface():
    v = make_demo_video(2, num_frames=10, height=64, width=80, num_objects=3)
    ys, xs = np.nonzero(v.labels[0] == 1)
    q = np.stack([np.zeros(5), xs[:5].astype(float), ys[:5].astype(float)], 1)
    tracks, vis = true_tracks(v, q)
    assert tracks.shape == (10, 5, 2) and vis.shape == (10, 5)
    assert vis[0].all()
    np.testing.assert_allclose(tracks[0], q[:, 1:], atol=1e-6)
    for t in range(10):
        for n in range(5):
            if vis[t, n]:
                x, y = np.round(tracks[t, n]).astype(int)
                assert v.labels[t, y, x] == 1


def test_written_dataset_round_trips_and_is_not_rewritten(tmp_path):
    cfg = DemoConfig(num_videos=2, num_frames=5, height=40, width=56, seed=1)
    write_demo_dataset(tmp_path, cfg)
    mtime = (tmp_path / "annotations.json").stat().st_mtime_ns
    write_demo_dataset(tmp_path, cfg)
    assert (tmp_path / "annotations.json").stat().st_mtime_ns == mtime
    ds = open_dataset("demo", tmp_path)
    mem = make_demo_videos(cfg)
    for r, v in zip(ds, mem):
        assert r.name == v.name
        gt = r.gt.masks()
        visible = [k for k in range(v.num_objects) if v.masks()[k].any()]
        assert np.array_equal(gt, v.masks()[visible])
        assert np.array_equal(r.video[2], v.frames[2])  # lossless
    assert demo_fingerprint(cfg) != demo_fingerprint(DemoConfig(seed=2))
