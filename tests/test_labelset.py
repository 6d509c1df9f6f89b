"""Labelsets: RLE, YouTube-VIS json round trips, validation errors that name the record, sharded stores."""
from __future__ import annotations

import errno
import json
import os

import numpy as np
import pytest

from s2d.errors import IncompleteSetError, LabelsetError
from s2d.io import atomic
from s2d.labelset import LabelsetStore, read_labelset
from s2d.labelset import rle
from s2d.labelset.types import Labelset, VideoLabels
from s2d.labelset.ytvis import (labelset_from_json, labelset_to_json, predictions_from_json,
                                predictions_to_json, read_json_file)


def _video(name="v", h=6, w=5, t=3, seed=0, vid=None):
    rng = np.random.default_rng(seed)
    masks = rng.random((2, t, h, w)) < 0.4
    masks[1, 1] = False  # instance 2 has no mask on frame 1 -> null segmentation
    vl = VideoLabels.from_masks(name, masks, scores=[0.9, 0.4], file_names=[f"{name}/{i:05d}.jpg" for i in range(t)])
    vl.id = vid
    return vl, masks


def test_masks_decode_only_the_frames_and_instances_asked_for():
    """What a picture draws (4 frames, the top tubes) is decoded alone, in the order asked, empty frames empty."""
    vl, masks = _video(t=5, seed=3)
    assert np.array_equal(vl.masks(), masks)
    assert np.array_equal(vl.masks([4, 1, 1]), masks[:, [4, 1, 1]])
    assert np.array_equal(vl.masks(instances=[1, 0]), masks[[1, 0]])
    assert np.array_equal(vl.masks([1], [1]), masks[[1]][:, [1]]) and not vl.masks([1], [1]).any()
    assert vl.masks([], [0]).shape == (1, 0, 6, 5) and vl.masks([0], []).shape == (0, 1, 6, 5)


def test_rle_round_trip_and_area():
    rng = np.random.default_rng(1)
    m = rng.random((7, 9)) < 0.5
    r = rle.encode(m)
    assert isinstance(r["counts"], str) and r["size"] == [7, 9]
    assert (rle.decode(r) == m).all()
    assert rle.area(r) == m.sum()
    many = rng.random((4, 7, 9)) < 0.3
    rs = rle.encode_many(many)
    assert (rle.decode_many(rs + [None], 7, 9)[:4] == many).all()
    assert not rle.decode_many([None], 7, 9).any()
    assert np.array_equal(rle.areas_of(rs * 100), np.tile(many.sum((1, 2)), 100))  # > 255 objects per call


def test_check_rle_catches_bad_records():
    r = rle.encode(np.ones((4, 4), bool))
    rle.check_rle(r, 4, 4)
    with pytest.raises(ValueError, match="does not match"):
        rle.check_rle(r, 4, 5)
    with pytest.raises(ValueError, match="cover"):
        rle.check_rle({"size": [4, 4], "counts": [3, 4]}, 4, 4)
    with pytest.raises(ValueError, match="invalid character"):
        rle.check_rle({"size": [4, 4], "counts": "0 "}, 4, 4)
    with pytest.raises(ValueError, match="size"):
        rle.check_rle({"size": [4], "counts": "a"})


def test_ytvis_round_trip_keeps_null_frames_scores_and_diagnostics():
    vl, masks = _video()
    vl.instances[0].extra["one_to_many"] = 0.25
    ls = Labelset([vl])
    obj = json.loads(json.dumps(labelset_to_json(ls)))
    ann = obj["annotations"][1]
    assert ann["segmentations"][1] is None and ann["areas"][1] is None and ann["bboxes"][1] is None
    back = labelset_from_json(obj)
    v = back["v"]
    assert v.id == 1 and v.length == 3 and (v.masks() == masks).all()
    assert [i.score for i in v.instances] == [0.9, 0.4]
    assert v.instances[0].extra["one_to_many"] == 0.25


def test_predictions_pair_by_video_id_not_position():
    a, _ = _video("a", seed=1, vid=7)
    b, _ = _video("b", seed=2, vid=3)
    gt = Labelset([a, b])
    preds = predictions_to_json(Labelset([b]), reference=gt)
    assert {p["video_id"] for p in preds} == {3}
    back = predictions_from_json(preds, gt)
    assert len(back["a"].instances) == 0 and len(back["b"].instances) == 2


@pytest.mark.parametrize("mutate, match", [
    (lambda o: o["videos"].append(dict(o["videos"][0])), "duplicate video id"),
    (lambda o: o["annotations"].append(dict(o["annotations"][0])), "duplicate annotation id"),
    (lambda o: o["annotations"][0].update(video_id=99), "unknown video_id 99"),
    (lambda o: o["annotations"][0].update(category_id=5), "unknown category_id 5"),
    (lambda o: o["annotations"][0]["segmentations"].pop(), "has 2 segmentations but video 'v' has 3 frames"),
    (lambda o: o["annotations"][1]["segmentations"][0].update(size=[6, 6]), "frame 0: RLE size 6x6"),
    (lambda o: o["annotations"][1]["segmentations"][2].update(counts="00"), "frame 2: RLE runs cover"),
])
def test_validation_names_the_record(mutate, match):
    vl, _ = _video()
    obj = labelset_to_json(Labelset([vl]))
    mutate(obj)
    with pytest.raises(LabelsetError, match=match) as e:
        labelset_from_json(obj, file="x.json")
    assert str(e.value).startswith("x.json: ")


def test_invalid_json_names_file_and_position(tmp_path):
    p = tmp_path / "broken.json"
    p.write_text('{"videos": [1, 2,\n  ]')
    with pytest.raises(LabelsetError, match=r"broken.json: invalid JSON at line 2, column 3"):
        read_json_file(p)
    with pytest.raises(LabelsetError, match="file not found"):
        read_json_file(tmp_path / "nope.json")


def test_store_writes_manifest_last_and_reader_refuses_incomplete(tmp_path):
    store = LabelsetStore(tmp_path / "set", fingerprint="fp1")
    a, _ = _video("a", seed=1, vid=1)
    b, _ = _video("b", seed=2, vid=2)
    store.write_video(a)
    with pytest.raises(IncompleteSetError, match="no MANIFEST"):
        read_labelset(tmp_path / "set")
    with pytest.raises(IncompleteSetError, match=r"1 video\(s\) have no valid shard: \['b'\]"):
        store.finalize(["a", "b"])
    store.write_video(b)
    store.finalize(["b", "a"])
    ls = read_labelset(tmp_path / "set", fingerprint="fp1")
    assert ls.names == ["b", "a"] and (ls["a"].masks() == a.masks()).all()
    with pytest.raises(IncompleteSetError, match="expected other"):
        read_labelset(tmp_path / "set", fingerprint="other")
    # tampering with the merged file after the manifest is detected
    merged = tmp_path / "set" / "labelset.json"
    merged.write_bytes(merged.read_bytes()[:-10])
    with pytest.raises(IncompleteSetError, match="changed since the manifest"):
        read_labelset(tmp_path / "set")


def test_store_refuses_partial_folder(tmp_path):
    (tmp_path / "x.partial").mkdir()
    with pytest.raises(IncompleteSetError, match="partial"):
        read_labelset(tmp_path / "x.partial")


def test_truncated_shard_is_not_done_and_ledger_survives_restart(tmp_path):
    store = LabelsetStore(tmp_path / "s", fingerprint="fp")
    a, _ = _video("a")
    store.write_video(a)
    assert LabelsetStore(tmp_path / "s", fingerprint="fp").done("a")     # a new process trusts the ledger
    assert not LabelsetStore(tmp_path / "s", fingerprint="fp2").done("a")  # ... only for the same fingerprint
    shard = tmp_path / "s" / "shards" / "a.json"
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
    assert not LabelsetStore(tmp_path / "s", fingerprint="fp").done("a")


def test_atomic_write_leaves_no_final_file_on_enospc(tmp_path, monkeypatch):
    target = tmp_path / "out.json"

    class Full:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *a):
            self.f.close()

        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

    real_fdopen = os.fdopen
    monkeypatch.setattr(atomic.os, "fdopen", lambda fd, mode: Full(real_fdopen(fd, mode)))
    with pytest.raises(OSError, match="No space left"):
        atomic.atomic_write_json(target, {"a": 1})
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_never_falls_back_to_copy_on_exdev(tmp_path, monkeypatch):
    target = tmp_path / "out.txt"
    target.write_text("old")

    def exdev(src, dst):
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(atomic.os, "replace", exdev)
    with pytest.raises(OSError, match="cross-device"):
        atomic.atomic_write_text(target, "new")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_atomic_write_refuses_nan():
    with pytest.raises(ValueError):
        atomic.atomic_write_json("/nonexistent/never.json", {"x": float("nan")})


def test_results_get_the_users_umask_not_owner_only(tmp_path):
    """Files written atomically are readable by the group and others under the usual umask 022 (0644), and
    follow a stricter umask when the user sets one."""
    import os
    import stat

    from s2d.io.atomic import atomic_write_text

    old = os.umask(0o022)
    try:
        p = atomic_write_text(tmp_path / "report.md", "x")
        assert stat.S_IMODE(p.stat().st_mode) == 0o644
        os.umask(0o077)
        q = atomic_write_text(tmp_path / "private.md", "x")
        assert stat.S_IMODE(q.stat().st_mode) == 0o600
    finally:
        os.umask(old)


def test_select_keeps_the_frames_asked_for_and_the_objects_seen_on_them():
    """A subsampled or cut video's labels: the frames in the order asked, their file names, and only the
    instances with a non-empty mask on them (DAVIS writes an empty mask where an object is not seen)."""
    import numpy as np

    from s2d.labelset import rle
    from s2d.labelset.types import Instance, VideoLabels

    m = np.zeros((4, 6, 8), bool)
    m[:, 1:3, 2:5] = True
    empty = rle.encode(np.zeros((6, 8), bool))
    seen = Instance([rle.encode(f) for f in m], 0.9, 1, 7, {"davis_id": 1})
    late = Instance([empty, empty, empty, rle.encode(m[3])], 1.0, 1, 8, {"davis_id": 2})   # seen on frame 3 only
    rare = Instance([None, rle.encode(m[1]), None, None], 1.0, 1, 9)                       # frame 1 only
    v = VideoLabels("v", 6, 8, 4, ["a", "b", "c", "d"], [seen, late, rare], 3)
    sub = v.select([2, 0], "v.part")
    assert (sub.name, sub.length, sub.file_names, sub.id) == ("v.part", 2, ["c", "a"], 3)
    assert [i.id for i in sub.instances] == [7]   # late: empty masks there; rare: no mask there
    assert sub.instances[0].segmentations == [seen.segmentations[2], seen.segmentations[0]]
    sub.instances[0].extra["davis_id"] = 5
    assert seen.extra == {"davis_id": 1}          # the original labels are not touched
    assert [i.id for i in v.select([1, 3]).instances] == [7, 8, 9] and v.select([1]).name == "v"
