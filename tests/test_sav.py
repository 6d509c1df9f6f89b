"""SA-V (data=sav) in both released layouts: a video is its annotated frames (every 4th), each with its masks."""
from __future__ import annotations

import json
from fractions import Fraction

import numpy as np
import pytest
from PIL import Image

from s2d.data.sources import open_dataset
from s2d.data.video import resize_masks
from s2d.errors import LabelsetError
from s2d.labelset import rle as rle_utils

H, W, T = 48, 64, 10   # 10 frames at "24 fps": frames 0, 4 and 8 are annotated


def grey(t: int) -> int:
    return 20 * t   # frame t is flat grey 20 t: which frames were kept is read back from their pixels


def box(k: int, obj: int) -> np.ndarray:
    """Object ``obj``'s mask on the k-th annotated frame: a rectangle that moves 6 px per annotated frame."""
    m = np.zeros((H, W), bool)
    m[8 + 10 * obj: 20 + 10 * obj, 4 + 6 * k: 20 + 6 * k] = True
    return m


def write_mp4(path, n=T, hw=(H, W)):
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as out:
        s = out.add_stream("mpeg4", rate=24)
        s.width, s.height, s.pix_fmt = hw[1], hw[0], "yuv420p"
        s.codec_context.time_base = Fraction(1, 24)
        for t in range(n):
            f = av.VideoFrame.from_ndarray(np.full((*hw, 3), grey(t), np.uint8), format="rgb24")
            f.pts, f.time_base = t, Fraction(1, 24)
            for pkt in s.encode(f):
                out.mux(pkt)
        for pkt in s.encode():
            out.mux(pkt)


def masklets(n_ann=3, hw=(H, W)):
    """Per annotated frame, per object: object 1 first appears on the second annotated frame (frame 4), as SA-V
    writes a not-yet-visible object: an empty mask."""
    return [[rle_utils.encode(box(k, 0)), rle_utils.encode(box(k, 1) if k > 0 else np.zeros((H, W), bool))]
            for k in range(n_ann)]


def write_manual(path, frames, hw=(H, W)):
    path.write_text(json.dumps({"video_id": path.name.split("_manual")[0], "video_height": float(hw[0]),
                                "video_width": float(hw[1]), "video_frame_count": float(T), "masklet": frames,
                                "masklet_num": len(frames[0]) if frames else 0}))


@pytest.fixture
def sav_train(tmp_path):
    root = tmp_path / "sav_train"
    write_mp4(root / "sav_000" / "sav_000001.mp4")
    write_manual(root / "sav_000" / "sav_000001_manual.json", masklets())
    return root


def frame_greys(video):
    return [int(np.median(video[t])) for t in range(len(video))]


def test_train_layout_keeps_the_annotated_frames_with_their_masklets(sav_train):
    ds = open_dataset("sav", sav_train)
    r = ds["sav_000001"]
    assert len(r.video) == 3 and all(abs(g - grey(t)) <= 3 for g, t in zip(frame_greys(r.video), (0, 4, 8)))
    assert r.video.frame_names() == ["00000", "00004", "00008"]
    gt = r.gt
    assert (gt.height, gt.width, gt.length, len(gt.instances)) == (H, W, 3, 2)
    assert gt.file_names == ["sav_000001/00000.jpg", "sav_000001/00004.jpg", "sav_000001/00008.jpg"]
    m = gt.masks()  # (N, T, H, W)
    for k in range(3):
        assert (m[0, k] == box(k, 0)).all()
    assert gt.instances[1].segmentations[0] is None and (m[1, 1] == box(1, 1)).all() and (m[1, 2] == box(2, 1)).all()
    assert ds.has_gt


def test_train_layout_at_the_working_resolution_with_stride_and_cap(sav_train):
    r = open_dataset("sav", sav_train, short_side=24)["sav_000001"]
    assert r.video.size == (24, 32) and (r.gt.height, r.gt.width) == (24, 32)
    want = resize_masks(np.stack([box(k, 0) for k in range(3)]), (24, 32))
    assert (r.gt.masks()[0] == want).all()
    # stride and max_frames count annotated frames: stride 2 keeps frames 0 and 8, max_frames 2 frames 0 and 4
    r = open_dataset("sav", sav_train, stride=2)["sav_000001"]
    assert r.video.frame_names() == ["00000", "00008"] and r.gt.length == 2
    assert (r.gt.masks()[0, 1] == box(2, 0)).all() and abs(frame_greys(r.video)[1] - grey(8)) <= 3
    r = open_dataset("sav", sav_train, max_frames=2)["sav_000001"]
    assert r.video.frame_names() == ["00000", "00004"] and r.gt.length == 2 and (r.gt.masks()[1, 1] == box(1, 1)).all()


def test_train_layout_keeps_the_24_fps_frames_between_for_the_motion_masks(sav_train):
    # the recording up to the last annotated frame, each annotated frame at its place in it (s2d.data.full_rate)
    fr = open_dataset("sav", sav_train)["sav_000001"].video.full_rate
    assert fr.at == (0, 4, 8) and len(fr.video) == 9
    assert all(abs(g - grey(t)) <= 3 for t, g in enumerate(frame_greys(fr.video)))
    # with data.stride=2 (every 8th frame kept) the recording is every 2nd frame: frames 0, 2, ... 8
    fr = open_dataset("sav", sav_train, stride=2)["sav_000001"].video.full_rate
    assert fr.at == (0, 4) and all(abs(g - grey(2 * t)) <= 3 for t, g in enumerate(frame_greys(fr.video)))
    assert len(fr.video) == 5


def test_train_layout_selects_before_reading_and_names_a_bad_json(sav_train):
    bad = sav_train / "sav_001" / "sav_000002_manual.json"
    write_mp4(sav_train / "sav_001" / "sav_000002.mp4")
    bad.parent.mkdir(exist_ok=True)
    bad.write_text("{not json")
    # a video not chosen is never read: one broken json among 50k does not stop a run over others
    assert open_dataset("sav", sav_train, videos=["sav_000001"]).names == ["sav_000001"]
    assert open_dataset("sav", sav_train, max_videos=1).names == ["sav_000001"]
    with pytest.raises(LabelsetError, match="sav_000002_manual.json.*video 'sav_000002'|video 'sav_000002'.*sav_000002"):
        open_dataset("sav", sav_train)
    # a masklet whose RLE does not fit the video's size is named by annotated frame, frame and object
    rows = masklets()
    rows[1][1] = rle_utils.encode(np.zeros((H + 1, W), bool))
    write_manual(bad, rows)
    with pytest.raises(LabelsetError, match=r"annotated frame 1 \(frame 4\), object 1"):
        open_dataset("sav", sav_train, videos=["sav_000002"])


def test_train_layout_without_manual_json_or_with_another_size(sav_train, caplog):
    write_mp4(sav_train / "sav_001" / "sav_000002.mp4")
    r = open_dataset("sav", sav_train, videos=["sav_000002"])["sav_000002"]
    assert r.gt is None and r.video.frame_names() == ["00000", "00004", "00008"]
    assert "no sav_000002_manual.json" in caplog.text
    # annotations made for a portrait decode of a landscape file: said, not scored against the wrong pixels
    write_manual(sav_train / "sav_001" / "sav_000002_manual.json",
                 [[rle_utils.encode(np.zeros((W, H), bool))] for _ in range(3)], hw=(W, H))
    with pytest.raises(LabelsetError, match="masklets are 48x64 but the video decodes to 64x48"):
        open_dataset("sav", sav_train, videos=["sav_000002"])


def test_val_layout_reads_one_png_per_object_and_annotated_frame(tmp_path):
    root = tmp_path / "sav_val"
    for v in ("sav_000100", "sav_000200"):
        (root / "JPEGImages_24fps" / v).mkdir(parents=True)
        for t in range(T):
            Image.fromarray(np.full((H, W, 3), grey(t), np.uint8)).save(root / "JPEGImages_24fps" / v / f"{t:05d}.jpg")
    for obj in (0, 1):
        folder = root / "Annotations_6fps" / "sav_000100" / f"{obj:03d}"
        folder.mkdir(parents=True)
        for k in range(3):
            if obj == 1 and k == 0:
                continue  # object 001 has no PNG before it appears
            Image.fromarray(box(k, obj).astype(np.uint8) * 255).save(folder / f"{4 * k:05d}.png")
    ds = open_dataset("sav", root)
    assert ds.names == ["sav_000100", "sav_000200"]
    r = ds["sav_000100"]
    assert [p.name for p in r.video.source.paths] == ["00000.jpg", "00004.jpg", "00008.jpg"]
    assert all(abs(g - grey(t)) <= 3 for g, t in zip(frame_greys(r.video), (0, 4, 8)))
    m = r.gt.masks()
    assert m.shape == (2, 3, H, W) and r.gt.instances[1].segmentations[0] is None
    assert all((m[n, k] == box(k, n)).all() for n in (0, 1) for k in range(3) if (n, k) != (1, 0))
    # the test split without annotations: the frames SA-V would annotate, no ground truth
    assert ds["sav_000200"].gt is None
    assert [p.name for p in ds["sav_000200"].video.source.paths] == ["00000.jpg", "00004.jpg", "00008.jpg"]
    # stride counts annotated frames here too, labels with them
    r = open_dataset("sav", root, stride=2, videos=["sav_000100"])["sav_000100"]
    assert [p.name for p in r.video.source.paths] == ["00000.jpg", "00008.jpg"]
    assert (r.gt.masks()[1, 1] == box(2, 1)).all()
    # the 24 fps frames between stay readable for the motion masks and the tracker, up to the last kept frame
    for got, at in ((ds["sav_000100"], (0, 4, 8)), (ds["sav_000200"], (0, 4, 8)), (r, (0, 8))):
        fr = got.video.full_rate
        assert fr.at == at and [p.name for p in fr.video.source.paths] == [f"{t:05d}.jpg" for t in range(9)]


def test_an_empty_folder_says_what_sav_looks_like(tmp_path):
    from s2d.errors import S2DError

    with pytest.raises(S2DError, match="no SA-V videos found.*sav_\\*.mp4.*JPEGImages_24fps"):
        open_dataset("sav", tmp_path)
