"""A learning stage under SLURM and signals: SIGUSR1 requeue, SIGTERM, SIGKILL, signals reaching data-loader workers,
per-run checkpoint folders."""
from __future__ import annotations

import os
import signal
from pathlib import Path

import numpy as np
import pytest
import torch

from _faults import SLURM_ENV, SignalEveryone, _data, _fit, _losses_by_step, _stage_cfg, _stage_folder  # noqa: F401


@pytest.mark.slow
def test_sigusr1_under_slurm_checkpoints_requeues_once_and_the_relaunch_resumes(compose, tmp_path, monkeypatch):
    """P1, P3, W2: first launch under SLURM with no checkpoint anywhere starts from scratch; SIGUSR1 at step 3
    -> hpc_ckpt_1.ckpt (after step 4) in the stage's own folder and `scontrol requeue 4242` exactly once. The
    relaunch, as if SLURM had stopped the job right after the signal, resumes from it with the same W&B id and
    continues the losses of the uninterrupted first launch."""
    import s2d.lit.requeue as requeue
    from s2d.stages.chain import run_distill

    for k, v in SLURM_ENV.items():
        monkeypatch.setenv(k, v)
    calls = []
    monkeypatch.setattr(requeue, "call", lambda cmd: calls.append(cmd) or 0)
    run_dir = tmp_path / "run"
    run_distill(_stage_cfg(compose, "fault.kind=sigusr1", "fault.step=3", "logger=wandb"), run_dir)
    folder = _stage_folder(run_dir)
    assert calls == [["scontrol", "requeue", "4242"]]
    hpc = folder / "hpc_ckpt_1.ckpt"
    assert torch.load(hpc, weights_only=True)["global_step"] == 4
    assert not list(run_dir.glob("hpc_ckpt_*.ckpt"))  # nothing where another stage could pick it up
    (first,) = _losses_by_step(run_dir)
    for p in folder.glob("*.ckpt"):  # the job is stopped right after the signal: only the hpc checkpoint is left
        if p != hpc:
            p.unlink()

    run_distill(_stage_cfg(compose, "logger=wandb"), run_dir)
    assert calls == [["scontrol", "requeue", "4242"]]
    assert torch.load(folder / "last.ckpt", weights_only=True)["global_step"] == 6
    assert list((run_dir / "checkpoints").iterdir()) == [folder]
    _, second = _losses_by_step(run_dir)
    assert sorted(second) == [5, 6]  # step numbering continues
    np.testing.assert_allclose([second[5], second[6]], [first[5], first[6]], rtol=1e-6)
    import wandb

    from s2d.stages.loggers import wandb_run_id

    assert wandb.run is None  # each launch finished its W&B run; both used the one id of this run folder
    # the id from each launch's run file (the folder name gets a "-1" when two launches start in one second)
    runs = {p.stem.removeprefix("run-") for p in (run_dir / "wandb").glob("offline-run-*/run-*.wandb")}
    assert runs == {wandb_run_id(_stage_cfg(compose), run_dir, "distill")}


@pytest.mark.slow
def test_sigterm_exits_143_with_a_checkpoint_and_the_next_launch_resumes(compose, tmp_path):
    """P2: SIGTERM at step 3 (time limit): the step finishes, on_exception.ckpt holds step 4, exit code 143; the
    next launch resumes there and reproduces the losses of an uninterrupted run."""
    from s2d.stages.chain import run_distill

    ref_dir, run_dir = tmp_path / "ref", tmp_path / "run"
    run_distill(_stage_cfg(compose), ref_dir)
    (ref,) = _losses_by_step(ref_dir)
    with pytest.raises(SystemExit) as exc:
        run_distill(_stage_cfg(compose, "fault.kind=sigterm", "fault.step=3"), run_dir)
    assert exc.value.code == 143
    folder = _stage_folder(run_dir)
    assert torch.load(folder / "on_exception.ckpt", weights_only=True)["global_step"] == 4
    run_distill(_stage_cfg(compose), run_dir)
    first, second = _losses_by_step(run_dir)
    assert sorted(first) == [1, 2, 3, 4] and sorted(second) == [5, 6]
    np.testing.assert_allclose([{**first, **second}[s] for s in range(1, 7)], [ref[s] for s in range(1, 7)],
                               rtol=1e-6)
    ck = torch.load(folder / "last.ckpt", weights_only=True)
    assert ck["global_step"] == 6 and ck["s2d"]["config"]["model"]["num_queries"] > 0  # C6: config stored
    assert ck["s2d"]["code_version"]
    assert ck["s2d"]["compute"]["cpu_kernels"] == str(torch.backends.cpu.get_cpu_capability())  # what trained it


@pytest.mark.slow
def test_sigkill_between_periodic_checkpoints_loses_at_most_one_interval(tmp_path):
    """P5: a node failure (SIGKILL at step 5, checkpoints every 3 steps): the relaunch resumes from step 3."""
    import subprocess
    import sys

    args = [sys.executable, "-m", "s2d.cli", "distill", "debug=fast", f"paths.output_root={tmp_path}/out",
            "train.max_steps=7", "train.checkpoint_every_n_steps=3", "loss.num_points=64"]
    r = subprocess.run([*args, "fault.kind=sigkill", "fault.step=5"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == -signal.SIGKILL, r.stderr[-2000:]
    folder = _stage_folder(tmp_path / "out" / "runs" / "debug-fast-seed0")
    assert not (folder / "on_exception.ckpt").exists()  # nothing ran after the kill
    r = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "resuming from" in r.stdout + r.stderr and "(step 3)" in r.stdout + r.stderr
    assert torch.load(folder / "last.ckpt", weights_only=True)["global_step"] == 7


@pytest.mark.slow
def test_signals_reaching_dataloader_workers_are_handled_by_the_main_process_only(sparse_data, tmp_path,
                                                                                     monkeypatch):
    """P6: workers ignore the job's signals (they neither save nor requeue nor die); the main process writes
    one checkpoint and requeues once; the run completes."""
    import s2d.lit.requeue as requeue
    from s2d.lit.requeue import RequeueOnSignal

    for k, v in SLURM_ENV.items():
        monkeypatch.setenv(k, v)
    log = tmp_path / "requeue_calls.txt"
    monkeypatch.setattr(requeue, "call", lambda cmd: log.open("a").write(f"{os.getpid()} {cmd}\n") and 0)
    cb = RequeueOnSignal(tmp_path / "ck")
    tr = _fit(tmp_path / "a", *_data(sparse_data, num_workers=2), 4, [SignalEveryone(), cb])
    assert tr.global_step == 4
    assert [p.name for p in (tmp_path / "ck").iterdir()] == ["hpc_ckpt_1.ckpt"]
    assert log.read_text().splitlines() == [f"{os.getpid()} ['scontrol', 'requeue', '4242']"]


def test_each_run_resumes_only_its_own_checkpoints(compose, tmp_path):
    """P4: two runs under one parent folder, both with SLURM checkpoints: each resolves to its own folder, and
    the trainer's own default folder is the stage's checkpoint folder, not the shared parent."""
    from s2d.lit.checkpoint_io import newest_valid_checkpoint
    from s2d.stages.distill import checkpoint_dir, trainer

    cfg = _stage_cfg(compose)
    parent = tmp_path / "runs"
    found = {}
    for name, step in (("a-seed0", 3), ("b-seed0", 5)):
        folder = checkpoint_dir(cfg, parent / name, "distill", "upstream")
        folder.mkdir(parents=True)
        torch.save({"global_step": step}, folder / "hpc_ckpt_1.ckpt")
        found[name] = newest_valid_checkpoint(folder)
    assert found["a-seed0"] == (checkpoint_dir(cfg, parent / "a-seed0", "distill", "upstream") / "hpc_ckpt_1.ckpt", 3)
    assert found["b-seed0"][1] == 5
    tr = trainer(cfg, parent / "a-seed0", "distill", checkpoint_dir(cfg, parent / "a-seed0", "distill", "upstream"))
    assert Path(tr.default_root_dir) == checkpoint_dir(cfg, parent / "a-seed0", "distill", "upstream")
