"""Shot cuts (s2d/data/shots.py): the detector's rule on hand-made change sequences, the HSV change on frames
whose value is known, and a folder video cut into shots: names, frames, labels, the cache, and the same cut at
another resolution."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from s2d.data.shots import (ShotParams, ShotSource, cut_like, cut_record, find_cuts, frame_changes, shot_bounds,
                            shot_name)

P = ShotParams(split=True)


def changes(length: int, base: float = 2.0, **spikes: float) -> np.ndarray:
    """(length - 1,) changes of ``base``, with spikes={'p<t>': value} at pair t (frames t, t+1)."""
    c = np.full(length - 1, base)
    for k, v in spikes.items():
        c[int(k[1:])] = v
    return c


def test_a_spike_over_both_thresholds_is_a_cut_and_starts_the_next_frame():
    assert find_cuts(changes(40, p20=30.0), P) == [21]
    # the same spike within a fast pan (every pair changes 25): under 3 times its neighbours, no cut
    assert find_cuts(changes(40, base=25.0, p20=60.0), P) == []
    assert find_cuts(changes(40, base=25.0, p20=75.0), P) == [21]   # exactly 3 times: a cut
    # 3 times its neighbours but a small change (a flicker in a still scene): no cut
    assert find_cuts(changes(40, base=1.0, p20=14.9), P) == []


def test_cuts_closer_than_min_len_and_a_one_frame_tail_are_ignored():
    # frame 10 is under 15 frames from the start; frame 26 under 15 from the cut at 21
    assert find_cuts(changes(60, p9=40.0, p20=40.0, p25=40.0, p40=40.0), P) == [21, 41]
    # a cut before the last frame would leave a one-frame shot; before the second-to-last, a two-frame one
    assert find_cuts(changes(40, p38=40.0), P) == []
    assert find_cuts(changes(40, p37=40.0), P) == [38]
    # near the end the neighbours' mean takes the pairs there are (two before, one after)
    assert find_cuts(changes(18, p15=40.0), P) == [16]
    assert find_cuts(changes(18, base=14.0, p15=40.0), P) == []     # 40 < 3 * 14


def test_shot_bounds_and_names():
    assert shot_bounds(50, [20, 35]) == [(0, 20), (20, 35), (35, 50)]
    assert shot_bounds(7, []) == [(0, 7)]
    assert [shot_name("bikes", k, 12) for k in (0, 9, 11)] == ["bikes.shot01", "bikes.shot10", "bikes.shot12"]


def test_frame_changes_are_mean_absolute_hsv_differences():
    black = np.zeros((8, 8, 3), np.uint8)
    white = np.full((8, 8, 3), 255, np.uint8)
    red = np.zeros((8, 8, 3), np.uint8)
    red[..., 0] = 255
    # HSV (OpenCV, 8 bit): black (0, 0, 0), white (0, 0, 255), red (0, 255, 255)
    np.testing.assert_allclose(frame_changes([black, white, red, red]), [255 / 3, 255 / 3, 0.0])
    # frames larger than the analysis size are brought down first; a uniform frame keeps its value
    big = np.full((480, 640, 3), 255, np.uint8)
    np.testing.assert_allclose(frame_changes([np.zeros_like(big), big]), [255 / 3])


def scene(seed: int, t: int, h: int = 48, w: int = 64) -> np.ndarray:
    """A textured background of its own colours with a square sliding 2 px a frame."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, 3)
    img = np.clip(base + rng.normal(0, 25, (h, w, 3)), 0, 255).astype(np.uint8)
    img[10:22, 4 + 2 * t:16 + 2 * t] = 255 - base
    return img


def write_folder(root, name: str, frames: list[np.ndarray]) -> None:
    (root / name).mkdir(parents=True)
    for t, f in enumerate(frames):
        Image.fromarray(f).save(root / name / f"{t:05d}.png")


@pytest.fixture
def footage(tmp_path):
    """'montage': 16 frames of one scene then 12 of another; 'take': 20 frames of one scene."""
    root = tmp_path / "frames"
    write_folder(root, "montage", [scene(1, t) for t in range(16)] + [scene(2, t) for t in range(12)])
    write_folder(root, "take", [scene(3, t) for t in range(20)])
    return root


def test_a_folder_video_with_a_cut_becomes_one_video_per_shot(footage, compose, monkeypatch):
    from s2d.data import shots
    from s2d.stages.data import load_data

    cfg = compose("data=frames", f"data.root={footage}", "data.short_side=48", "progress=false")
    ds = load_data(cfg)
    assert ds.names == ["montage.shot1", "montage.shot2", "take"]
    assert [len(r.video) for r in ds] == [16, 12, 20]
    assert [r.id for r in ds] == [1, 2, 3]
    one, two, take = ds.records
    assert one.shot == ("montage", 0, 16) and two.shot == ("montage", 16, 28) and take.shot is None
    assert [r.source for r in ds] == ["montage", "montage", "take"]  # the file each video is, or is cut from
    # a shot's frames are its video's, under their names in it
    assert two.video.frame_names() == [f"{t:05d}.png" for t in range(16, 28)]
    assert np.array_equal(two.video[0], np.asarray(Image.open(footage / "montage" / "00016.png")))
    with pytest.raises(IndexError):
        two.video.source.read(12)
    # the cuts are cached: a second load does not read the frames again
    cached = list((Path(cfg.paths.artifacts) / "shots").glob("*.json"))
    assert len(cached) == 2 and {json.loads(p.read_text())["video"] for p in cached} == {"montage", "take"}
    with monkeypatch.context() as m:
        m.setattr(shots, "frame_changes", lambda frames: pytest.fail("cuts found again"))
        assert load_data(cfg).names == ds.names
    # a damaged cache file (a disk that filled, a hand edit) is found again and written whole
    damaged = next(p for p in cached if json.loads(p.read_text())["video"] == "montage")
    damaged.write_text('{"video": "montage", "frames": 28, "cu')
    assert load_data(cfg).names == ds.names and json.loads(damaged.read_text())["cuts"] == [16]
    # off: the videos stay whole
    assert load_data(compose("data=frames", f"data.root={footage}", "data.shots.split=false")).names == \
        ["montage", "take"]


def test_labels_are_cut_with_their_video_and_cut_alike_at_another_resolution(footage):
    from s2d.data.shots import Shot
    from s2d.data.sources import VideoRecord, open_dataset
    from s2d.labelset import rle
    from s2d.labelset.types import Instance, VideoLabels

    ds = open_dataset("frames", footage)
    r = ds["montage"]
    masks = np.zeros((28, 48, 64), bool)
    masks[:, 10:22, 4:16] = True
    # instance 1 on frames 0-27, instance 2 on frames 3-9 only (gone from the second shot), with an empty mask on
    # the other frames, as a DAVIS annotation has
    segs1 = [rle.encode(m) for m in masks]
    segs2 = [rle.encode(m if 3 <= t <= 9 else np.zeros_like(m)) for t, m in enumerate(masks)]
    names = [f"montage/{t:05d}.png" for t in range(28)]
    r = VideoRecord(r.video, 1, VideoLabels("montage", 48, 64, 28, names, [
        Instance(segs2, 1.0, 1, 2, {"davis_id": 1}), Instance(segs1, 1.0, 1, 1, {"davis_id": 2})], 1), masks.copy())
    second = cut_record(r, Shot("montage", 16, 28), "montage.shot2")
    assert second.name == "montage.shot2" and second.gt.name == "montage.shot2" and second.gt.length == 12
    assert [i.id for i in second.gt.instances] == [1] and second.gt.file_names == names[16:]
    assert second.gt.instances[0].segmentations == segs1[16:] and second.void.shape == (12, 48, 64)
    # the shot is a DAVIS sequence of its own: its one object is object 1 (the reference would count an absent
    # object 1 as found, on empty frames)
    assert second.gt.instances[0].extra == {"davis_id": 1}
    first = cut_record(r, Shot("montage", 0, 16), "montage.shot1")
    assert [(i.id, i.extra["davis_id"]) for i in first.gt.instances] == [(2, 1), (1, 2)]
    assert r.gt.instances[1].extra == {"davis_id": 2}   # the uncut labels keep theirs
    # the same videos opened at another size are cut where the first opening was
    half = open_dataset("frames", footage, short_side=24)
    like = [first, second, ds["take"]]
    second.id, ds["take"].id = 2, 3
    again = cut_like(half.records, like)
    assert [a.name for a in again] == ["montage.shot1", "montage.shot2", "take"]
    assert [a.id for a in again] == [1, 2, 3] and [len(a.video) for a in again] == [16, 12, 20]
    assert again[1].video.size == (24, 32) and again[1].video.frame_names() == second.video.frame_names()


def test_shot_source_reads_its_range():
    class Numbers:
        def __len__(self):
            return 10

        def read(self, i):
            return np.full((2, 2, 3), i, np.uint8)

        def names(self):
            return [f"f{i}" for i in range(10)]

    s = ShotSource(Numbers(), 4, 7)
    assert len(s) == 3 and s.names() == ["f4", "f5", "f6"] and int(s.read(2)[0, 0, 0]) == 6
    with pytest.raises(IndexError):
        s.read(-1)


def test_the_demo_follows_objects_within_each_shot():
    from s2d.inference.video_predict import Tube
    from s2d.stages.demo import tubes_by_shot

    frames = np.zeros((5, 4, 4, 3), np.uint8)
    seen = []

    def whole(f):  # one tube over every frame it is shown
        seen.append(len(f))
        return [Tube({t: np.ones((4, 4), bool) for t in range(len(f))}, [0.9], [0.8])]

    tubes = tubes_by_shot(frames, [(0, 3), (3, 5)], whole)
    assert seen == [3, 2] and [sorted(tb.masks) for tb in tubes] == [[0, 1, 2], [3, 4]]
    assert [tb.scores for tb in tubes] == [[0.9], [0.9]] and tubes[1].mask_scores == [0.8]


def test_files_without_labels_are_cut_and_labelled_sets_kept_whole_by_default(compose):
    split = {d: compose(f"data={d}", "data.root=/x").data.shots.split for d in ("mp4", "frames", "davis", "ytvis")}
    assert split == {"mp4": True, "frames": True, "davis": False, "ytvis": False}
    assert compose().data.shots.split is False and compose().demo.shots is True


def test_predict_scores_each_shot_against_its_own_labels_at_the_original_size(tmp_path, compose):
    """`s2d predict` on a labelled DAVIS sequence of two shots with data.shots.split=true: one result per shot at
    the file's 48x64, scored against ground truth cut where the working set (short side 32) was cut."""
    import torch

    from s2d.models import VideoMask2Former
    from s2d.stages import predict

    root = tmp_path / "davis" / "montage"
    (root / "JPEGImages").mkdir(parents=True)
    (root / "Annotations").mkdir()
    frames = [scene(1, t) for t in range(16)] + [scene(2, t) for t in range(12)]
    for t, f in enumerate(frames):
        Image.fromarray(f).save(root / "JPEGImages" / f"{t:05d}.jpg", quality=95)
        ids = np.zeros(f.shape[:2], np.uint8)
        ids[10:22, 4 + 2 * (t % 16):16 + 2 * (t % 16)] = 1 if t < 16 else 2   # the square: object 1, then 2
        png = Image.fromarray(ids, "P")
        png.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * 759)
        png.save(root / "Annotations" / f"{t:05d}.png")
    small = ("model.num_queries=6", "model.hidden_dim=32", "model.dec_layers=2")
    cfg = compose("data=davis", f"data.root={tmp_path / 'davis'}", "data.short_side=32", "data.shots.split=true",
                  f"model.pretrained={tmp_path}/w.pth", *small, "predict.topk=2", f"predict.out={tmp_path}/p.json",
                  "progress=false", stage="predict")
    torch.save(VideoMask2Former.from_config({**cfg.model, "pretrained": None}).state_dict(), tmp_path / "w.pth")
    result = predict.run(cfg, tmp_path / "run")
    preds = json.loads((tmp_path / "p.json").read_text())
    assert sorted({p["video_id"] for p in preds}) == [1, 2] and len(preds) == 4
    assert sorted(len(p["segmentations"]) for p in preds) == [12, 12, 16, 16]
    assert all(p["segmentations"][0]["size"] == [48, 64] for p in preds)
    assert 0 <= result["metrics"]["AP"] <= 100 and 0 <= result["metrics"]["J&F-Mean"] <= 100
