"""The `s2d` command as a user runs it: in a clean subprocess, with real files."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent


def s2d(*args, cwd):
    env = {**os.environ, "WANDB_MODE": "offline"}
    return subprocess.run([sys.executable, "-m", "s2d.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def test_help_lists_verbs(tmp_path):
    r = s2d("--help", cwd=tmp_path)
    assert r.returncode == 0 and "run" in r.stdout and "eval" in r.stdout
    r = s2d("bogus", cwd=tmp_path)
    assert r.returncode == 2 and "unknown verb 'bogus'" in r.stderr and "did you mean" not in r.stderr


def test_unknown_verb_suggests_the_close_one(capsys):
    from s2d.cli import main

    for argv, hint in ((["runn"], "(did you mean 'run'?)"), (["Distil", "seed=1"], "(did you mean 'distill'?)"),
                       (["data.root=/v"], "(the verb comes first: s2d VERB key=value ...)")):
        with pytest.raises(SystemExit) as e:
            main(argv)
        err = capsys.readouterr().err
        assert e.value.code == 2 and f"unknown verb '{argv[0]}' {hint}" in err, err


def test_data_verb_generates_demo_in_stable_folder(tmp_path):
    r = s2d("data", "debug=fast", f"paths.output_root={tmp_path}/out", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "demo_00" in r.stdout and "gt instances" in r.stdout
    assert (tmp_path / "out" / "runs" / "debug-fast-seed0" / ".hydra" / "config.yaml").exists()
    assert len(list((tmp_path / "out" / "artifacts" / "data").glob("demo-*/MANIFEST.json"))) == 1


def test_bad_config_value_exits_nonzero_with_key(tmp_path):
    r = s2d("data", "data.short_side=-1", f"paths.output_root={tmp_path}", cwd=tmp_path)
    assert r.returncode == 1 and "config key 'data.short_side'" in r.stderr


@pytest.mark.slow
def test_eval_verb_on_davis(davis_root, tmp_path):
    from s2d.data.sources import open_dataset
    from s2d.labelset.types import Labelset, VideoLabels
    from s2d.labelset.ytvis import predictions_to_json

    ds = open_dataset("davis", davis_root, short_side=96, videos=["car-shadow"])
    gt = ds.gt_labelset()
    v = gt["car-shadow"]
    pred = VideoLabels.from_masks("car-shadow", np.roll(v.masks(), 3, axis=3), scores=[0.8])
    preds = tmp_path / "preds.json"
    preds.write_text(json.dumps(predictions_to_json(Labelset([pred]), reference=gt)))
    r = s2d("eval", "data=davis", f"data.root={davis_root}", "data.short_side=96", "data.videos=[car-shadow]",
            f"eval.predictions={preds}", f"eval.out={tmp_path}/m", f"paths.output_root={tmp_path}", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    metrics = json.loads((tmp_path / "m" / "metrics.json").read_text())["metrics"]
    assert 0 < metrics["AP"] < 100 and metrics["AP50"] == pytest.approx(100.0)
    assert 50 < metrics["J&F-Mean"] < 100
    assert "| preds.json |" in (tmp_path / "m" / "metrics.md").read_text()
    # a broken predictions file: error names the file and the position, nothing is written
    preds.write_text('[{"video_id": 1, "score": 0.5, ')
    r = s2d("eval", "data=davis", f"data.root={davis_root}", "data.short_side=96", "data.videos=[car-shadow]",
            f"eval.predictions={preds}", f"eval.out={tmp_path}/m2", f"paths.output_root={tmp_path}", cwd=tmp_path)
    assert r.returncode == 1 and "preds.json: invalid JSON at line 1" in r.stderr
    assert not (tmp_path / "m2" / "metrics.json").exists()


def test_errors_are_one_line_once_and_name_the_cause(tmp_path):
    """A config error is printed once (not again as a log line) with the debug switch named; file-system errors
    become one line with the path and what to do."""
    import errno

    from s2d.cli import _os_error

    r = s2d("data", "data.short_side=-1", f"paths.output_root={tmp_path}", cwd=tmp_path)
    lines = [ln for ln in r.stderr.splitlines() if "data.short_side" in ln]
    assert r.returncode == 1 and len(lines) == 1 and "S2D_DEBUG=1" in r.stderr and "Traceback" not in r.stderr
    full = OSError(errno.ENOSPC, "No space left on device", "/scratch/out/labelset.json")
    assert _os_error(full) == ("No space left on device: /scratch/out/labelset.json (free space or point "
                               "paths.output_root=... at a larger disk; a rerun resumes)")
    ro = PermissionError(errno.EACCES, "Permission denied", "/shared/outputs")
    assert "/shared/outputs" in _os_error(ro) and "paths.output_root=$HOME/s2d-outputs" in _os_error(ro)


@pytest.mark.slow
def test_example_config_with_a_relative_shared_path_works_from_any_folder(davis_root, tmp_path):
    r = s2d("data", "experiment=davis2016", "data.short_side=48", "data.videos=[car-shadow]",
            f"paths.output_root={tmp_path}/out", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "car-shadow" in r.stdout
    r = s2d("data", "data=davis", "data.root=not/here", f"paths.output_root={tmp_path}/out", cwd=tmp_path)
    assert r.returncode == 1 and "data.root not/here does not exist (a relative path is read from the working " \
                                 "directory" in r.stderr


def test_demo_without_a_model_lists_the_runs_that_have_one(tmp_path):
    from s2d.stages.demo import trained_runs_hint

    runs = tmp_path / "runs"
    assert "run `s2d run` first" in trained_runs_hint(runs)
    for name in ("davis2016-seed0", "mine-seed1"):
        ck = runs / name / "checkpoints" / "final-abc"
        ck.mkdir(parents=True)
        (ck / "last.ckpt").write_bytes(b"x")
    hint = trained_runs_hint(runs)
    assert "davis2016-seed0, mine-seed1" in hint and "name=<name> seed=<seed>" in hint


def test_a_path_into_a_sweep_folder_is_read_as_one_value(tmp_path):
    """A sweep's folders are named key=value,key=value: a path through one has '=' and ',' in it, which Hydra's
    grammar refuses unquoted with an error naming neither key nor fix. s2d quotes such values itself."""
    from s2d.cli import quote_value

    path = "out/multirun/tv3/name=tv3,seed=0/checkpoints/final-1/last.ckpt"
    assert quote_value(f"demo.checkpoint={path}") == f"demo.checkpoint='{path}'"
    assert quote_value("seed=0,1,2") == "seed=0,1,2"                          # a sweep stays a sweep
    assert quote_value(f"demo.checkpoint='{path}'") == f"demo.checkpoint='{path}'"   # quoted already
    assert quote_value("a=it's=x") == 'a="it\'s=x"'
    assert quote_value("--cfg") == "--cfg" and quote_value("+x=y") == "+x=y"
    ckpt = tmp_path / "multirun" / "name=x,seed=0" / "last.ckpt"
    r = s2d("demo", str(tmp_path / "v.mp4"), f"demo.checkpoint={ckpt}", f"paths.output_root={tmp_path}/o",
            cwd=tmp_path)
    assert r.returncode != 0 and f"no trained model at {ckpt}" in r.stderr, r.stderr[-2000:]


def test_demo_reads_a_file_or_a_folder_of_videos_as_videos_and_other_folders_as_frames(tmp_path):
    """``s2d demo FOLDER`` where FOLDER holds an mp4 (as ../shared/data/demo_videos/apple does) reads the video
    instead of failing on "no folders of image frames"."""
    from s2d.stages.demo import source_kind

    (tmp_path / "vids" / "apple").mkdir(parents=True)
    (tmp_path / "vids" / "apple" / "apple.MP4").write_bytes(b"")
    (tmp_path / "frames" / "clip").mkdir(parents=True)
    (tmp_path / "frames" / "clip" / "00000.jpg").write_bytes(b"")
    assert source_kind(tmp_path / "vids" / "apple" / "apple.MP4") == "mp4"
    assert source_kind(tmp_path / "vids" / "apple") == "mp4" and source_kind(tmp_path / "vids") == "mp4"
    assert source_kind(tmp_path / "frames") == "frames"


@pytest.mark.slow
def test_a_run_folder_is_not_reused_for_other_data(davis_root, tmp_path):
    """Two data sets under one name: the second command is refused, naming what differs and the way out."""
    out = f"paths.output_root={tmp_path}/out"
    r = s2d("masks", "name=x", "debug=fast", out, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "out" / "runs" / "x-seed0" / "data_identity.json").read_text())["kind"] == "demo"
    r = s2d("masks", "name=x", "debug=fast", "data=davis", f"data.root={davis_root}", "data.videos=[car-shadow]",
            "data.max_frames=3", out, cwd=tmp_path)
    assert r.returncode == 1 and "holds results for other data" in r.stderr and "data.kind" in r.stderr
    assert "own name=" in r.stderr
    # a data.root that does not exist is named as such, not as other data, and the folder's record stays
    r = s2d("masks", "name=x", "debug=fast", "data=davis", f"data.root={tmp_path}/typo", out, cwd=tmp_path)
    assert r.returncode == 1 and "does not exist" in r.stderr and "other data" not in r.stderr, r.stderr
    assert json.loads((tmp_path / "out" / "runs" / "x-seed0" / "data_identity.json").read_text())["kind"] == "demo"
    r = s2d("masks", "name=y", "debug=fast", "data=davis", f"data.root={davis_root}", "data.videos=[car-shadow]",
            "data.max_frames=3", out, cwd=tmp_path)
    assert r.returncode == 0, r.stderr


def test_a_command_that_fails_before_any_result_leaves_the_run_folder_free(davis_root, tmp_path):
    """A mistyped data.root is the first thing a new user fixes: the corrected command, same name, runs, where
    the failed one's data record used to refuse it as "other data". A record that protects results stays."""
    from s2d.stages.common import DATA_IDENTITY, release_run_folder

    out = f"paths.output_root={tmp_path}/out"
    run_dir = tmp_path / "out" / "runs" / "x-seed0"
    r = s2d("masks", "name=x", "debug=fast", "data=davis", f"data.root={tmp_path}/typo", out, cwd=tmp_path)
    assert r.returncode == 1 and "does not exist" in r.stderr
    assert run_dir.is_dir() and not (run_dir / DATA_IDENTITY).exists()
    r = s2d("masks", "name=x", "debug=fast", "data=davis", f"data.root={davis_root}", "data.videos=[car-shadow]",
            "data.max_frames=3", out, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert json.loads((run_dir / DATA_IDENTITY).read_text())["kind"] == "davis"
    # release_run_folder itself: the record goes only while nothing but bookkeeping is there
    (run_dir / DATA_IDENTITY).write_text("{}")
    release_run_folder(run_dir)
    assert not (run_dir / DATA_IDENTITY).exists()
    (run_dir / DATA_IDENTITY).write_text("{}")
    (run_dir / "checkpoints").mkdir()
    release_run_folder(run_dir)
    assert (run_dir / DATA_IDENTITY).exists()


def test_an_output_folder_that_cannot_be_made_is_one_line(tmp_path):
    (tmp_path / "afile").write_text("x")
    r = s2d("data", f"paths.output_root={tmp_path}/afile/out", cwd=tmp_path)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "the output folder cannot be written: Not a directory" in r.stderr and "paths.output_root" in r.stderr
