"""The recording's frames between a video's kept frames (s2d/data/full_rate.py, s2d/tracking/full_rate.py): where
each kept frame sits in it for every source that has one, and the masks and tracker that read it."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from s2d.data.full_rate import FullRate, image_full_rate
from s2d.data.sources import open_dataset
from s2d.errors import MissingFrameError
from s2d.tracking.base import Tracks
from s2d.tracking.full_rate import FullRateTracker


def _write_frames(folder, n, hw=(24, 32)):
    folder.mkdir(parents=True, exist_ok=True)
    for t in range(n):  # frame t is flat grey 10 t: which frame was read is read back from its pixels
        Image.fromarray(np.full((*hw, 3), 10 * t, np.uint8)).save(folder / f"{t:05d}.png")
    return sorted(folder.iterdir())


def _greys(video):
    return [int(video[t][0, 0, 0]) for t in range(len(video))]


def test_image_full_rate_places_each_kept_frame_by_name(tmp_path):
    every = _write_frames(tmp_path / "all", 12)
    fr = image_full_rate("v", every, [every[2], every[7], every[10]], None)
    # the recording from the first kept frame to the last, each kept frame's index in it
    assert fr.at == (0, 5, 8) and _greys(fr.video) == [10 * t for t in range(2, 11)]
    assert image_full_rate("v", every, every[3:6], None) is None  # nothing between: no full rate
    with pytest.raises(MissingFrameError, match="'v'.*1 of its 2 frames are not among the 12.*first: x.png"):
        image_full_rate("v", every, [every[0], tmp_path / "x.png"], None)
    with pytest.raises(ValueError, match="increasing"):
        FullRate(fr.video, (0, 5, 5))
    # a subset of the kept frames: the recording cut after the subset's last one
    sub = fr.select([0, 1])
    assert sub.at == (0, 5) and len(sub.video) == 6


def test_numbered_frames_tell_their_step():
    from s2d.data.full_rate import numbered_step

    assert numbered_step(["v/00000.jpg", "v/00005.jpg", "v/00010.jpg"]) == 5  # YouTube-VIS's json
    assert numbered_step(["00000.jpg", "00001.jpg", "00002.jpg"]) is None     # every frame
    assert numbered_step(["00000.jpg", "00005.jpg", "00007.jpg"]) is None     # no one step
    assert numbered_step(["a.jpg", "b.jpg"]) is None and numbered_step(["00003.jpg"]) is None


def test_a_strided_image_video_keeps_the_frames_between(tmp_path):
    _write_frames(tmp_path / "videos" / "a", 14)
    r = open_dataset("frames", tmp_path / "videos", stride=3, max_frames=4)["a"]
    assert _greys(r.video) == [0, 30, 60, 90]
    fr = r.video.full_rate
    assert fr.at == (0, 3, 6, 9) and _greys(fr.video) == [10 * t for t in range(10)]
    assert open_dataset("frames", tmp_path / "videos")["a"].video.full_rate is None  # every frame kept: none


def test_davis_stride_full_rate_matches_the_annotated_frames(davis_root):
    r = open_dataset("davis", davis_root, short_side=48, videos=["car-shadow"], stride=4, max_frames=3)["car-shadow"]
    fr = r.video.full_rate
    assert fr.at == (0, 4, 8) and len(fr.video) == 9
    assert [fr.video.frame_names()[a] for a in fr.at] == r.video.frame_names()
    assert all((fr.video[a] == r.video[t]).all() for t, a in enumerate(fr.at))


def test_ytvis_reads_every_frame_from_data_all_frames(tmp_path):
    """YouTube-VIS's json lists every 5th frame; its all-frames release has the rest, in folders of the same name."""
    every = _write_frames(tmp_path / "all_frames" / "vid1", 11)
    (tmp_path / "JPEGImages" / "vid1").mkdir(parents=True)
    names = [f"vid1/{t:05d}.png" for t in (0, 5, 10)]
    for n in names:
        (tmp_path / "JPEGImages" / n).write_bytes((tmp_path / "all_frames" / n).read_bytes())
    ann = {"videos": [{"id": 1, "name": "vid1", "file_names": names, "height": 24, "width": 32, "length": 3}],
           "annotations": [], "categories": [{"id": 1, "name": "object"}]}
    (tmp_path / "train.json").write_text(json.dumps(ann))
    ds = open_dataset("ytvis", tmp_path, tmp_path / "train.json", all_frames=tmp_path / "all_frames")
    fr = ds["vid1"].video.full_rate
    assert fr.at == (0, 5, 10) and [p.name for p in fr.video.source.paths] == [p.name for p in every]
    assert open_dataset("ytvis", tmp_path, tmp_path / "train.json")["vid1"].video.full_rate is None
    # the release's top folder works too: its JPEGImages is used, as for data.root
    (tmp_path / "release").mkdir()
    (tmp_path / "all_frames").rename(tmp_path / "release" / "JPEGImages")
    ds = open_dataset("ytvis", tmp_path, tmp_path / "train.json", all_frames=tmp_path / "release")
    assert ds["vid1"].video.full_rate.at == (0, 5, 10)
    with pytest.raises(MissingFrameError, match="'vid1'.*no frames in its folder of data.all_frames"):
        open_dataset("ytvis", tmp_path, tmp_path / "train.json", all_frames=tmp_path / "nowhere")


class _Drift:
    """A tracker whose points move +1 px in x per frame of what it is given, visible while x < 20: its tracks
    through the recording are known in closed form."""

    def __init__(self):
        self.calls = []

    def track(self, frames, queries):
        self.calls.append(len(frames))
        q = np.asarray(queries, np.float32)
        t = np.arange(len(frames))[:, None]
        x = q[None, :, 1] + (t - q[None, :, 0])
        pts = np.stack([x, np.broadcast_to(q[None, :, 2], x.shape)], -1).astype(np.float32)
        return Tracks(pts, x < 20)


def test_the_tracker_runs_through_the_recording_and_keeps_the_kept_frames():
    full = np.zeros((13, 8, 24, 3), np.uint8)
    at = [0, 4, 8, 12]
    inner = _Drift()
    tr = FullRateTracker(inner, full, at).track(full[at], np.array([[1, 5.0, 2.0], [3, 1.0, 3.0]]))
    # query 0 sits on kept frame 1 = recording frame 4: at kept frame k it has moved at[k] - 4 px
    assert np.allclose(tr.points[:, 0, 0], [1, 5, 9, 13]) and np.allclose(tr.points[:, 1, 0], [-11, -7, -3, 1])
    assert np.allclose(tr.points[:, :, 1], [[2, 3]] * 4) and inner.calls == [13]
    assert tr.visible[:, 0].tolist() == [True, True, True, True]
    # a window of kept frames 1-2 is the recording from frame 4 to frame 8, queries counted from the window
    tr = FullRateTracker(inner, full, at).track_window(full[at], 1, 3, np.array([[1, 15.0, 0.0]]))
    assert inner.calls[-1] == 5 and np.allclose(tr.points[:, 0, 0], [11, 15]) and tr.points.shape == (2, 1, 2)
    # 16 + 4 = 20: a point that leaves the visible part between two kept frames is lost on the second
    tr = FullRateTracker(inner, full, at).track(full[at], np.array([[0, 16.0, 0.0]]))
    assert tr.visible[:, 0].tolist() == [True, False, False, False]
    with pytest.raises(ValueError, match="3 frames given, but the recording keeps 4"):
        FullRateTracker(inner, full, at).track(full[:3], np.zeros((0, 3)))
    with pytest.raises(ValueError, match="must increase within the 13 frames"):
        FullRateTracker(inner, full, [0, 4, 13])


def _moving_square_video(folder, n=13, hw=(72, 96), step=5):
    """A textured square moving ``step`` px a frame over a still textured background."""
    rng = np.random.default_rng(0)
    import cv2

    bg = cv2.GaussianBlur(rng.uniform(0, 255, (*hw, 3)).astype(np.float32), (0, 0), 2).astype(np.uint8)
    sq = cv2.GaussianBlur(rng.uniform(0, 255, (20, 20, 3)).astype(np.float32), (0, 0), 1.5)
    sq = (sq * [1.0, 0.4, 0.3]).clip(0, 255).astype(np.uint8)
    folder.mkdir(parents=True)
    frames = []
    for t in range(n):
        f = bg.copy()
        f[26:46, 8 + step * t: 28 + step * t] = sq
        Image.fromarray(f).save(folder / f"{t:05d}.png")
        frames.append(f)
    return np.stack(frames)


def test_the_masks_stage_makes_motion_masks_on_the_recording(compose, tmp_path):
    """With data.stride the masks of the kept frames are the recording's motion masks on those frames, exactly;
    with masks.full_rate=false they are the kept frames' own. The key names the masks' folder only where it acts."""
    from s2d.labelset.frames import frame_masks_of
    from s2d.masks.motion import MotionParams, motion_masks
    from s2d.stages import masks as masks_stage
    from s2d.stages.data import data_fingerprint, load_data

    frames = _moving_square_video(tmp_path / "videos" / "sq")
    got = {}
    for full_rate in (True, False):
        cfg = compose("data=frames", f"data.root={tmp_path / 'videos'}", "data.stride=3", "data.short_side=72",
                      f"masks.full_rate={full_rate}", "progress=false")
        ds = load_data(cfg)
        out = masks_stage.compute(cfg, ds, data_fingerprint(cfg, ds))
        got[full_rate] = (out.fingerprint, [m for m, _ in frame_masks_of(out.labels["sq"])])
    kept = [0, 3, 6, 9, 12]
    p = MotionParams()
    want = {True: [m for m, _ in motion_masks(frames, p, 3)[0]],
            False: [m for m, _ in motion_masks(frames[kept], p, 3)[0]]}
    for full_rate in (True, False):
        g, w = got[full_rate][1], want[full_rate] if not full_rate else [want[True][t] for t in kept]
        assert len(g) == 5 and all(a.shape == b.shape and (a == b).all() for a, b in zip(g, w)), full_rate
    assert any(m.any() for m in got[True][1])
    # the recording's masks on every frame are kept beside the set, for keymask discovery over the recording
    from s2d.labelset.frames import per_frame_from_json

    cfg = compose("data=frames", f"data.root={tmp_path / 'videos'}", "data.stride=3", "data.short_side=72",
                  "progress=false")
    ds = load_data(cfg)
    kept_rec = json.loads(masks_stage.recording_path(masks_stage.compute(cfg, ds, data_fingerprint(cfg, ds)).folder,
                                                     "sq").read_text())
    rec = per_frame_from_json(kept_rec)
    assert kept_rec["at"] == kept and len(rec) == 13
    assert all(a.shape == b.shape and (a == b).all() for a, b in zip((m for m, _ in rec), want[True]))
    # the two differ (5 px a frame is 15 between kept frames), so each comparison above tells them apart
    assert any(a.shape != b.shape or (a != b).any() for a, b in zip(got[True][1], got[False][1]))
    assert got[True][0] != got[False][0]
    # without frames between (no stride) the key does not enter the fingerprint: the folders of before it
    cfgs = [compose("data=frames", f"data.root={tmp_path / 'videos'}", f"masks.full_rate={f}") for f in (True, False)]
    ds = load_data(cfgs[0])
    assert masks_stage.masks_fingerprint(cfgs[0], "d", ds) == masks_stage.masks_fingerprint(cfgs[1], "d", ds)


def test_the_keymasks_stage_tracks_through_the_recording(compose, tmp_path, monkeypatch):
    """tracker.full_rate hands the flow tracker the recording (13 frames) instead of the 5 kept ones, and names
    the keymasks' folder; the sparse labelset stays on the kept frames. With the recording's masks (masks=motion,
    masks.full_rate) discovery runs over the recording and keeps its keymasks on the video's frames."""
    from s2d.stages import keymasks as keymasks_stage
    from s2d.stages import masks as masks_stage
    from s2d.stages.data import data_fingerprint, load_data
    from s2d.tracking.flow_chain import FlowChainTracker

    _moving_square_video(tmp_path / "videos" / "sq")
    seen = []
    real = FlowChainTracker.track_window
    monkeypatch.setattr(FlowChainTracker, "track_window",
                        lambda self, frames, start, stop, q: seen.append(len(frames)) or real(self, frames, start,
                                                                                                 stop, q))
    fps = {}
    for full_rate, over_recording in ((True, False), (False, False), (True, True)):
        seen.clear()
        args = ("data=frames", f"data.root={tmp_path / 'videos'}", "data.stride=3", "data.short_side=72",
                f"tracker.full_rate={full_rate}", "progress=false", "keymasks.overlays=false")
        cfg = compose(*args)
        ds = load_data(cfg)
        m = masks_stage.compute(cfg, ds, data_fingerprint(cfg, ds))
        out = keymasks_stage.compute(cfg, ds, m.labels, m.fingerprint, m.folder if over_recording else None)
        fps[full_rate, over_recording] = out.fingerprint
        assert seen and set(seen) == {13 if full_rate else 5}, (full_rate, seen)
        v = out.labels["sq"]
        assert v.length == 5 and v.instances, full_rate
        summary = json.loads((out.folder / "summaries" / "sq.json").read_text())
        assert summary["frames"] == 5 and summary.get("recording") == (13 if over_recording else None)
        rec = keymasks_stage.recording_labels(out, ds)
        if over_recording:  # 13 masks in, each on its own frame; kept: those on frames 0, 3, 6, 9, 12
            assert summary["masks_in"] == 13 and "| recording |" in (out.folder / "summary.md").read_text()
            inst = v.instances[0]
            assert inst.extra["keymask_frames"] == [t for t, sg in enumerate(inst.segmentations) if sg is not None]
            assert all(0 <= a <= b < 5 for a, b in inst.extra["visible_ranges"])
            # the same instances on every frame of the recording, for the learned stages (train.full_rate)
            whole = rec["sq"]
            assert whole.length == 13 and len(whole.instances) == len(v.instances)
            for w, k in zip(whole.instances, v.instances):
                assert [w.segmentations[t] for t in (0, 3, 6, 9, 12)] == k.segmentations
                assert w.extra["keymask_frames"] == [t for t, sg in enumerate(w.segmentations) if sg is not None]
            assert len(whole.instances[0].extra["keymask_frames"]) > len(inst.extra["keymask_frames"])
        else:  # discovery on the video's frames: nothing on the recording's frames to learn from
            assert rec is None
    assert len(set(fps.values())) == 3
    # keymasks.window counts the frames discovery runs over: 8 acts on the 13-frame recording (a folder of its own),
    # not on the 5 kept frames (the folder of the whole video)
    for over_recording in (False, True):
        got = {keymasks_stage.compute(compose(*args, f"keymasks.window={w}"), ds, m.labels, m.fingerprint,
                                      m.folder if over_recording else None).fingerprint for w in (0, 8)}
        assert len(got) == 1 + over_recording and fps[True, over_recording] in got, over_recording
    # a masks set without the recording's masks (deleted by hand) is named, with the way out
    import shutil

    from s2d.errors import S2DError

    masks_stage.recording_path(out.folder, "sq").unlink()
    with pytest.raises(S2DError, match=r"lacks .*recording/sq.json.*keymasks of video 'sq' on every frame"):
        keymasks_stage.recording_labels(out, ds)
    masks_stage.recording_path(m.folder, "sq").unlink()
    shutil.rmtree(out.folder)
    with pytest.raises(S2DError, match=r"sq.*lacks .*recording/sq.json.*delete .* to make it again"):
        keymasks_stage.compute(cfg, ds, m.labels, m.fingerprint, m.folder)


def test_a_broken_frame_between_is_named_with_the_setting_that_reads_it(compose, tmp_path):
    """A corrupt file among the frames between the video's own stops that video (the others are kept) with an error
    that names the file and says that masks.full_rate=false would not read it."""
    from s2d.errors import S2DError
    from s2d.stages import masks as masks_stage
    from s2d.stages.data import data_fingerprint, load_data

    for name in ("sq", "ok"):
        _moving_square_video(tmp_path / "videos" / name)
    (tmp_path / "videos" / "sq" / "00004.png").write_bytes(b"not a png")  # frame 4: between kept frames 3 and 6
    cfg = compose("data=frames", f"data.root={tmp_path / 'videos'}", "data.stride=3", "data.short_side=72",
                  "progress=false")
    ds = load_data(cfg)
    said = r"1 of 2 video\(s\) failed(.|\n)*sq: video 'sq', frame 4 \(.*00004.png\): cannot decode image"
    with pytest.raises(S2DError, match=said + r".*read because masks.full_rate=true; masks.full_rate=false reads"):
        masks_stage.compute(cfg, ds, data_fingerprint(cfg, ds))
    cfg = compose("data=frames", f"data.root={tmp_path / 'videos'}", "data.stride=3", "data.short_side=72",
                  "progress=false", "masks.full_rate=false")
    out = masks_stage.compute(cfg, load_data(cfg), data_fingerprint(cfg, ds))
    assert out.labels["sq"].length == 5


def test_s2d_data_lists_the_frames_the_motion_and_tracks_go_through(compose, tmp_path, capsys):
    from s2d.stages import data as data_stage

    _moving_square_video(tmp_path / "videos" / "sq")
    cfg = compose("data=frames", f"data.root={tmp_path / 'videos'}", "data.stride=3", "progress=false")
    rows = data_stage.run(cfg, tmp_path)["videos"]
    # data=frames works at 240p: the 72x96 frames are scaled up
    assert rows == [{"video": "sq", "frames": 5, "size": "320x240", "instances": None, "recording": 13}]
    assert "(motion and tracks through 13 frames)" in capsys.readouterr().out


def test_labels_of_the_recordings_come_back_on_the_kept_frames(tmp_path):
    """``recordings`` hands the learned stages each video's recording (same name and id, no ground truth);
    ``on_kept_frames`` brings what they made back onto the kept frames, named as the video's frames, and leaves
    out a tube that has no mask there."""
    from s2d.data.recordings import on_kept_frames, recordings
    from s2d.labelset.types import Labelset, VideoLabels

    _moving_square_video(tmp_path / "videos" / "sq")
    _moving_square_video(tmp_path / "videos" / "still", n=3, step=0)  # kept: frame 0 alone, nothing between
    ds = open_dataset("frames", tmp_path / "videos", stride=3)
    rds = recordings(ds)
    assert rds.names == ds.names and [r.id for r in rds] == [r.id for r in ds]
    assert [len(rds[n].video) for n in ("sq", "still")] == [13, 1] and rds["still"] is ds["still"]
    assert rds["sq"].gt is None and rds["sq"].video.full_rate is None
    assert np.array_equal(rds["sq"].video[6], ds["sq"].video[2])  # kept frame 2 is frame 6 of the recording
    h, w = ds["sq"].video.size
    tube = np.zeros((2, 13, h, w), bool)
    for t in range(13):
        tube[0, t, t, :3] = True  # a mask on every frame, row t: which frame it came from is read back
    tube[1, 4, :2, :2] = True     # a mask on frame 4 only, between kept frames 3 and 6
    made = Labelset([VideoLabels.from_masks("sq", tube, [0.9, 0.8], rds["sq"].video.frame_names()),
                     ds.skeleton("still")])
    back = on_kept_frames(made, ds)
    sq = back["sq"]
    assert (sq.length, sq.file_names, sq.id) == (5, ds["sq"].video.frame_names(), ds["sq"].id)
    assert len(sq.instances) == 1 and sq.instances[0].score == 0.9
    assert [int(np.nonzero(m[:, 0])[0][0]) for m in sq.masks()[0]] == [0, 3, 6, 9, 12]
    assert back["still"] is made["still"]
    with pytest.raises(ValueError, match="'sq' have 5 frames, its recording 13"):
        on_kept_frames(Labelset([ds.skeleton("sq")]), ds)


def test_train_full_rate_acts_through_the_labels_fingerprint(compose):
    """The key enters the learned stages' checkpoint folders only through the labels they train on, so folders
    made before it keep their names on data without a recording (the demo's every checkpoint)."""
    from s2d.stages.distill import checkpoint_dir

    on, off = (compose(f"train.full_rate={v}") for v in ("true", "false"))
    assert checkpoint_dir(on, Path("r"), "distill", "fp") == checkpoint_dir(off, Path("r"), "distill", "fp")


def _davis_square(root, n=13):
    """The moving square as a DAVIS clip with its mask on every frame."""
    frames = _moving_square_video(root / "JPEGImages" / "sq", n)
    (root / "Annotations" / "sq").mkdir(parents=True)
    for t in range(n):
        m = np.zeros(frames.shape[1:3], np.uint8)
        m[26:46, 8 + 5 * t: 28 + 5 * t] = 1
        Image.fromarray(m, mode="L").convert("P").save(root / "Annotations" / "sq" / f"{t:05d}.png")


@pytest.mark.slow
def test_the_learned_stages_learn_from_the_recording(tmp_path):
    """`s2d run` on a clip kept at every 3rd frame: with train.full_rate (the default) the dense labelset and the
    final model's predictions are made on the 13 frames of the recording, and scored on the 5 kept ones; off,
    everything learned stays on the 5 frames, in other folders."""
    import subprocess
    import sys

    _davis_square(tmp_path / "d")
    base = ["run", "data=davis", f"data.root={tmp_path / 'd'}", "data.stride=3", "data.short_side=72",
            "train.max_steps=4", "train.batch_size=2", "train.crop_size=[48,64]", "loss.num_points=256",
            "label.score_thr=0.0", "distill.distill_warmup=2", "progress=false", "keymasks.vis_min_samples=2"]
    lengths, folders = {}, {}
    for full_rate in ("true", "false"):
        out = tmp_path / f"out-{full_rate}"
        r = subprocess.run([sys.executable, "-m", "s2d.cli", *base, f"train.full_rate={full_rate}", "name=fr",
                            f"paths.output_root={out}"], cwd=tmp_path, capture_output=True, text=True, timeout=600,
                           env={**__import__("os").environ, "WANDB_MODE": "offline"})
        assert r.returncode == 0, r.stderr[-3000:]
        said = "learning from the recordings of 1 video(s), 13 frames instead of their own 5"
        assert (said in r.stdout + r.stderr) == (full_rate == "true")
        lengths[full_rate] = {st: json.loads(next((out / "artifacts").glob(f"{st}-*/labelset.json")).read_text()
                                             )["videos"][0]["length"] for st in ("label", "predict")}
        folders[full_rate] = sorted(p.name for p in (out / "runs" / "fr-seed0" / "checkpoints").iterdir())
        m = json.loads((out / "runs" / "fr-seed0" / "metrics.json").read_text())["metrics"]
        assert {"dense labelset (distilled teacher)", "final model"} <= set(m)
    assert lengths == {"true": {"label": 13, "predict": 13}, "false": {"label": 5, "predict": 5}}
    assert not set(folders["true"]) & set(folders["false"])


def test_validation_scores_the_videos_while_training_reads_their_recordings(tmp_path):
    """The recordings have no ground truth; validation (train.val_every_n_steps) reads the videos, which do."""
    from s2d.data.datamodules import ClipDataModule
    from s2d.data.recordings import recordings
    from s2d.labelset.types import Labelset

    _davis_square(tmp_path / "d")
    ds = open_dataset("davis", tmp_path / "d", stride=3)
    rds = recordings(ds)
    labels = Labelset([rds.skeleton("sq")])
    item = next(iter(ClipDataModule(rds, labels, val_videos=["sq"], val_data=ds).val_dataloader()))
    assert len(item["frames"]) == 5 and item["gt"].length == 5 and item["gt"].instances
    with pytest.raises(ValueError, match="'sq' has no ground truth"):
        next(iter(ClipDataModule(rds, labels, val_videos=["sq"]).val_dataloader()))
