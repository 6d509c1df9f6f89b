"""Video sources on real data (DAVIS 2016 clips, mp4 files) and the errors corrupt inputs give."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from s2d.data.sources import open_dataset, read_davis_mask
from s2d.data.video import ArraySource, Resize, Video
from s2d.errors import CorruptFrameError, LabelsetError, MissingFrameError, S2DError

DAVIS_FRAMES = {"blackswan": 50, "car-shadow": 40, "horsejump-high": 50, "kite-surf": 50, "motocross-jump": 40}


def test_davis2016_real_frames_and_binary_masks(davis_root):
    ds = open_dataset("davis", davis_root)
    assert ds.names == sorted(DAVIS_FRAMES)
    for r in ds:
        assert len(r.video) == DAVIS_FRAMES[r.name]
        frame = r.video[0]
        assert frame.shape == (480, 854, 3) and frame.dtype == np.uint8
        # DAVIS-2016 masks are {0, 255}: one instance, non-empty on every frame
        assert len(r.gt.instances) == 1
        assert all(s is not None for s in r.gt.instances[0].segmentations)
        m = r.gt.masks()[0]
        assert m.shape == (DAVIS_FRAMES[r.name], 480, 854) and m.any(axis=(1, 2)).all()
        raw = np.asarray(Image.open(davis_root / r.name / "Annotations" / "00000.png"))
        assert set(np.unique(raw)) <= {0, 255}
        assert (m[0] == (raw == 255)).all()


def test_davis_resize_keeps_masks_aligned(davis_root):
    full = open_dataset("davis", davis_root, videos=["blackswan"])["blackswan"]
    small = open_dataset("davis", davis_root, short_side=120, videos=["blackswan"])["blackswan"]
    assert small.video.size == (120, 214) and small.video[3].shape == (120, 214, 3)
    assert small.gt.height == 120 and small.gt.width == 214
    frac_full = full.gt.masks()[0, 3].mean()
    frac_small = small.gt.masks()[0, 3].mean()
    assert abs(frac_full - frac_small) < 0.01


def test_davis_pairs_annotations_by_name_not_position(davis_root, tmp_path):
    seq = tmp_path / "blackswan"
    shutil.copytree(davis_root / "blackswan", seq)
    (seq / "Annotations" / "00010.png").unlink()  # frame 10 now has no annotation
    r = open_dataset("davis", tmp_path)["blackswan"]
    segs = r.gt.instances[0].segmentations
    assert segs[10] is None and segs[9] is not None and segs[11] is not None
    # frame 11's mask is still frame 11's (not shifted onto frame 10)
    raw = np.asarray(Image.open(seq / "Annotations" / "00011.png")) == 255
    assert (r.gt.masks()[0, 11] == raw).all()


def test_davis2017_palette_masks_are_instances_and_255_is_void(tmp_path):
    lab = np.zeros((6, 8), np.uint8)
    lab[1:3, 1:3] = 1
    lab[4:6, 5:8] = 2
    lab[0, 7] = 255
    im = Image.fromarray(lab, mode="P")
    im.putpalette([0, 0, 0, 128, 0, 0, 0, 128, 0] + [0] * (252 * 3) + [255, 255, 255])
    (tmp_path / "JPEGImages" / "seq").mkdir(parents=True)
    (tmp_path / "Annotations" / "seq").mkdir(parents=True)
    for t in range(2):
        Image.fromarray(np.zeros((6, 8, 3), np.uint8)).save(tmp_path / "JPEGImages" / "seq" / f"{t:05d}.jpg")
        im.save(tmp_path / "Annotations" / "seq" / f"{t:05d}.png")
    arr = read_davis_mask(tmp_path / "Annotations" / "seq" / "00000.png", "seq", 0)
    assert set(np.unique(arr)) == {0, 1, 2, 255}
    r = open_dataset("davis", tmp_path)["seq"]
    m = r.gt.masks()
    assert m.shape == (2, 2, 6, 8)
    assert m[0, 0].sum() == 4 and m[1, 0].sum() == 6
    assert r.void[0, 0, 7] and r.void.sum() == 2


def test_truncated_jpeg_names_video_and_frame(davis_root, tmp_path):
    seq = tmp_path / "blackswan"
    shutil.copytree(davis_root / "blackswan", seq)
    p = seq / "JPEGImages" / "00007.jpg"
    p.write_bytes(p.read_bytes()[:4000])
    r = open_dataset("davis", tmp_path)["blackswan"]
    r.video[6]
    with pytest.raises(CorruptFrameError, match=r"video 'blackswan', frame 7 \(.*00007.jpg\)") as e:
        r.video[7]
    assert e.value.video_id == "blackswan" and e.value.frame_index == 7


def test_missing_frames_listed_before_any_work(tiny_demo, tmp_path):
    root = tmp_path / "d"
    shutil.copytree(tiny_demo, root)
    (root / "JPEGImages" / "demo_01" / "00003.png").unlink()
    (root / "JPEGImages" / "demo_00" / "00005.png").unlink()
    with pytest.raises(MissingFrameError, match="2 frame file") as e:
        open_dataset("ytvis", root)
    msg = str(e.value)
    assert "video 'demo_00', frame 5" in msg and "video 'demo_01', frame 3" in msg


def test_truncated_annotation_json_names_file_and_position(tiny_demo, tmp_path):
    root = tmp_path / "d"
    shutil.copytree(tiny_demo, root)
    ann = root / "annotations.json"
    ann.write_bytes(ann.read_bytes()[:500])
    with pytest.raises(LabelsetError, match=r"annotations.json: invalid JSON at line 1, column"):
        open_dataset("ytvis", root)


def test_ytvis_rle_size_mismatch_names_record(tiny_demo, tmp_path):
    root = tmp_path / "d"
    shutil.copytree(tiny_demo, root)
    obj = json.loads((root / "annotations.json").read_text())
    obj["annotations"][2]["segmentations"][4]["size"] = [10, 10]
    (root / "annotations.json").write_text(json.dumps(obj))
    with pytest.raises(LabelsetError, match=r"annotations\[2\] \(id 3\): frame 4: RLE size 10x10 does not match"):
        open_dataset("ytvis", root)


def test_mp4_decodes_all_frames_with_pyav(demo_videos_root):
    ds = open_dataset("mp4", demo_videos_root / "apple", short_side=90)
    v = ds["apple"].video
    assert len(v) == 50
    assert v.size == (90, 162) and v[49].shape == (90, 162, 3)
    assert v.original_size == (90, 162)  # frames are kept at the working resolution


def test_truncated_mp4_is_a_corrupt_frame_error(demo_videos_root, tmp_path):
    src = demo_videos_root / "apple" / "apple.mp4"
    bad = tmp_path / "apple.mp4"
    data = src.read_bytes()
    bad.write_bytes(data[: len(data) // 3])
    v = open_dataset("mp4", tmp_path)["apple"].video
    with pytest.raises(CorruptFrameError, match=r"video 'apple'.*apple.mp4"):
        len(v)


def test_decoded_frames_are_kept_on_disk_and_read_back_without_a_decode(demo_videos_root, tmp_path, monkeypatch):
    """With a cache folder (what the pipeline's data stage gives) the frames equal the in-memory decode, are held
    as a read-only memory map (not pickled into a worker), and a second opening counts and reads them without
    decoding; a damaged cache file is decoded again, never read."""
    import pickle

    from s2d.data.video import ContainerSource

    cache = tmp_path / "decoded"
    kw = dict(short_side=90, stride=2, max_frames=12)
    plain = open_dataset("mp4", demo_videos_root / "apple", **kw)["apple"].video
    first = open_dataset("mp4", demo_videos_root / "apple", decoded_dir=cache, **kw)["apple"].video
    assert np.array_equal(first.frames(), plain.frames()) and len(first) == 12
    assert isinstance(first.source._frames, np.memmap) and first.stored_size == plain.stored_size
    frame = first[3]
    frame[:] = 0  # the caller's own copy: the cached frame is untouched
    assert np.array_equal(first[3], plain[3])
    assert len(pickle.dumps(first)) < 10_000  # the frames stay on disk, the worker reopens them
    assert np.array_equal(pickle.loads(pickle.dumps(first)).frames(), plain.frames())
    raw, meta = sorted(cache.glob("*.u8")), sorted(cache.glob("*.json"))
    assert len(raw) == len(meta) == 1 and raw[0].stat().st_size == 12 * 90 * 162 * 3
    assert not list(cache.glob("*.partial"))  # no temp file left

    def no_decode(self, consume):
        raise AssertionError("decoded again")

    monkeypatch.setattr(ContainerSource, "_decode", no_decode)
    again = open_dataset("mp4", demo_videos_root / "apple", decoded_dir=cache, **kw)["apple"].video
    assert len(again) == 12 and np.array_equal(again.frames(), plain.frames())
    assert again.stored_size == plain.stored_size  # the file's own size, recorded with the frames
    monkeypatch.undo()
    raw[0].write_bytes(raw[0].read_bytes()[:1000])  # a damaged file (its json says more): decoded again
    fixed = open_dataset("mp4", demo_videos_root / "apple", decoded_dir=cache, **kw)["apple"].video
    assert np.array_equal(fixed.frames(), plain.frames()) and raw[0].stat().st_size == 12 * 90 * 162 * 3
    other = open_dataset("mp4", demo_videos_root / "apple", decoded_dir=cache, short_side=60)["apple"].video
    assert len(other) == 50 and len(list(cache.glob("*.u8"))) == 2  # other settings, another file


def test_a_full_disk_while_frames_are_decoded_names_the_video_and_leaves_nothing(demo_videos_root, tmp_path,
                                                                                  monkeypatch):
    import errno
    import os

    from s2d.errors import S2DError

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    v = open_dataset("mp4", demo_videos_root / "apple", short_side=60, decoded_dir=tmp_path / "decoded")["apple"].video
    with pytest.raises(S2DError, match=r"apple: cannot write its decoded frames to .*decoded.*No space left"):
        len(v)
    assert not list((tmp_path / "decoded").iterdir())


def test_truncated_mp4_with_a_cache_folder_is_named_and_leaves_nothing(demo_videos_root, tmp_path):
    src = demo_videos_root / "apple" / "apple.mp4"
    (tmp_path / "v").mkdir()
    bad = tmp_path / "v" / "apple.mp4"
    data = src.read_bytes()
    bad.write_bytes(data[: len(data) // 3])
    v = open_dataset("mp4", tmp_path / "v", decoded_dir=tmp_path / "decoded")["apple"].video
    with pytest.raises(CorruptFrameError, match=r"video 'apple'.*apple.mp4"):
        len(v)
    assert not list((tmp_path / "decoded").iterdir())  # no half-written file, no json claiming one


def test_an_avi_that_stores_repeated_frames_as_empty_packets_is_whole(tmp_path):
    """An AVI stores a frame that repeats the one before as an empty packet and counts it in its header: 10
    frames at pts 0, 3, ..., 27 declare 28 and decode to 10. They reach the end of the stream, so the video is
    those 10, in order; a count short of the header is not a truncated file."""
    from fractions import Fraction

    import av

    path = tmp_path / "v" / "repeats.avi"
    path.parent.mkdir()
    with av.open(str(path), "w") as out:
        s = out.add_stream("mpeg4", rate=15)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        s.codec_context.time_base = Fraction(1, 15)
        for i in range(10):
            f = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 20 * i, np.uint8), format="rgb24")
            f.pts, f.time_base = 3 * i, Fraction(1, 15)
            for pkt in s.encode(f):
                out.mux(pkt)
        for pkt in s.encode():
            out.mux(pkt)
    with av.open(str(path)) as c:
        assert c.streams.video[0].frames == 28  # the header counts the repeats
    v = open_dataset("mp4", path.parent)["repeats"].video
    assert len(v) == 10
    grey = [int(np.median(v[t])) for t in range(10)]
    assert all(abs(g - 20 * t) <= 3 for t, g in enumerate(grey))


def test_an_mp4_cut_between_two_frames_is_a_corrupt_frame_error(demo_videos_root, tmp_path):
    """A file cut cleanly at a packet boundary decodes without a codec error; the frames stop short of the
    stream's end, and that names it truncated."""
    import av

    whole = tmp_path / "faststart.mp4"  # the index first, as streaming files are: the cut keeps it readable
    with av.open(str(demo_videos_root / "apple" / "apple.mp4")) as src, \
            av.open(str(whole), "w", options={"movflags": "faststart"}) as out:
        s = out.add_stream_from_template(src.streams.video[0])
        for pkt in src.demux(src.streams.video[0]):
            if pkt.dts is not None:
                pkt.stream = s
                out.mux(pkt)
    with av.open(str(whole)) as c:
        starts = [p.pos for p in c.demux(c.streams.video[0]) if p.dts is not None]
    (tmp_path / "v").mkdir()
    (tmp_path / "v" / "apple.mp4").write_bytes(whole.read_bytes()[: starts[20]])
    v = open_dataset("mp4", tmp_path / "v")["apple"].video
    with pytest.raises(CorruptFrameError, match=r"video 'apple', frame 20 .*declares 50 frames but only 20 decode"):
        len(v)


def _phone_mp4(path, matrix):
    """A 64x48 mp4 whose track header carries a display matrix (16.16 fixed point), as a phone writes one for a
    video filmed upright: a white patch in the stored frame's top-left corner."""
    import struct

    import av

    with av.open(str(path), "w") as out:
        s = out.add_stream("mpeg4", rate=10)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        for _ in range(4):
            img = np.zeros((48, 64, 3), np.uint8)
            img[:12, :20] = 255
            for packet in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in s.encode():
            out.mux(packet)
    data = bytearray(path.read_bytes())
    box = data.find(b"tkhd") - 4
    assert data[box + 8] == 0  # version 0: 32-bit times, the matrix 48 bytes into the box
    data[box + 48: box + 84] = struct.pack(">9i", *matrix, 0, 0, 1 << 30)
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("matrix, shape, corner", [
    ((0, 65536, 0, -65536, 0, 0), (64, 48), "top-right"),    # shown turned 90 degrees clockwise
    ((0, -65536, 0, 65536, 0, 0), (64, 48), "bottom-left"),  # ... counter-clockwise
    ((-65536, 0, 0, 0, -65536, 0), (48, 64), "bottom-right"),  # upside down
    ((65536, 0, 0, 0, 65536, 0), (48, 64), "top-left")])     # as stored
def test_a_phone_video_is_decoded_the_way_players_show_it(tmp_path, matrix, shape, corner):
    """The container's display rotation is applied (PyAV's frame.rotation), as OpenCV's decoder, the fallback,
    applies it too: the frames, their size and the size recorded for results are the upright ones."""
    from s2d.data.video import ContainerSource

    (tmp_path / "v").mkdir()
    _phone_mp4(tmp_path / "v" / "phone.mp4", matrix)
    v = open_dataset("mp4", tmp_path / "v", decoded_dir=tmp_path / "decoded")["phone"].video
    frames = v.frames()
    assert frames.shape == (4, *shape, 3) and v.stored_size == shape
    ys, xs = np.nonzero(frames[0, ..., 0] > 128)
    where = ("top" if ys.mean() < shape[0] / 2 else "bottom") + "-" + ("left" if xs.mean() < shape[1] / 2 else "right")
    assert where == corner
    assert np.ptp(ys) + 1 == (20 if shape == (64, 48) else 12)  # the 20x12 patch, turned with the frame
    by_opencv = np.stack(list(ContainerSource("phone", tmp_path / "v" / "phone.mp4")._decode_cv2()))
    assert by_opencv.shape == frames.shape and np.abs(by_opencv.astype(int) - frames).mean() < 4


def test_frame_folders_and_errors(tmp_path):
    for name in ("b", "a"):
        (tmp_path / name).mkdir()
        for t in range(3):
            Image.fromarray(np.full((4, 6, 3), t * 50, np.uint8)).save(tmp_path / name / f"{t}.png")
    ds = open_dataset("frames", tmp_path)
    assert ds.names == ["a", "b"] and ds["b"].video[2][0, 0, 0] == 100
    Image.fromarray(np.zeros((5, 6, 3), np.uint8)).save(tmp_path / "a" / "3.png")
    v = open_dataset("frames", tmp_path)["a"].video
    v[0]
    with pytest.raises(CorruptFrameError, match="frame 3.*differs"):
        v[3]
    with pytest.raises(S2DError, match="does not exist"):
        open_dataset("frames", tmp_path / "nope")
    with pytest.raises(S2DError, match="unknown videos"):
        open_dataset("frames", tmp_path, videos=["zzz"])


def test_video_resize_and_index_errors():
    v = Video("arr", ArraySource(np.zeros((3, 40, 60, 3), np.uint8)), Resize(max_side=30))
    assert v.size == (20, 30) and v.frames().shape == (3, 20, 30, 3)
    with pytest.raises(S2DError, match="frame index 5 out of range"):
        v[5]


def test_stride_and_max_frames_cap_every_video(davis_root, demo_videos_root):
    """Every 3rd frame, at most 5: frames, names, ground truth and void follow; an mp4 stops decoding there."""
    from s2d.data.sources import open_dataset

    full = open_dataset("davis", davis_root, short_side=64, videos=["car-shadow"])
    capped = open_dataset("davis", davis_root, short_side=64, videos=["car-shadow"], stride=3, max_frames=5)
    r, c = full["car-shadow"], capped["car-shadow"]
    assert len(c.video) == 5 and c.video.frame_names() == r.video.frame_names()[0:15:3]
    np.testing.assert_array_equal(c.video.frames(), r.video.frames([0, 3, 6, 9, 12]))
    assert c.gt.length == 5 and c.gt.file_names == r.gt.file_names[0:15:3]
    np.testing.assert_array_equal(c.gt.masks(), r.gt.masks()[:, 0:15:3])
    mp4 = open_dataset("mp4", demo_videos_root, short_side=48, stride=2, max_frames=4)
    every = open_dataset("mp4", demo_videos_root, short_side=48, max_frames=8)
    import cv2

    for a, b in zip(mp4, every):
        assert len(a.video) == 4
        np.testing.assert_array_equal(a.video.frames(), b.video.frames([0, 2, 4, 6]))
        # the size in the file, although the container resizes while it decodes
        cap = cv2.VideoCapture(str(a.video.source.path))
        stored = (int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)), int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)))
        cap.release()
        assert a.video.stored_size == stored and min(a.video.size) == 48


def test_davis_annotations_missing_or_empty_are_warned_not_a_traceback(davis_root, tmp_path, caplog):
    import logging

    from s2d.data.sources import open_dataset

    for seq in ("blackswan", "car-shadow"):
        shutil.copytree(davis_root / seq / "JPEGImages", tmp_path / seq / "JPEGImages")
        (tmp_path / seq / "Annotations").mkdir()
    for f in sorted((davis_root / "car-shadow" / "Annotations").glob("*.png"))[:30]:
        shutil.copy(f, tmp_path / "car-shadow" / "Annotations" / f.name)
    with caplog.at_level(logging.WARNING, logger="s2d.data.sources"):
        ds = open_dataset("davis", tmp_path, short_side=48)
    msgs = " | ".join(r.getMessage() for r in caplog.records)
    assert "'blackswan': no annotation PNG" in msgs and "no ground truth" in msgs
    assert "'car-shadow': 10 of 40 frames have no annotation PNG" in msgs and "frame 30" in msgs
    assert ds["blackswan"].gt is None and ds["car-shadow"].gt.length == 40


def test_stored_size_of_a_container_is_read_with_its_first_frame(demo_videos_root):
    from s2d.data.sources import open_dataset

    v = open_dataset("mp4", demo_videos_root / "apple", short_side=90, max_frames=2)["apple"].video
    assert v.stored_size == (720, 1296) and v.original_size == (90, 162)
