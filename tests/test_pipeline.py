"""`s2d run` end to end on the embedded demo: report, metrics, skip on rerun, resume after a kill."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch


def run_s2d(*args, cwd, timeout=600):
    env = {**os.environ, "WANDB_MODE": "offline"}
    return subprocess.run([sys.executable, "-m", "s2d.cli", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.slow
def test_run_writes_report_and_rerun_skips(tmp_path, demo_videos_root):
    args = ("run", "debug=fast", f"paths.output_root={tmp_path}/out")
    r = run_s2d(*args, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    run_dir = tmp_path / "out" / "runs" / "debug-fast-seed0"
    report = (run_dir / "report.md").read_text()
    assert "sparse keymasks" in report and "IoU linker" in report
    assert "dense labelset (distilled teacher)" in report and "final model" in report
    assert (run_dir / "metrics.png").stat().st_size > 1000 and (run_dir / "stages.png").exists()
    import re

    timed = dict(re.findall(r"^\| (\w[\w ()0-9]*) \| `[^`]+` \| ([0-9.]+) \|$", report, re.M))
    assert set(timed) == {"masks", "keymasks", "distill", "label (round 1)", "final (round 1)", "predict"}, timed
    for name in ("demo_00", "demo_01"):  # every video drawn, dense labels and final predictions as gifs too
        assert (run_dir / "pictures" / f"{name}.png").exists() and f"pictures/{name}.png" in report
        assert (run_dir / "overlays" / f"{name}_dense.gif").exists()
        assert (run_dir / "overlays" / f"{name}_final.gif").exists()
    m = json.loads((run_dir / "metrics.json").read_text())
    assert m["complete"] and 0 <= m["metrics"]["sparse keymasks"]["AP50"] <= 100
    # where AP50 is lost: a row per labelset in the report, the counts in metrics.json
    assert "## Where AP50 is lost (diagnostic)" in report
    assert set(m["errors"]) == {"sparse keymasks", "dense labelset (distilled teacher)", "final model"}
    for row, c in m["errors"].items():
        assert c["found"] + c["missed"] == c["objects"] > 0
        assert f"| {row} | {c['found']} / {c['objects']} | {c['missed']} |" in report
    # the compute that made the numbers, in the metrics and the report's header
    assert m["compute"]["torch"] == torch.__version__ and f"Compute: torch {torch.__version__}" in report
    overlays = list((tmp_path / "out" / "artifacts").glob("keymasks-*/overlays/*.gif"))
    assert len(overlays) == 2
    r2 = run_s2d(*args, cwd=tmp_path)
    assert r2.returncode == 0
    log = r2.stdout + r2.stderr
    for stage in ("masks", "keymasks", "label", "predict"):
        assert f"{stage}: finished set found" in log
    assert "distill: finished checkpoint found" in log and "final: finished checkpoint found" in log
    assert json.loads((run_dir / "metrics.json").read_text())["metrics"] == m["metrics"]
    # s2d demo VIDEO.mp4 draws the final model's instances on a real video
    apple = demo_videos_root / "apple" / "apple.mp4"
    r3 = run_s2d("demo", str(apple), "debug=fast", f"paths.output_root={tmp_path}/out", "demo.max_frames=4",
                 "demo.short_side=64", cwd=tmp_path)
    assert r3.returncode == 0, r3.stderr[-3000:]
    import cv2

    cap = cv2.VideoCapture(str(run_dir / "demo" / "apple_s2d.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 4 and int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)) == 64
    # a video of two shots (16 frames of the apple, 8 of the bedroom) is cut between them
    from s2d.data.sources import open_dataset
    from s2d.stages.demo import write_mp4

    shots = [open_dataset("mp4", demo_videos_root / v, short_side=64, max_frames=n)[v].video for v, n in
             (("apple", 16), ("bedroom", 8))]
    write_mp4(tmp_path / "two.mp4", [cv2.resize(v[t], (96, 64)) for v in shots for t in range(len(v))], 10)
    r5 = run_s2d("demo", str(tmp_path / "two.mp4"), "debug=fast", f"paths.output_root={tmp_path}/out",
                 "demo.short_side=64", cwd=tmp_path)
    assert r5.returncode == 0 and "on 24 frames in 2 shots" in r5.stdout, r5.stderr[-3000:]
    r4 = run_s2d("demo", "debug=fast", f"paths.output_root={tmp_path}/out", cwd=tmp_path)
    assert r4.returncode == 1 and "usage: s2d demo VIDEO.mp4" in r4.stderr


@pytest.mark.slow
def test_kill_9_during_masks_resumes_to_the_same_result(tmp_path):
    out = tmp_path / "out"
    base = ("run", "name=k", "progress=false", "data.demo.num_videos=3", "data.demo.num_frames=8",
            "data.demo.height=64", "data.demo.width=80", "train.max_steps=3", "train.batch_size=2",
            "train.crop_size=[48,64]", "loss.num_points=128")
    ref = run_s2d(*base, f"paths.output_root={tmp_path}/ref", cwd=tmp_path)
    assert ref.returncode == 0, ref.stderr[-2000:]
    env = {**os.environ, "WANDB_MODE": "offline"}
    p = subprocess.Popen([sys.executable, "-m", "s2d.cli", *base, f"paths.output_root={out}"], cwd=tmp_path, env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline:  # kill as soon as the first masks shard is committed (its ledger line written)
        if any(p.stat().st_size for p in out.glob("artifacts/masks-*/ledger.jsonl")):
            break
        time.sleep(0.05)
    p.send_signal(signal.SIGKILL)
    p.wait()
    r = run_s2d(*base, f"paths.output_root={out}", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "resuming" in r.stdout + r.stderr
    a = json.loads((tmp_path / "ref" / "runs" / "k-seed0" / "metrics.json").read_text())["metrics"]
    b = json.loads((out / "runs" / "k-seed0" / "metrics.json").read_text())["metrics"]
    assert a == b
    ma = next((tmp_path / "ref" / "artifacts").glob("masks-*/MANIFEST.json"))
    mb = next(out.glob("artifacts/masks-*/MANIFEST.json"))
    assert json.loads(ma.read_text())["labelset"]["sha256"] == json.loads(mb.read_text())["labelset"]["sha256"]


@pytest.mark.slow
def test_distill_verb_trains_and_a_rerun_resumes(tmp_path):
    args = ("distill", "debug=fast", f"paths.output_root={tmp_path}/out", "train.max_steps=3",
            "train.checkpoint_every_n_steps=2", "train.batch_size=2", "train.crop_size=[48,64]", "loss.num_points=64")
    r = run_s2d(*args, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    run_dir = tmp_path / "out" / "runs" / "debug-fast-seed0"
    (ckpt_dir,) = (run_dir / "checkpoints").glob("distill-*")
    last = ckpt_dir / "last.ckpt"
    import torch

    assert torch.load(last, map_location="cpu", weights_only=True)["global_step"] == 3
    r = run_s2d(*args[:-5], "train.max_steps=5", *args[-4:], cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "distill: resuming from" in r.stdout + r.stderr
    assert torch.load(last, map_location="cpu", weights_only=True)["global_step"] == 5
    # a change to what the model learns (here the loss) starts a new checkpoint folder, it never resumes the old
    r = run_s2d(*args[:-5], "train.max_steps=5", *args[-4:-1], "loss.num_points=32", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert len(list((run_dir / "checkpoints").glob("distill-*"))) == 2
    assert "resuming" not in r.stdout + r.stderr


def test_wandb_offline_run_lives_in_the_run_folder_and_failure_falls_back(tmp_path, compose, monkeypatch):
    from s2d.stages import loggers as lg

    cfg = compose("debug=fast", "logger=wandb")
    run_dir = tmp_path / "run"
    monkeypatch.setenv("WANDB_MODE", "offline")
    wb = lg.wandb_logger(cfg, run_dir, "distill")
    assert wb is not None and wb.experiment.id == lg.wandb_run_id(cfg, run_dir, "distill")
    assert wb.experiment.id.startswith("debug-fast-seed0-distill-")
    wb.experiment.finish()
    assert list((run_dir / "wandb").glob("offline-run-*"))
    # W3: two jobs of a sweep (same name and seed, their own folders) get their own W&B runs; a relaunch of
    # one job (same folder) gets its id back
    other = compose("debug=fast", "logger=wandb", "loss.drop_rate=0.5")
    assert lg.wandb_run_id(other, tmp_path / "job1", "distill") != lg.wandb_run_id(cfg, run_dir, "distill")
    assert lg.wandb_run_id(other, run_dir, "distill") == lg.wandb_run_id(cfg, run_dir, "distill")
    # a run left open in this process (the previous job of a multirun) is finished, not written into
    import wandb

    stale = wandb.init(id="stale-run", dir=str(tmp_path), project="s2d")
    wb = lg.wandb_logger(cfg, run_dir, "distill")
    assert wb.experiment.id != stale.id and stale.id == "stale-run"
    lg.finish_wandb()
    assert wandb.run is None

    import lightning.pytorch.loggers as loggers

    class Broken:
        def __init__(self, *a, **k):
            raise RuntimeError("network unreachable")

    monkeypatch.setattr(loggers, "WandbLogger", Broken)
    assert lg.wandb_logger(cfg, run_dir, "distill") is None  # a warning, and the CSV logger carries on


def test_report_goes_to_wandb_offline_with_tables_and_pictures(tmp_path, compose, monkeypatch):
    from s2d.report.per_object import per_object_csv
    from s2d.report.pictures import bar_plot as _bar_plot
    from s2d.stages.loggers import log_report_to_wandb

    monkeypatch.setenv("WANDB_MODE", "offline")
    cfg = compose("debug=fast", "logger=wandb")
    metrics = {"sparse keymasks": {"AP": 8.4, "AP50": 26.6}, "final model": {"AP": 1.5, "AP50": 4.8}}
    _bar_plot(tmp_path / "metrics.png", metrics, ("AP", "AP50"))
    (tmp_path / "jf_per_object.csv").write_text(per_object_csv({"final model": [("v", 1, 0.5, 0.25)]}))
    assert log_report_to_wandb(cfg, tmp_path, metrics)
    (run,) = (tmp_path / "wandb").glob("offline-run-*")
    files = {p.name for p in run.rglob("*")}
    assert any(f.startswith("metrics_") and f.endswith(".table.json") for f in files)
    (table,) = [p for p in run.rglob("jf_per_object_*.table.json")]
    logged = json.loads(table.read_text())
    assert logged["columns"] == ["video", "object", "final model J-Mean", "final model F-Mean"]
    assert logged["data"] == [["v", 1, 0.5, 0.25]]
    assert any(f.startswith("metrics_") and f.endswith(".png") for f in files)


@pytest.mark.slow
@pytest.mark.ddp
@pytest.mark.timeout(300)
def test_ddp_through_the_command_line_uses_one_run_folder_and_one_wandb_run(tmp_path):
    """X1, W4: `s2d distill train=ddp` with 2 CPU processes (Lightning relaunches the command for rank 1):
    it finishes, rank 1 writes into the same run folder (no per-rank Hydra folders) and there is one W&B run."""
    exe = Path(sys.executable).parent / "s2d"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "s2d.cli"]
    env = {**os.environ, "WANDB_MODE": "offline"}
    r = subprocess.run([*cmd, "distill", "debug=fast", f"paths.output_root={tmp_path}/out", "train=ddp",
                        "train.devices=2", "train.accelerator=cpu", "train.precision=32-true", "train.num_workers=0",
                        "loss.num_points=64", "logger=wandb"], cwd=tmp_path, env=env, capture_output=True,
                       text=True, timeout=280)
    assert r.returncode == 0, r.stderr[-3000:]
    assert [p.name for p in (tmp_path / "out" / "runs").iterdir()] == ["debug-fast-seed0"]
    run_dir = tmp_path / "out" / "runs" / "debug-fast-seed0"
    assert (run_dir / "train_ddp_process_1.log").exists()  # rank 1 ran, in this folder
    assert len(list((run_dir / "wandb").glob("offline-run-*"))) == 1
    import torch

    (ckpt,) = (run_dir / "checkpoints").glob("distill-*/last.ckpt")
    assert torch.load(ckpt, map_location="cpu", weights_only=True)["global_step"] == 4


@pytest.mark.slow
def test_run_without_ground_truth_still_shows_every_stage(tmp_path, demo_videos_root):
    """A folder of mp4s (no annotations): the report has no metrics but draws keymasks, dense labels and final
    predictions, and writes their overlay gifs."""
    # the apple starts moving late: every 2nd frame of the whole clip at short side 128 gives a keymask instance.
    # The 4-step teacher's every query is kept (debug=fast): refining its masks would be most of the run, and other
    # tests cover the refinement
    r = run_s2d("run", "debug=fast", "data=mp4", f"data.root={demo_videos_root / 'apple'}", "data.short_side=128",
                "data.stride=2", "label.refine=false", "final.refine=false", f"paths.output_root={tmp_path}/out",
                cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    run_dir = tmp_path / "out" / "runs" / "debug-fast-seed0"
    report = (run_dir / "report.md").read_text()
    assert "No ground truth, so no metrics" in report
    assert "rows, top to bottom: sparse keymasks, dense labels, final model" in report
    assert (run_dir / "pictures" / "apple.png").exists()
    assert (run_dir / "overlays" / "apple_dense.gif").exists() and (run_dir / "overlays" / "apple_final.gif").exists()
    # the video was decoded once, to disk, and every stage read it from there
    decoded = tmp_path / "out" / "artifacts" / "decoded-frames"
    assert len(list(decoded.glob("*.u8"))) == len(list(decoded.glob("*.json"))) == 1


def test_nothing_to_train_on_is_one_line_naming_the_way_out(tmp_path, demo_videos_root):
    r = run_s2d("run", "debug=fast", "data=mp4", f"data.root={demo_videos_root / 'apple'}", "data.short_side=64",
                "data.max_frames=4", f"paths.output_root={tmp_path}/out", cwd=tmp_path)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "distill: the sparse labelset has no instance in any of its 1 video(s)" in r.stderr
    assert "data.max_frames" in r.stderr


@pytest.mark.slow
def test_empty_dense_labelset_skips_the_final_stage_and_still_reports(tmp_path):
    r = run_s2d("run", "debug=fast", "label.score_thr=1.0", "label.keep_iou=null", f"paths.output_root={tmp_path}/out",
                cwd=tmp_path)
    # (debug=fast itself keeps every teacher query, label.score_thr=0, so that its smoke runs reach every stage;
    # keep_iou=null: with it the keymasks the teacher misses fill the labelset, next test)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "final: round 1 skipped, its dense labelset is empty" in r.stdout + r.stderr
    report = (tmp_path / "out" / "runs" / "debug-fast-seed0" / "report.md").read_text()
    assert "| final (round 1) | skipped: the dense labelset is empty" in report
    assert "| sparse keymasks |" in report and "| final model |" not in report


@pytest.mark.slow
def test_a_teacher_that_finds_nothing_leaves_the_kept_keymasks_to_learn_from(tmp_path):
    """label.keep_iou (the default): no teacher query reaches the score, so every keymask instance is kept; the
    run says so, and the final stage trains on them instead of being skipped."""
    r = run_s2d("run", "debug=fast", "label.score_thr=1.0", f"paths.output_root={tmp_path}/out", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "the dense labelset is only the" in r.stdout + r.stderr and "skipped" not in r.stdout + r.stderr
    [dense_dir] = [p.parent for p in (tmp_path / "out" / "artifacts").glob("label-*/MANIFEST.json")]
    [km_dir] = [p.parent for p in (tmp_path / "out" / "artifacts").glob("keymasks-*/MANIFEST.json")]
    from s2d.labelset import read_labelset

    dense, km = read_labelset(dense_dir), read_labelset(km_dir)
    kept = [(v.name, i.segmentations) for v in dense for i in v.instances]
    assert kept and all(i.extra.get("kept") for v in dense for i in v.instances)
    assert kept == [(v.name, i.segmentations) for v in km for i in v.instances
                    if any(s is not None for s in i.segmentations)]
    report = (tmp_path / "out" / "runs" / "debug-fast-seed0" / "report.md").read_text()
    assert "| final model |" in report


@pytest.mark.slow
def test_self_training_rounds_keep_every_labelset_and_the_report_shows_curves_and_gains(tmp_path):
    """final.rounds=2: the distilled teacher labels the videos, a model trains on them, its teacher labels them
    again and a second model trains on that; both labelsets are scored, both learning stages drawn."""
    r = run_s2d("run", "debug=fast", "final.rounds=2", "train.log_every_n_steps=1", "train.val_every_n_steps=2",
                f"paths.output_root={tmp_path}/out", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    run_dir = tmp_path / "out" / "runs" / "debug-fast-seed0"
    m = json.loads((run_dir / "metrics.json").read_text())["metrics"]
    assert "dense labelset (distilled teacher)" in m and "dense labelset round 2 (final model 1)" in m
    assert "final model" in m
    ckpts = sorted(p.parent.name.split("-")[0] for p in (run_dir / "checkpoints").glob("*/last.ckpt"))
    assert ckpts == ["distill", "final", "final"]  # final-<fp> and final-round2-<fp>
    assert len(list((run_dir / "checkpoints").glob("final-round2-*/last.ckpt"))) == 1
    labelsets = {p.parent.name for p in (tmp_path / "out" / "artifacts").glob("label-*/MANIFEST.json")}
    assert len(labelsets) == 2
    report = (run_dir / "report.md").read_text()
    assert "| label (round 2) |" in report and "| final (round 2) |" in report
    assert "- distill: " in report and "- final round 1: " in report and "- final: " in report
    assert "over sparse keymasks" in report
    for stage in ("distill", "final", "final-round2"):
        assert (run_dir / "curves" / f"{stage}.png").stat().st_size > 5000, stage
        assert f"curves/{stage}.png" in report
    assert "diagnostic" in report


def _teacher_weights(folder: Path) -> dict:
    sd = torch.load(next(folder.glob("last.ckpt")), map_location="cpu", weights_only=True)["state_dict"]
    return {k: v for k, v in sd.items() if k.startswith("teacher.")}


@pytest.mark.slow
def test_final_init_scratch_starts_the_final_stage_where_the_distill_stage_started(tmp_path):
    """final.init=scratch: the final stage starts from the distill stage's initial weights, not from its teacher.
    With a final rate of 1e-12 the weights stay where they start: the default ends on the distilled teacher, the
    scratch start on the weights of a distill stage that did not move (optim.lr=1e-12, the same seed). A fast EMA
    (momentum 0.5) lets the distilled teacher move away from its start in debug=fast's 4 steps."""
    out, ema = f"paths.output_root={tmp_path}/out", "distill.ema_momentum=0.5"
    for extra in ((), ("final.init=scratch",)):
        r = run_s2d("run", "debug=fast", ema, "final.lr=1e-12", *extra, out, cwd=tmp_path)
        assert r.returncode == 0, r.stderr[-3000:]
    r = run_s2d("distill", "debug=fast", ema, "name=still", "optim.lr=1e-12", out, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    ckpts = tmp_path / "out" / "runs" / "debug-fast-seed0" / "checkpoints"
    distilled = _teacher_weights(next(ckpts.glob("distill-*")))
    finals = [_teacher_weights(f) for f in sorted(ckpts.glob("final-*"))]
    assert len(finals) == 2                                   # the key gave the scratch start its own folder
    start = _teacher_weights(next((tmp_path / "out" / "runs" / "still-seed0" / "checkpoints").glob("distill-*")))
    from_teacher = [f for f in finals if all(torch.allclose(f[k], distilled[k], atol=1e-6) for k in distilled)]
    from_scratch = [f for f in finals if all(torch.allclose(f[k], start[k], atol=1e-6) for k in start)]
    assert len(from_teacher) == 1 and len(from_scratch) == 1 and from_teacher[0] is not from_scratch[0]
    assert not all(torch.allclose(distilled[k], start[k], atol=1e-3) for k in start)  # the distill stage learned
