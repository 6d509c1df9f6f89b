"""The scale-out path run for real on this machine: a Hydra sweep through submitit's local executor (the SLURM
launcher's settings with another executor) and the whole `s2d run` as 2 processes started the way srun starts
tasks, including a node failure mid-distill and the requeued job."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _gloo import free_port

pytestmark = [pytest.mark.slow]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SLURM_", "SUBMITIT_")) and k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    return {**env, "WANDB_MODE": "offline", **extra}


def _s2d(*args: str, cwd: Path, timeout: int = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "s2d.cli", *args], cwd=cwd, env=env or _env(),
                          capture_output=True, text=True, timeout=timeout)


# ---------------------------------------------------------------------------------------------- the sweep


@pytest.mark.timeout(900)
def test_submitit_local_sweep_runs_each_job_apart_and_the_table_marks_the_failed_setting(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="needs the [cluster] extra")
    # 2 DropLoss settings x 2 seeds, one process per job; loss.drop_rate=2 is refused inside its job (a job
    # failure), the other 2 jobs finish
    r = _s2d("run", "-m", "hydra/launcher=local", "hydra.launcher.gpus_per_node=0", "hydra.launcher.cpus_per_task=1",
             "experiment=ablation_droploss", "debug=fast", "logger=wandb", "train.max_steps=2",
             "loss=temporal_droploss", "loss.drop_rate=0.5,2.0", "seed=0,1",
             f"paths.output_root={tmp_path}/out", cwd=tmp_path, timeout=850)
    sweep = tmp_path / "out" / "multirun" / "debug-fast"  # debug=fast names the run
    assert r.returncode != 0, "a failed job must fail the sweep command"
    jobs = sorted(p.parent for p in sweep.rglob(".hydra"))
    assert len(jobs) == 4, [str(j) for j in jobs]
    # each job ran in its own process (submitit's logs, one pid each) with its own run folder and W&B run
    logs = sorted((sweep / ".submitit").glob("*/*_log.out"))
    assert len(logs) == 4
    finished = [j for j in jobs if (j / "metrics.json").exists()]
    assert len(finished) == 2 and all("drop_rate=2.0" not in j.name for j in finished)
    for j in finished:
        assert len(list((j / "wandb").glob("offline-run-*"))) == 3  # distill, final, report
        assert json.loads((j / "metrics.json").read_text())["complete"]
    failed_err = "".join(p.read_text() for p in (sweep / ".submitit").glob("*/*_log.err"))
    assert "loss.drop_rate" in failed_err
    # the table: mean ± std over the 2 seeds per finished setting, the failed one listed as unfinished
    t = _s2d("table", f"table.root={sweep}", "table.row=final model", cwd=tmp_path)
    assert t.returncode == 0, t.stderr[-3000:]
    md = (sweep / "table.md").read_text()
    rows = [line for line in md.splitlines() if line.startswith("| ")][1:]
    cells = {line.split("|")[1].strip(): line for line in rows}
    assert set(cells) == {"0.5", "2.0"}
    assert "(2)" in cells["0.5"] and "±" in cells["0.5"]
    assert "—" in cells["2.0"]
    excluded = md.split("Excluded:")[1]
    assert excluded.count("(unfinished)") == 2 and excluded.count("loss.drop_rate=2.0") == 2


# -------------------------------------------------------------------------- the whole pipeline on 2 tasks


def _srun(args: list[str], cwd: Path, ntasks: int, job_id: str, port: int) -> list[subprocess.Popen]:
    """Start ``ntasks`` copies of ``s2d`` with the variables srun gives each task of one node."""
    procs = []
    for rank in range(ntasks):
        env = _env(SLURM_JOB_ID=job_id, SLURM_JOB_NAME="s2d", SLURM_NTASKS=str(ntasks),
                   SLURM_NTASKS_PER_NODE=str(ntasks), SLURM_STEP_NUM_TASKS=str(ntasks), SLURM_NNODES="1",
                   SLURM_NODELIST="localhost", SLURM_PROCID=str(rank), SLURM_LOCALID=str(rank), SLURM_NODEID="0",
                   MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        log = open(cwd / f"task{rank}-{job_id}-{port}.log", "w")
        procs.append(subprocess.Popen([sys.executable, "-m", "s2d.cli", *args], cwd=cwd, env=env, stdout=log,
                                      stderr=subprocess.STDOUT))
    return procs


def _wait(procs: list[subprocess.Popen], timeout: float) -> list[int]:
    t0 = time.monotonic()
    for p in procs:
        p.wait(timeout=max(1.0, timeout - (time.monotonic() - t0)))
    return [p.returncode for p in procs]


def _metrics(root: Path) -> dict:
    return json.loads((root / "runs" / "debug-fast-seed0" / "metrics.json").read_text())["metrics"]


def _losses(root: Path, stage: str) -> list[float]:
    import csv

    rows = []
    for f in sorted((root / "runs" / "debug-fast-seed0" / "logs" / stage).glob("version_*/metrics.csv")):
        rows += [r for r in csv.DictReader(f.open()) if r.get("train/loss")]
    return [float(r["train/loss"]) for r in sorted(rows, key=lambda r: int(r["step"]))]


def _assert_same_metrics(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for stage in a:
        for k, v in a[stage].items():
            assert b[stage][k] == pytest.approx(v, rel=1e-4, abs=1e-6), (stage, k)


@pytest.mark.ddp
@pytest.mark.timeout(900)
def test_whole_pipeline_on_two_srun_tasks_equals_one_process_and_survives_a_node_failure(tmp_path):
    common = ["run", "debug=fast", "train.max_steps=4", "train.checkpoint_every_n_steps=2", "train.log_every_n_steps=1",
              "loss.num_points=64"]
    ddp = ["train=ddp", "train.devices=2", "train.accelerator=cpu", "train.precision=32-true", "train.num_workers=0"]
    one = _s2d(*common, f"paths.output_root={tmp_path}/one", cwd=tmp_path)
    assert one.returncode == 0, one.stderr[-3000:]

    # 2 tasks: the generation stages split the videos (one manifest), training is DDP over gloo, rank 0 reports
    two = _srun([*common, *ddp, f"paths.output_root={tmp_path}/two"], tmp_path, 2, "5001", free_port())
    assert _wait(two, 600) == [0, 0], (tmp_path / "task0-5001.log")
    run_two = tmp_path / "two" / "runs" / "debug-fast-seed0"
    assert (run_two / "report.md").exists() and not (run_two / "train_ddp_process_1.log").exists()
    for stage in ("masks", "keymasks", "label", "predict"):  # each generated half of the videos, one manifest
        (manifest,) = (tmp_path / "two" / "artifacts").glob(f"{stage}-*/MANIFEST.json")
        ledgers = sorted(p.name for p in manifest.parent.glob("ledger.rank*.jsonl"))
        assert ledgers == ["ledger.rank0.jsonl", "ledger.rank1.jsonl"], (stage, ledgers)
        assert all(len(p.read_text().splitlines()) == 1 for p in manifest.parent.glob("ledger.rank*.jsonl"))
    for stage in ("distill", "final"):
        assert len(_losses(tmp_path / "one", stage)) == 4
        assert _losses(tmp_path / "two", stage) == pytest.approx(_losses(tmp_path / "one", stage), rel=1e-4), stage
    _assert_same_metrics(_metrics(tmp_path / "one"), _metrics(tmp_path / "two"))

    # a node failure: task 1 is SIGKILLed at distill step 3 (checkpoints every 2 steps); SLURM takes the
    # whole step down, so task 0 is killed too. The requeued job (same command) resumes at step 2.
    three = tmp_path / "three"
    procs = _srun([*common, *ddp, f"paths.output_root={three}", "fault.kind=sigkill", "fault.step=3",
                   "fault.rank=1"], tmp_path, 2, "5002", free_port())
    procs[1].wait(timeout=600)
    assert procs[1].returncode == -signal.SIGKILL
    # task 0 may still be writing the step-2 checkpoint when task 1 dies at step 3 (it cannot pass step 3's
    # first collective): let it finish that write, as a real node failure may or may not, then kill it
    deadline = time.monotonic() + 120
    while not list(three.glob("runs/debug-fast-seed0/checkpoints/distill-*/step000002.ckpt")) and \
            time.monotonic() < deadline and procs[0].poll() is None:
        time.sleep(0.5)
    procs[0].kill()
    procs[0].wait(timeout=60)
    assert not (three / "runs" / "debug-fast-seed0" / "metrics.json").exists()
    again = _srun([*common, *ddp, f"paths.output_root={three}"], tmp_path, 2, "5002", free_port())
    assert _wait(again, 600) == [0, 0]
    log0 = next(tmp_path.glob("task0-5002-*.log"), None)
    text = "".join(p.read_text() for p in tmp_path.glob("task0-5002-*.log"))
    # from the step-2 checkpoint, or from task 0's on_exception checkpoint at step 3 when it saw its peer die first
    assert log0 is not None and re.search(r"resuming from \S+ \(step [23]\)", text), text[-2000:]
    _assert_same_metrics(_metrics(tmp_path / "two"), _metrics(three))
