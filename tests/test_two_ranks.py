"""Two gloo processes (N1, N4, N7, X3): NaN on one rank, a rank without targets, validation split over ranks,
SIGUSR1 on one rank."""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from _faults import SignalRank1, ValReport, _data, _ddp_fit, _ddp_module, _oracle_expected, _oracle_module, _rank_reports, _val_data, _val_fit  # noqa: F401


@pytest.mark.slow
@pytest.mark.ddp
@pytest.mark.timeout(240)
def test_nan_on_one_rank_stops_both_ranks_at_that_step(sparse_data, tmp_path):
    """N1: NaN in the loss of rank 1 at step 2 -> both ranks raise FloatingPointError at step 2 naming the
    terms (rank 1) or the other rank (rank 0) and the videos; nobody hangs in a collective."""
    from s2d.lit.fault_injector import FaultInjector

    _, data = _data(sparse_data)
    with pytest.raises(Exception, match="non-finite loss at step 2"):
        _ddp_fit(_ddp_module(tmp_path), data, tmp_path, 5, [FaultInjector("nan", step=2, rank=1)])
    r0, r1 = _rank_reports(tmp_path)
    assert len(r0["losses"]) == len(r1["losses"]) == 2  # steps 0 and 1 finished, step 2 stopped on both
    e0, e1 = ((tmp_path / f"rank{r}.error").read_text() for r in (0, 1))
    assert e1.startswith("FloatingPointError: non-finite loss at step 2") and "injected_nan" in e1
    assert e0.startswith("FloatingPointError: non-finite loss at step 2")
    assert "NaN on another rank" in e0 and "videos [" in e0


@pytest.mark.slow
@pytest.mark.ddp
@pytest.mark.timeout(240)
def test_nan_predictions_on_one_rank_stop_both_through_the_matcher(sparse_data, tmp_path):
    """N1 without a backdoor: a weight of rank 1's student becomes NaN at step 2, so its predictions are NaN.
    The criterion's one collective carries that news: rank 1 names its outputs, rank 0 the other rank; both stop
    at step 2 and nobody waits in a collective (before, rank 1's matcher raised before the collective and rank 0
    waited for it)."""
    from s2d.lit.fault_injector import FaultInjector

    _, data = _data(sparse_data)
    with pytest.raises(Exception, match="non-finite loss at step 2"):
        _ddp_fit(_ddp_module(tmp_path), data, tmp_path, 5, [FaultInjector("nan_weights", step=2, rank=1)])
    r0, r1 = _rank_reports(tmp_path)
    assert len(r0["losses"]) == len(r1["losses"]) == 2
    e0, e1 = ((tmp_path / f"rank{r}.error").read_text() for r in (0, 1))
    assert e1.startswith("FloatingPointError: non-finite loss at step 2")
    assert "non-finite predictions (the model's outputs contain NaN/inf)" in e1 and "videos [" in e1
    assert e0.startswith("FloatingPointError: non-finite loss at step 2") and "non-finite predictions on 1 other rank" in e0


@pytest.mark.slow
@pytest.mark.ddp
@pytest.mark.timeout(240)
def test_a_rank_without_any_instance_trains_on_without_a_hang(sparse_data, tmp_path):
    """N4: rank 1 has no target instances in any step (only the "no object" class term is left): both ranks
    stay finite, run the normaliser's collective every step, finish all steps and end with the same weights
    (gradients were reduced)."""
    _, data = _data(sparse_data)
    _ddp_fit(_ddp_module(tmp_path, empty_rank=1, distill_weight=0.0), data, tmp_path, 3, [])
    r0, r1 = _rank_reports(tmp_path)
    assert len(r0["losses"]) == len(r1["losses"]) == 3
    assert all(np.isfinite(r0["losses"] + r1["losses"]))
    assert min(r0["losses"]) > max(r1["losses"])  # rank 0 also pays the mask terms of its instances
    assert r0["checksum"] == r1["checksum"]


@pytest.mark.slow
@pytest.mark.ddp
@pytest.mark.timeout(240)
def test_two_ranks_validate_their_share_and_agree_on_the_best_checkpoint(sparse_data, tmp_path):
    """X3: 2 ranks each score half of the videos; the gathered val/AP is the same on both, so the best
    checkpoint decision is unanimous: one file, no hang."""
    from s2d.stages.distill import best_checkpoint

    expected = _oracle_expected(sparse_data)
    _val_fit(tmp_path, _oracle_module(), _val_data(sparse_data), 4, [ValReport(str(tmp_path)),
                                                            best_checkpoint(tmp_path / "ck", "val/AP")],
             devices=2, strategy="ddp_spawn", enable_checkpointing=True)
    r0, r1 = ((tmp_path / f"val_rank{r}.txt").read_text().split("\n") for r in (0, 1))
    assert r0 == r1 and len([line for line in r0 if line]) == 2
    assert float(r0[0].split()[1]) == pytest.approx(expected, abs=1e-7)  # both videos counted, once each
    assert len(list((tmp_path / "ck").glob("best-step*.ckpt"))) == 1


@pytest.mark.slow
@pytest.mark.ddp
@pytest.mark.timeout(240)
def test_sigusr1_on_one_rank_checkpoints_on_all_and_requeues_once(sparse_data, tmp_path, monkeypatch):
    """P1 on 2 ranks: only rank 1 gets the signal; both ranks agree at the end of the step, one hpc checkpoint
    is written, `scontrol requeue` runs once (a stand-in scontrol on PATH records its calls), no hang."""
    from s2d.lit.requeue import RequeueOnSignal

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "scontrol").write_text(f"#!/bin/sh\necho \"$@\" >> {tmp_path / 'scontrol.log'}\n")
    (bin_dir / "scontrol").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    _ddp_fit(_ddp_module(tmp_path), _data(sparse_data)[1], tmp_path, 4,
             [SignalRank1(), RequeueOnSignal(tmp_path / "ck")])
    r0, r1 = _rank_reports(tmp_path)
    assert len(r0["losses"]) == len(r1["losses"]) == 4 and r0["checksum"] == r1["checksum"]
    assert [p.name for p in (tmp_path / "ck").iterdir()] == ["hpc_ckpt_1.ckpt"]
    assert torch.load(tmp_path / "ck" / "hpc_ckpt_1.ckpt", weights_only=True)["global_step"] == 3
    assert (tmp_path / "scontrol.log").read_text().splitlines() == ["requeue 4242"]
