"""Several ranks generating one set (A4): the videos split, one manifest, a failing rank stops the others; rank and
world from the launcher's variables."""
from __future__ import annotations

import json
import multiprocessing as mp
import os
from pathlib import Path

import pytest

from _faults import _two_ranks, four_videos  # noqa: F401


def test_two_ranks_split_the_videos_and_rank0_writes_one_manifest(four_videos, tmp_path):
    """A4: every video generated exactly once, by the rank it belongs to; one ledger per rank; one manifest;
    both ranks return the whole set, identical to a single-process run."""
    from s2d.labelset.store import read_labelset

    root, calls = _two_ranks(tmp_path, four_videos)
    assert sorted(v for _, v in calls) == ["demo_00", "demo_01", "demo_02", "demo_03"]
    assert {v: r for r, v in calls} == {"demo_00": "0", "demo_01": "1", "demo_02": "0", "demo_03": "1"}
    assert sorted(p.name for p in root.glob("ledger*")) == ["ledger.rank0.jsonl", "ledger.rank1.jsonl"]
    names = ["demo_00", "demo_01", "demo_02", "demo_03"]
    assert json.loads((root / "result0").read_text()) == json.loads((root / "result1").read_text()) == names
    assert [v.name for v in read_labelset(root, "fp1")] == names
    # a later single-process run (e.g. the evaluation) finds the set complete and does nothing
    _, calls_again = _two_ranks(tmp_path, four_videos)
    assert calls_again == calls


def test_a_failing_rank_stops_the_other_instead_of_a_hang(four_videos, tmp_path):
    root, _ = _two_ranks(tmp_path, four_videos, fail_video="demo_03")
    assert "demo_03" in (root / "error1").read_text()
    assert "failed.rank1.json: another rank failed on ['demo_03']" in (root / "error0").read_text()
    assert not (root / "MANIFEST.json").exists()


@pytest.mark.parametrize("env, expected", [
    ({}, (0, 1)),
    ({"RANK": "1", "WORLD_SIZE": "2"}, (1, 2)),                              # torchrun
    ({"LOCAL_RANK": "1", "WORLD_SIZE": "2"}, (1, 2)),                        # Lightning's DDP launcher
    ({"SLURM_NTASKS": "4", "SLURM_PROCID": "3"}, (3, 4)),                    # srun, 4 tasks
    ({"SLURM_NTASKS": "4", "SLURM_STEP_NUM_TASKS": "1", "SLURM_PROCID": "0"}, (0, 1)),  # one task of 4 started
    ({"SLURM_NTASKS": "1", "SLURM_PROCID": "0"}, (0, 1)),
])
def test_rank_and_world_come_from_the_launcher(monkeypatch, env, expected):
    from s2d.io.job_ranks import job_rank_world

    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "SLURM_NTASKS", "SLURM_PROCID", "SLURM_STEP_NUM_TASKS"):
        monkeypatch.delenv(k, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert job_rank_world() == expected


def _generate_as_job(job, root, data_root, calls_log, errors):
    """One job of a sweep (a process on its own, world 1) generating a set another job generates too."""
    import time as _time

    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "SLURM_NTASKS", "SLURM_PROCID"):
        os.environ.pop(k, None)
    from s2d.data.sources import open_dataset
    from s2d.stages.common import run_per_video

    ds = open_dataset("ytvis", data_root)

    def fn(r):
        with open(calls_log, "a") as f:
            f.write(f"{job} {r.name}\n")
        _time.sleep(0.3)  # long enough for the other job to arrive while this one is writing
        out = ds.skeleton(r.name)
        out.instances = list(r.gt.instances)
        return out

    try:
        ls = run_per_video("masks", Path(root), "fp1", ds, fn, progress=False)
        Path(errors).with_name(f"result{job}").write_text(json.dumps([v.name for v in ls]))
    except Exception as e:  # noqa: BLE001 - reported to the test
        Path(errors).with_name(f"error{job}").write_text(f"{type(e).__name__}: {e}")


def test_two_jobs_of_a_sweep_generating_one_set_compute_it_once(four_videos, tmp_path):
    """Two independent processes (jobs of a sweep, world 1 each) start the same artifact together: the first
    computes it, the second waits for it and reads it; before, each cleared the other's temp files as stale."""
    ctx = mp.get_context("fork")
    root, log = tmp_path / "set", tmp_path / "calls.txt"
    procs = [ctx.Process(target=_generate_as_job, args=(j, str(root), str(four_videos), str(log),
                                                        str(tmp_path / "errors"))) for j in (0, 1)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    assert not list(tmp_path.glob("error*")), [p.read_text() for p in tmp_path.glob("error*")]
    calls = [line.split() for line in log.read_text().splitlines()]
    assert sorted(name for _, name in calls) == ["demo_00", "demo_01", "demo_02", "demo_03"]  # each once
    assert len({job for job, _ in calls}) == 1  # by one job; the other read the finished set
    for j in (0, 1):
        assert json.loads((tmp_path / f"result{j}").read_text()) == ["demo_00", "demo_01", "demo_02", "demo_03"]
