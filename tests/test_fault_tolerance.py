"""Fault tolerance of training (ids refer to ../shared/RELIABILITY.md): exact mid-epoch resume, checkpoint
refusals, SLURM requeue, SIGTERM, SIGKILL, signals reaching data-loader workers, determinism."""
from __future__ import annotations

import csv
import json
import multiprocessing as mp
import os
import signal
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch

from s2d.lit.distillation import DistillationModule
from test_training import LOSS, OPTIM, TINY  # the tiny model and solver of the training tests

SLURM_ENV = {"SLURM_JOB_ID": "4242", "SLURM_NTASKS": "1", "SLURM_JOB_NAME": "s2d", "SLURM_NODELIST": "localhost",
             "SLURM_PROCID": "0", "SLURM_LOCALID": "0", "SLURM_NODEID": "0"}


class Trace(L.Callback):
    """(global step after the batch, clip indices, loss, learning rate, epoch) of every training batch."""

    def __init__(self):
        self.rows: list = []

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        self.rows.append((trainer.global_step, tuple(int(i) for i in batch["indices"]), float(outputs["loss"]),
                          trainer.optimizers[0].param_groups[0]["lr"], trainer.current_epoch))


def _data(sparse_data, num_workers=0, seed=0, lr=1e-3):
    from s2d.data.clips import AugmentConfig
    from s2d.data.datamodules import KeymaskSparseDataModule
    from s2d.lit.distillation import DistillationModule

    torch.manual_seed(seed)
    optim = {**OPTIM, "lr": lr, "milestones": [3], "gamma": 0.5}  # the LR changes before the interruption
    module = DistillationModule(TINY, LOSS, optim, ema_momentum=0.9, teacher_score=0.5, seed=seed)
    data = KeymaskSparseDataModule(*sparse_data, batch_size=2, seed=seed, num_workers=num_workers,
                                   augment=AugmentConfig(size=(48, 64)))
    return module, data


def _fit(root, module, data, max_steps, callbacks=(), ckpt_path=None):
    tr = L.Trainer(max_steps=max_steps, accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                   enable_model_summary=False, default_root_dir=str(root), gradient_clip_val=0.01,
                   use_distributed_sampler=False, callbacks=list(callbacks))
    tr.fit(module, data, ckpt_path=ckpt_path)
    return tr


# ------------------------------------------------------------------------------------------- R1: exact resume
@pytest.mark.slow
@pytest.mark.parametrize("num_workers", [0, 2])
def test_resume_mid_epoch_continues_the_uninterrupted_sequence(sparse_data, tmp_path, num_workers):
    """An exception at step 5 (mid-epoch: 2 batches per epoch) -> on_exception.ckpt -> resume: the clips, losses,
    learning rates and epochs of steps 6.. equal those of an uninterrupted run."""
    from lightning.pytorch.callbacks import OnExceptionCheckpoint

    from s2d.lit.fault_injector import FaultInjector

    full = Trace()
    tr_full = _fit(tmp_path / "a", *_data(sparse_data, num_workers), 9, [full])
    assert full.rows[0][4] == 0 and full.rows[-1][4] == 4  # several epochs
    first, second = Trace(), Trace()
    with pytest.raises(RuntimeError, match="injected failure at step 5"):
        _fit(tmp_path / "b", *_data(sparse_data, num_workers), 9,
             [first, FaultInjector("raise", 5), OnExceptionCheckpoint(str(tmp_path / "ck"))])
    ckpt = tmp_path / "ck" / "on_exception.ckpt"
    assert torch.load(ckpt, weights_only=True)["global_step"] == 5
    tr = _fit(tmp_path / "c", *_data(sparse_data, num_workers), 9, [second], ckpt_path=str(ckpt))
    resumed = first.rows + second.rows
    assert [r[0] for r in resumed] == [r[0] for r in full.rows] == list(range(1, 10))
    assert [r[1] for r in resumed] == [r[1] for r in full.rows]   # the same clips, in the same order
    assert [r[3] for r in resumed] == [r[3] for r in full.rows]   # the same LR schedule
    assert [r[4] for r in resumed] == [r[4] for r in full.rows]   # the same epochs
    np.testing.assert_allclose([r[2] for r in resumed], [r[2] for r in full.rows], rtol=1e-6)
    assert tr.global_step == 9 and tr.current_epoch == tr_full.current_epoch


# ------------------------------------------------------------------- R2, R6, R7, R8: what a resume accepts
def test_resume_with_a_wrong_lr_keeps_the_checkpoint_optimizer_state(sparse_data, tmp_path, caplog):
    from s2d.lit.run_stamp import check_resume

    ref = Trace()
    _fit(tmp_path / "a", *_data(sparse_data), 5, [ref])
    _fit(tmp_path / "b", *_data(sparse_data), 2, [L.pytorch.callbacks.ModelCheckpoint(tmp_path / "ck", save_last=True)])
    ckpt = tmp_path / "ck" / "last.ckpt"
    module, data = _data(sparse_data, lr=0.5)  # deliberately wrong
    saved = {"optim": {"lr": 1e-3}, "model": TINY}
    sd = torch.load(ckpt, weights_only=True)
    sd["s2d"] = {"config": saved}
    with caplog.at_level("WARNING"):
        check_resume(sd, ckpt, {"optim": {"lr": 0.5}, "model": TINY}, module.state_dict(), 5)
    assert "optim.lr: 0.001 -> 0.5" in caplog.text
    after = Trace()
    _fit(tmp_path / "c", module, data, 5, [after], ckpt_path=str(ckpt))
    assert [r[3] for r in after.rows] == [r[3] for r in ref.rows[2:]]  # 1e-3, then 5e-4 after the milestone
    np.testing.assert_allclose([r[2] for r in after.rows], [r[2] for r in ref.rows[2:]], rtol=1e-6)


def test_resume_refusals_name_the_key_or_list_the_state_dict_keys():
    from s2d.errors import ConfigError, S2DError
    from s2d.lit.run_stamp import check_resume

    own = {"a.weight": torch.zeros(2, 3), "b.bias": torch.zeros(4)}
    ckpt = {"global_step": 7, "state_dict": {"a.weight": torch.zeros(2, 3), "b.bias": torch.zeros(4)},
            "s2d": {"config": {"model": {"num_queries": 10}}}}
    check_resume(ckpt, "x.ckpt", {"model": {"num_queries": 10}}, own, max_steps=7)  # fits: no error
    # R6: a structural change is refused, naming the key, unless explicitly allowed
    with pytest.raises(ConfigError, match=r"model.num_queries.*10 -> 20.*resume.allow_config_change"):
        check_resume(ckpt, "x.ckpt", {"model": {"num_queries": 20}}, own, max_steps=10)
    check_resume(ckpt, "x.ckpt", {"model": {"num_queries": 20}}, own, max_steps=10, allow_config_change=True)
    # R7: missing / unexpected / reshaped keys are listed
    other = {"a.weight": torch.zeros(3, 3), "c.weight": torch.zeros(1)}
    with pytest.raises(S2DError, match=r"1 missing keys \['c.weight'\], 1 unexpected keys \['b.bias'\], "
                                       r"1 keys of another shape \['a.weight'\]"):
        check_resume(ckpt, "x.ckpt", {"model": {"num_queries": 10}}, other, max_steps=10)
    # R8: a checkpoint that trained further than this run is allowed to
    with pytest.raises(ConfigError, match=r"train.max_steps.*trained 7 steps, more than train.max_steps=5"):
        check_resume(ckpt, "x.ckpt", {"model": {"num_queries": 10}}, own, max_steps=5)


def test_init_from_pretrained_accepts_only_allowlisted_missing_keys(tmp_path):
    from s2d.errors import ConfigError
    from s2d.models import VideoMask2Former

    model = VideoMask2Former(**TINY)
    sd = {k: v for k, v in model.state_dict().items() if not k.startswith("decoder.")}
    torch.save(sd, tmp_path / "backbone_only.pt")
    with pytest.raises(ConfigError, match=r"model.pretrained.*required tensors missing.*missing decoder\."):
        VideoMask2Former(**TINY).load_pretrained(tmp_path / "backbone_only.pt")
    report = VideoMask2Former(**TINY).load_pretrained(tmp_path / "backbone_only.pt", allow_missing=("decoder.",))
    assert len(report.loaded) == len(sd) and report.unexpected == []


# --------------------------------------------------------------------- the stage: SLURM, SIGTERM, SIGKILL
def _stage_cfg(compose, *extra):
    return compose("debug=fast", "train.max_steps=6", "train.checkpoint_every_n_steps=100",
                   "train.log_every_n_steps=1", "loss.num_points=64", *extra, stage="distill")


def _losses_by_step(run_dir: Path) -> list[dict[int, float]]:
    """Per launch (CSV version folder), {step: train/loss}; the CSV logger counts steps from 0."""
    out = []
    for version in sorted((run_dir / "logs" / "distill").glob("version_*"), key=lambda p: int(p.name.split("_")[1])):
        rows = list(csv.DictReader(open(version / "metrics.csv")))
        out.append({int(r["step"]) + 1: float(r["train/loss"]) for r in rows if r.get("train/loss")})
    return out


def _stage_folder(run_dir: Path) -> Path:
    (folder,) = (run_dir / "checkpoints").glob("distill-*")
    return folder


@pytest.mark.slow
def test_sigusr1_under_slurm_checkpoints_requeues_once_and_the_relaunch_resumes(compose, tmp_path, monkeypatch):
    """P1, P3, W2: first launch under SLURM with no checkpoint anywhere starts from scratch; SIGUSR1 at step 3
    -> hpc_ckpt_1.ckpt (after step 4) in the stage's own folder and `scontrol requeue 4242` exactly once. The
    relaunch, as if SLURM had stopped the job right after the signal, resumes from it with the same W&B id and
    continues the losses of the uninterrupted first launch."""
    import s2d.lit.requeue as requeue
    from s2d.stages import distill

    for k, v in SLURM_ENV.items():
        monkeypatch.setenv(k, v)
    calls = []
    monkeypatch.setattr(requeue, "call", lambda cmd: calls.append(cmd) or 0)
    run_dir = tmp_path / "run"
    distill.run(_stage_cfg(compose, "fault.kind=sigusr1", "fault.step=3", "logger=wandb"), run_dir)
    folder = _stage_folder(run_dir)
    assert calls == [["scontrol", "requeue", "4242"]]
    hpc = folder / "hpc_ckpt_1.ckpt"
    assert torch.load(hpc, weights_only=True)["global_step"] == 4
    assert not list(run_dir.glob("hpc_ckpt_*.ckpt"))  # nothing where another stage could pick it up
    (first,) = _losses_by_step(run_dir)
    for p in folder.glob("*.ckpt"):  # the job is stopped right after the signal: only the hpc checkpoint is left
        if p != hpc:
            p.unlink()

    distill.run(_stage_cfg(compose, "logger=wandb"), run_dir)
    assert calls == [["scontrol", "requeue", "4242"]]
    assert torch.load(folder / "last.ckpt", weights_only=True)["global_step"] == 6
    assert list((run_dir / "checkpoints").iterdir()) == [folder]
    _, second = _losses_by_step(run_dir)
    assert sorted(second) == [5, 6]  # step numbering continues
    np.testing.assert_allclose([second[5], second[6]], [first[5], first[6]], rtol=1e-6)
    import wandb

    from s2d.stages.distill import wandb_run_id

    assert wandb.run is None  # each launch finished its W&B run; both used the one id of this run folder
    runs = {p.name.split("-", 3)[-1] for p in (run_dir / "wandb").glob("offline-run-*")}
    assert runs == {wandb_run_id(_stage_cfg(compose), run_dir, "distill")}


@pytest.mark.slow
def test_sigterm_exits_143_with_a_checkpoint_and_the_next_launch_resumes(compose, tmp_path):
    """P2: SIGTERM at step 3 (time limit): the step finishes, on_exception.ckpt holds step 4, exit code 143; the
    next launch resumes there and reproduces the losses of an uninterrupted run."""
    from s2d.stages import distill

    ref_dir, run_dir = tmp_path / "ref", tmp_path / "run"
    distill.run(_stage_cfg(compose), ref_dir)
    (ref,) = _losses_by_step(ref_dir)
    with pytest.raises(SystemExit) as exc:
        distill.run(_stage_cfg(compose, "fault.kind=sigterm", "fault.step=3"), run_dir)
    assert exc.value.code == 143
    folder = _stage_folder(run_dir)
    assert torch.load(folder / "on_exception.ckpt", weights_only=True)["global_step"] == 4
    distill.run(_stage_cfg(compose), run_dir)
    first, second = _losses_by_step(run_dir)
    assert sorted(first) == [1, 2, 3, 4] and sorted(second) == [5, 6]
    np.testing.assert_allclose([{**first, **second}[s] for s in range(1, 7)], [ref[s] for s in range(1, 7)],
                               rtol=1e-6)
    ck = torch.load(folder / "last.ckpt", weights_only=True)
    assert ck["global_step"] == 6 and ck["s2d"]["config"]["model"]["num_queries"] > 0  # C6: config stored
    assert ck["s2d"]["code_version"]


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


class SignalEveryone(L.Callback):
    """At step 2: SIGUSR1 and SIGTERM to every data-loader worker, then SIGUSR1 to this process."""

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        if trainer.global_step != 2:
            return
        workers = mp.active_children()
        assert workers, "the test needs live data-loader workers"
        for w in workers:
            os.kill(w.pid, signal.SIGUSR1)
            os.kill(w.pid, signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGUSR1)


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


# ------------------------------------------------------------------------------------- D1-D4: determinism
@pytest.mark.slow
def test_same_seed_is_bitwise_identical_and_another_seed_differs(sparse_data, tmp_path, compose):
    from s2d.stages.distill import checkpoint_dir

    runs = []
    for k, seed in enumerate((0, 0, 1)):
        t = Trace()
        _fit(tmp_path / str(k), *_data(sparse_data, seed=seed), 4, [t])
        runs.append([r[2] for r in t.rows])
    assert runs[0] == runs[1]                                     # D1: bit for bit
    assert runs[0] != runs[2]                                     # D2
    c0, c1 = _stage_cfg(compose), _stage_cfg(compose)
    assert checkpoint_dir(c0, tmp_path, "distill", "u") == checkpoint_dir(c1, tmp_path, "distill", "u")
    assert checkpoint_dir(c0, tmp_path, "distill", "u") != checkpoint_dir(_stage_cfg(compose, "seed=1"), tmp_path,
                                                                         "distill", "u")


def test_ranks_cover_each_epoch_without_overlap_and_reshuffle():
    """D4: 2 ranks: each epoch covers the data, ranks never share an item, the order changes with the epoch;
    a resume offset skips exactly the items already trained on and is dropped when the next epoch starts."""
    from s2d.data.datamodules import EpochShuffleSampler

    n = 10
    orders = []
    for epoch in range(3):
        shares = []
        for rank in range(2):
            s = EpochShuffleSampler(n, seed=3, rank=rank, world=2)
            s.set_position(epoch)
            shares.append(list(s))
        assert not set(shares[0]) & set(shares[1]) and sorted(shares[0] + shares[1]) == list(range(n))
        orders.append(shares[0])
    assert orders[0] != orders[1] != orders[2]
    s = EpochShuffleSampler(n, seed=3, rank=1, world=2)
    s.set_position(1)
    full = list(s)
    s.set_position(1, 2)
    assert list(s) == full[2:]


def test_the_loader_serves_the_batches_of_the_current_step():
    """The data position follows the optimizer step count: step k gets batch k % B of epoch k // B."""
    from s2d.data.datamodules import EpochShuffleSampler, ResumableDataLoader

    data = list(range(12))
    sampler = EpochShuffleSampler(len(data), seed=1)
    loader = ResumableDataLoader(data, batch_size=3, sampler=sampler, drop_last=True)
    epochs = []
    for e in range(3):
        loader.global_step = lambda e=e: 4 * e
        epochs.append([b.tolist() for b in loader])
    for k in range(12):
        loader.global_step = lambda k=k: k
        assert next(iter(loader)).tolist() == epochs[k // 4][k % 4]
    assert len({str(e) for e in epochs}) == 3


def test_augmentation_depends_on_seed_epoch_and_clip_not_on_rank_or_worker(sparse_data):
    """D3: a clip's augmentation is a function of (seed, epoch, clip): clips on different ranks differ,
    repeated runs and data-loader workers reproduce it exactly."""
    from torch.utils.data import DataLoader

    from s2d.data.clips import AugmentConfig, ClipDataset, collate

    def dataset(seed=0):
        return ClipDataset(*sparse_data, length=3, mode="sparse", augment=AugmentConfig(size=(48, 64)), seed=seed)

    a, b = dataset(), dataset()
    assert torch.equal(a[0]["clip"], b[0]["clip"])
    assert not torch.equal(a[0]["clip"], a[1]["clip"])                 # rank 0's item vs rank 1's item
    b.set_epoch(1)
    assert not torch.equal(a[0]["clip"], b[0]["clip"])
    assert not torch.equal(a[0]["clip"], dataset(seed=1)[0]["clip"])
    in_workers = next(iter(DataLoader(dataset(), batch_size=4, num_workers=2, collate_fn=collate)))
    assert torch.equal(in_workers["clips"][1], a[1]["clip"])


# ------------------------------------------------------------------------------ N1, N4: two gloo processes
class RankReport(L.Callback):
    """Each rank writes its losses after every step and a checksum of its weights at the end (module level:
    ddp_spawn pickles callbacks)."""

    def __init__(self, folder: str):
        self.folder = folder
        self.losses: list = []

    def _write(self, trainer, **extra):
        (Path(self.folder) / f"rank{trainer.global_rank}.json").write_text(json.dumps({"losses": self.losses, **extra}))

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        self.losses.append(float(outputs["loss"]))
        self._write(trainer)

    def on_train_end(self, trainer, module):
        self._write(trainer, checksum=float(sum(p.double().sum() for p in module.student.parameters())))


class RankTestModule:
    """Mixin for the 2-process tests: ``folder`` gets each rank's error; ``empty_rank`` gets clips without any
    target instance (everything dropped / nothing found). Under ddp_spawn Lightning calls on_exception only in
    the launching process, so the ranks' errors are recorded here."""

    folder: str = ""
    empty_rank: int | None = None

    def training_step(self, batch, batch_idx):
        if self.global_rank == self.empty_rank:
            batch = {**batch, "targets": [t[:0] for t in batch["targets"]]}
        try:
            return super().training_step(batch, batch_idx)
        except Exception as e:
            (Path(self.folder) / f"rank{self.global_rank}.error").write_text(f"{type(e).__name__}: {e}")
            raise


class _DDPModule(RankTestModule, DistillationModule):
    pass


def _ddp_fit(module, data, folder, max_steps, callbacks):
    tr = L.Trainer(max_steps=max_steps, accelerator="cpu", devices=2, strategy="ddp_spawn", logger=False,
                   enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
                   default_root_dir=str(folder), gradient_clip_val=0.01, use_distributed_sampler=False,
                   callbacks=[RankReport(str(folder)), *callbacks])
    tr.fit(module, data)


def _rank_reports(folder):
    return [json.loads((Path(folder) / f"rank{r}.json").read_text()) for r in (0, 1)]


def _ddp_module(tmp_path, empty_rank=None, **kw):
    torch.manual_seed(0)
    module = _DDPModule(TINY, LOSS, {**OPTIM}, ema_momentum=0.9, teacher_score=0.5, seed=0, **kw)
    module.folder, module.empty_rank = str(tmp_path), empty_rank
    return module


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


# ------------------------------------------------------------------- A4: several ranks generating one set
def _generate_as_rank(rank, world, root, data_root, fail_video, calls_log):
    """One rank of a job that runs the whole command on every rank (srun tasks): a stage over all videos."""
    os.environ.update({"RANK": str(rank), "WORLD_SIZE": str(world), "S2D_RANK_WAIT_S": "60"})
    from s2d.data.sources import open_dataset
    from s2d.errors import S2DError
    from s2d.stages.common import run_per_video

    ds = open_dataset("ytvis", data_root)

    def fn(r):
        with open(calls_log, "a") as f:
            f.write(f"{rank} {r.name}\n")
        if r.name == fail_video:
            raise S2DError(f"cannot read {r.name}")
        out = ds.skeleton(r.name)
        out.instances = list(r.gt.instances)
        return out

    try:
        ls = run_per_video("masks", Path(root), "fp1", ds, fn, progress=False)
        Path(root, f"result{rank}").write_text(json.dumps([v.name for v in ls]))
    except S2DError as e:
        Path(root, f"error{rank}").write_text(str(e))


def _two_ranks(tmp_path, data_root, fail_video=None):
    root, log = tmp_path / "set", tmp_path / "calls.txt"
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_generate_as_rank, args=(r, 2, str(root), str(data_root), fail_video, str(log)))
             for r in (0, 1)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    return root, [line.split() for line in log.read_text().splitlines()]


@pytest.fixture(scope="module")
def four_videos(tmp_path_factory):
    from s2d.data.demo import DemoConfig, write_demo_dataset

    root = tmp_path_factory.mktemp("four")
    write_demo_dataset(root, DemoConfig(num_videos=4, num_frames=3, height=32, width=32, seed=1))
    return root


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


# --------------------------------------------------------------------- I2: an unreadable frame in training
def test_unreadable_frame_raises_or_is_substituted_and_quarantined(tmp_path):
    """I2: a PNG truncated after the data set was opened. on_error=raise: the run stops naming video and frame.
    on_error=substitute: the run finishes, quarantine.jsonl names video and frame, data/substituted is logged,
    and the substitute is the same clip every time (deterministic)."""
    from s2d.data.clips import AugmentConfig, ClipDataset
    from s2d.data.datamodules import KeymaskSparseDataModule
    from s2d.data.demo import DemoConfig, write_demo_dataset
    from s2d.data.sources import open_dataset

    root = tmp_path / "data"
    write_demo_dataset(root, DemoConfig(num_videos=2, num_frames=6, height=48, width=64, seed=5))
    ds = open_dataset("ytvis", root)
    gt = ds.gt_labelset()
    png = root / "JPEGImages" / "demo_01" / "00002.png"
    png.write_bytes(png.read_bytes()[:200])
    bad = [i for i, (name, start) in enumerate(ClipDataset(ds, gt, length=3).items) if name == "demo_01"
           and start is not None and start <= 2 < start + 3]
    assert bad
    with pytest.raises(Exception, match=r"video 'demo_01', frame 2"):
        ClipDataset(ds, gt, length=3)[bad[0]]

    quarantine = tmp_path / "quarantine.jsonl"
    sub = ClipDataset(ds, gt, length=3, on_error="substitute", quarantine=quarantine, augment=AugmentConfig(size=(48, 64)))
    a, b = sub[bad[0]], sub[bad[0]]
    assert a["substituted"] == 1 and a["index"] != bad[0] and torch.equal(a["clip"], b["clip"])
    rec = json.loads(quarantine.read_text().splitlines()[0])
    assert rec["video"] == "demo_01" and rec["frame"] == 2 and rec["item"] == bad[0]

    class Logged(L.Callback):
        """What the module logged as data/substituted in the steps whose batch had a stand-in clip."""

        def __init__(self):
            self.pairs: list = []

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            if batch["substituted"]:
                self.pairs.append((batch["substituted"], float(trainer.callback_metrics["data/substituted"])))

    torch.manual_seed(0)
    module = DistillationModule(TINY, LOSS, OPTIM, ema_momentum=0.9, teacher_score=0.5, seed=0)
    data = KeymaskSparseDataModule(ds, gt, batch_size=2, seed=0, augment=AugmentConfig(size=(48, 64)),
                                   on_error="substitute", quarantine=str(tmp_path / "q2.jsonl"))
    logged = Logged()
    _fit(tmp_path / "fit", module, data, 6, [logged])
    assert logged.pairs and all(n == v for n, v in logged.pairs)
    assert all(json.loads(line)["video"] == "demo_01" for line in (tmp_path / "q2.jsonl").read_text().splitlines())


def test_a_changed_masks_setting_gives_new_sets_downstream_and_the_old_set_is_refused(compose):
    """A5: a different masks config -> a different masks set id, hence a different keymasks set; a reader asking
    for the new id refuses the old folder instead of reusing it."""
    from s2d.errors import IncompleteSetError
    from s2d.labelset.store import read_labelset
    from s2d.stages import keymasks as keymasks_stage
    from s2d.stages import masks as masks_stage
    from s2d.stages.data import data_fingerprint, load_data

    cfg_a = compose("debug=fast", "keymasks.overlays=false")
    cfg_b = compose("debug=fast", "keymasks.overlays=false", "masks.max_masks=3")
    ds = load_data(cfg_a)
    dfp = data_fingerprint(cfg_a, ds)
    masks_a, root_a, fp_a = masks_stage.compute(cfg_a, ds, dfp)
    masks_b, root_b, fp_b = masks_stage.compute(cfg_b, ds, dfp)
    assert fp_a != fp_b and root_a != root_b
    with pytest.raises(IncompleteSetError, match="fingerprint"):
        read_labelset(root_a, fp_b)
    km_a = keymasks_stage.compute(cfg_a, ds, masks_a, fp_a)
    km_b = keymasks_stage.compute(cfg_b, ds, masks_b, fp_b)
    assert km_a[2] != km_b[2] and km_a[3] != km_b[3]


# ------------------------------------------------------ validation during training, N7 and X3
def _val_data(sparse_data, **kw):
    from s2d.data.clips import AugmentConfig
    from s2d.data.datamodules import KeymaskSparseDataModule

    ds, gt = sparse_data
    return KeymaskSparseDataModule(ds, gt, batch_size=2, seed=0, augment=AugmentConfig(size=(48, 64)),
                                   val_videos=ds.names, **kw)


def _val_fit(root, module, data, max_steps, callbacks, every=2, **kw):
    tr = L.Trainer(max_steps=max_steps, accelerator="cpu", logger=False, enable_progress_bar=False,
                   enable_model_summary=False, default_root_dir=str(root), gradient_clip_val=0.01,
                   use_distributed_sampler=False, num_sanity_val_steps=0, val_check_interval=every,
                   check_val_every_n_epoch=None, callbacks=list(callbacks), **kw)
    tr.fit(module, data)
    return tr


class ValTrace(L.Callback):
    def __init__(self):
        self.values: list = []

    def on_validation_end(self, trainer, module):
        self.values.append((trainer.global_step, float(trainer.callback_metrics["val/AP"])))


class OracleOnFirstVideo(DistillationModule):
    """Validation 'predicts' the ground truth of demo_00 exactly and nothing elsewhere, so val/AP has a known,
    non-trivial value (module level: ddp_spawn pickles it)."""

    def val_tubes(self, item):
        from s2d.inference.video_predict import Tube
        from s2d.labelset import rle

        if item["video"] != "demo_00":
            return []
        gt = item["gt"]
        return [Tube({t: rle.decode(s) for t, s in enumerate(inst.segmentations) if s is not None}, [0.9 - 0.1 * k])
                for k, inst in enumerate(gt.instances)]


def _oracle_expected(sparse_data):
    from s2d.evaluation import evaluate_ap
    from s2d.labelset.types import Instance, Labelset, VideoLabels

    ds, _ = sparse_data
    gt = ds.gt_labelset()
    preds = [VideoLabels(v.name, v.height, v.width, v.length, [], [], v.id) for v in gt]
    preds[0].instances = [Instance(list(inst.segmentations), 0.9 - 0.1 * k) for k, inst in enumerate(gt[preds[0].name].instances)]
    return evaluate_ap(gt, Labelset(preds))["AP"]


def _oracle_module():
    torch.manual_seed(0)
    return OracleOnFirstVideo(TINY, LOSS, OPTIM, ema_momentum=0.9, teacher_score=0.5, seed=0)


def test_validation_logs_the_video_ap_of_the_teacher_predictions(sparse_data, tmp_path):
    """val/AP during training = evaluate_ap of what the validation predicted (here: a known oracle), at every
    validation step; a real teacher's validation runs too (whole-video inference)."""
    expected = _oracle_expected(sparse_data)
    assert 0.2 < expected < 0.9  # one of two videos found: neither 0 nor 1
    trace = ValTrace()
    _val_fit(tmp_path / "a", _oracle_module(), _val_data(sparse_data), 4, [trace])
    assert trace.values == [(2, pytest.approx(expected, abs=1e-7)), (4, pytest.approx(expected, abs=1e-7))]
    real = ValTrace()
    _val_fit(tmp_path / "b", _data(sparse_data)[0], _val_data(sparse_data), 2, [real])
    assert len(real.values) == 1 and 0.0 <= real.values[0][1] <= 1.0


class NaNAtSecondValidation(OracleOnFirstVideo):
    def on_validation_epoch_end(self):
        super().on_validation_epoch_end()
        if self.global_step == 4:
            self.log("val/AP", float("nan"))


def test_a_nan_validation_metric_never_becomes_the_best_checkpoint(sparse_data, tmp_path):
    """N7: val/AP is finite at step 2 and NaN at step 4: the best checkpoint stays the one of step 2."""
    from s2d.stages.distill import best_checkpoint

    torch.manual_seed(0)
    module = NaNAtSecondValidation(TINY, LOSS, OPTIM, ema_momentum=0.9, teacher_score=0.5, seed=0)
    best = best_checkpoint(tmp_path / "ck", "val/AP")
    trace = ValTrace()
    _val_fit(tmp_path, module, _val_data(sparse_data), 4, [trace, best])
    assert np.isfinite(trace.values[0][1]) and np.isnan(trace.values[1][1])
    assert [p.name for p in (tmp_path / "ck").iterdir()] == ["best-step000002.ckpt"]
    assert Path(best.best_model_path).name == "best-step000002.ckpt"


class ValReport(L.Callback):
    def __init__(self, folder: str):
        self.folder = folder

    def on_validation_end(self, trainer, module):
        with open(Path(self.folder) / f"val_rank{trainer.global_rank}.txt", "a") as f:
            f.write(f"{trainer.global_step} {float(trainer.callback_metrics['val/AP'])}\n")


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


class SignalRank1(L.Callback):
    """SIGUSR1 to rank 1 only, at step 2 (SLURM may deliver the signal to some tasks before others)."""

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        if trainer.global_step == 2 and trainer.global_rank == 1:
            os.kill(os.getpid(), signal.SIGUSR1)


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
