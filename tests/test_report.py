"""The report's learning curves and per-stage gain lines."""
from __future__ import annotations

import numpy as np
import pytest

from s2d.report.curves import plot_curves, read_curves, smooth, teacher_term_note
from s2d.report.gains import gain_lines


def test_gain_lines_hand_computed():
    metrics = {"sparse keymasks": {"AP50": 40.0, "AP": 10.0, "J&F-Mean": 50.0},
               "dense": {"AP50": 52.5, "AP": 9.0, "J&F-Mean": -1.0},           # -1: undefined, left out
               "final model": {"AP50": 60.0, "AP": 20.0, "J&F-Mean": 55.5}}
    lines = gain_lines(metrics, [("distill", "dense", "sparse keymasks"), ("final", "final model", "dense"),
                                 ("missing", "nowhere", "dense")])
    assert lines == ["- distill: +12.5 AP50, -1.0 AP over sparse keymasks",
                     "- final: +7.5 AP50, +11.0 AP over dense"]


def _csv(path, header, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(",".join(header) + "\n" + "\n".join(",".join(str(x) for x in r) for r in rows) + "\n")


def test_curves_merge_resumed_launches_by_step_and_draw(tmp_path):
    log = tmp_path / "logs" / "distill"
    head = ["epoch", "step", "train/loss", "train/sparse/loss_mask", "val/AP50"]
    _csv(log / "version_0" / "metrics.csv", head, [[0, 4, 9.0, 3.0, ""], [0, 9, 8.0, 2.5, ""], [1, 14, 99.0, 9.0, ""]])
    # the resumed launch (version_1) repeats step 14 (it restarted from step 10) and goes on; version_10 sorts
    # after version_2 by number, not by text
    _csv(log / "version_1" / "metrics.csv", head, [[1, 14, 7.0, 2.0, ""], [1, 19, 6.0, 1.5, ""], [1, 19, "", "", 0.25]])
    _csv(log / "version_10" / "metrics.csv", head, [[2, 24, 5.0, 1.0, ""]])
    _csv(log / "version_2" / "metrics.csv", head, [[2, 24, 55.0, 1.0, ""]])
    c = read_curves(log)
    assert c["train/loss"][0].tolist() == [4, 9, 14, 19, 24]
    assert c["train/loss"][1].tolist() == [9.0, 8.0, 7.0, 6.0, 5.0]
    assert c["val/AP50"][0].tolist() == [19] and c["val/AP50"][1].tolist() == [0.25]
    png = plot_curves(c, "distill")
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    assert read_curves(tmp_path / "nothing") == {}


def test_teacher_term_note_says_when_the_term_ran_and_how_many_targets_it_had():
    steps = np.array([600, 610, 620, 630])
    assert teacher_term_note({"train/loss": (steps, np.ones(4))}) is None          # never ran, or logged before
    dead = teacher_term_note({"train/distill/targets": (steps, np.zeros(4))})
    assert dead.startswith("The teacher's term (logged from step 600) had no target in any logged step")
    live = teacher_term_note({"train/distill/targets": (steps, np.array([0.0, 2.0, 1.5, 0.5]))})
    assert live == ("The teacher's term (logged from step 600): 1.00 teacher targets per clip on average, none in "
                    "25% of the logged steps.")
    always = teacher_term_note({"train/distill/targets": (steps, np.array([3.0, 2.0, 1.0, 2.0]))})
    assert always.endswith(": 2.00 teacher targets per clip on average, some in every logged step.")


def test_smooth_is_a_centred_mean_that_keeps_constants_and_length():
    v = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    assert smooth(v, 3).tolist() == pytest.approx([1.5, 2.0, 3.0, 4.0, 4.5])
    assert smooth(np.full(7, 2.0), 5).tolist() == pytest.approx([2.0] * 7)
    assert smooth(v, 1).tolist() == v.tolist()


def test_unnested_leaves_out_a_mask_mostly_inside_those_drawn_before_it_on_its_frame():
    from s2d.report.pictures import unnested

    m = np.zeros((3, 2, 4, 4), bool)
    m[0, :, :2, :] = True       # 8 px, the best tube
    m[1, 0, :2, :2] = True      # frame 0: all 4 px inside tube 0 -> left out
    m[1, 1, 1:3, :2] = True     # frame 1: 2 of its 4 px inside tube 0 (half) -> left out
    m[2, :, 2:, :] = True       # scored lowest, outside tube 0: drawn
    out = unnested(m, [0.9, 0.5, 0.01])
    assert out[0].sum() == 16 and not out[1].any()
    assert np.array_equal(out[2], m[2])  # a distinct tube is drawn however low its score
    m[1, 1, 1:4, :2] = True     # frame 1: 2 of 6 px inside tube 0 -> drawn; then tube 2 has 4 of 8 under 0 and 1
    out = unnested(m, [0.9, 0.5, 0.01])
    assert out[1, 1].sum() == 6 and not out[1, 0].any() and not out[2, 1].any() and out[2, 0].sum() == 8


def test_the_final_models_pictures_leave_out_nested_duplicates_and_the_dense_labels_draw_all(tmp_path):
    """A final-model tube inside another one (a duplicate the ranking scored down) is not drawn, a distinct tube
    scored as low is; every tube of the dense labelset is drawn."""
    from types import SimpleNamespace

    from PIL import Image

    from s2d.data.video import ArraySource, Video
    from s2d.labelset.types import VideoLabels
    from s2d.report.pictures import pictures_section

    T, H, W = 3, 16, 24
    frames = np.full((T, H, W, 3), 100, np.uint8)
    masks = np.zeros((3, T, H, W), bool)
    masks[0, :, 1:9, 1:9] = True     # 0.8: drawn
    masks[1, :, 3:7, 3:7] = True     # 0.02, inside tube 0: a duplicate, not drawn in the final row
    masks[2, :, 2:8, 14:20] = True   # 0.02, on its own: drawn
    rec = SimpleNamespace(video=Video("v", ArraySource(frames)), gt=None, source="v")
    ds = type("DS", (), {"names": ["v"], "__getitem__": lambda self, k: rec, "__len__": lambda self: 1})()
    final = VideoLabels.from_masks("v", masks, [0.8, 0.02, 0.02])
    dense = VideoLabels.from_masks("v", masks, [0.8, 0.02, 0.02])
    lines = pictures_section(tmp_path, ds, {"v": VideoLabels("v", H, W, T)}, {"v": dense}, {"v": final})
    assert any("mostly inside those of higher-scored tubes" in line for line in lines)
    pic = np.asarray(Image.open(tmp_path / "pictures" / "v.png").convert("RGB")).astype(int)
    # rows top to bottom: keymasks, dense labels, final model, each H high with 2 px between (s2d.viz.grid); the
    # first frame's tile starts at x 0
    px = lambda row, y, x: pic[row * (H + 2) + y, x]  # noqa: E731
    assert (px(0, 5, 5) == 100).all()                            # no keymask
    assert not np.array_equal(px(1, 5, 5), px(2, 5, 5))          # the duplicate's colour over tube 0's: dense only
    assert (px(1, 5, 17) != 100).any() and (px(2, 5, 17) != 100).any()  # the distinct low tube: both rows
    assert (px(2, 5, 5) != 100).any()                            # tube 0 itself in the final row


def test_the_report_draws_one_video_of_each_file_before_a_second_shot_of_any():
    """A montage cut into 6 shots sorts before the folder's other files; the report's 6 pictures still show every
    file, then more shots, in name order. Without shots (each video its own source) it is the first 6 by name."""
    from s2d.report.pictures import drawn_videos

    names = [f"bikes.shot{i}" for i in range(1, 7)] + ["box", "carphone", "cup", "vtest"]
    sources = ["bikes"] * 6 + ["box", "carphone", "cup", "vtest"]
    assert drawn_videos(names, sources) == ["bikes.shot1", "bikes.shot2", "box", "carphone", "cup", "vtest"]
    assert drawn_videos(names, sources, cap=3) == ["bikes.shot1", "box", "carphone"]
    assert drawn_videos(names, names) == names[:6]
    assert drawn_videos(names[:2], sources[:2]) == names[:2]


def test_j_and_f_per_object_table_and_csv_by_hand():
    """Two labelsets over three objects: the report's cells are 100 x (J + F) / 2, an object a set did not score
    is a dash, and the CSV keeps every J and F; over the cap the rest is counted and left to the CSV."""
    from s2d.report.per_object import per_object_csv, per_object_lines

    per_set = {"keymasks": [("a", 1, 0.5, 0.7), ("a", 2, 0.0, 0.1), ("b", 1, 1.0, 1.0)],
               "final model": [("a", 1, 0.8, 0.9), ("b", 1, 0.25, 0.75)]}
    lines = per_object_lines(per_set, "jf.csv")
    assert "| video | object | keymasks | final model |" in lines
    assert "| a | 1 | 60.0 | 85.0 |" in lines and "| a | 2 | 5.0 | — |" in lines and "| b | 1 | 100.0 | 50.0 |" in lines
    capped = per_object_lines(per_set, "jf.csv", cap=2)
    assert "| b | 1 | 100.0 | 50.0 |" not in capped and "(1 more objects in `jf.csv`.)" in capped
    rows = per_object_csv(per_set).splitlines()
    assert rows[0] == "video,object,keymasks J-Mean,keymasks F-Mean,final model J-Mean,final model F-Mean"
    assert rows[1:] == ["a,1,0.5000,0.7000,0.8000,0.9000", "a,2,0.0000,0.1000,nan,nan", "b,1,1.0000,1.0000,0.2500,0.7500"]
    assert per_object_lines({}, "jf.csv") == []
