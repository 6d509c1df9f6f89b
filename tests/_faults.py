"""Helpers shared by the fault-tolerance tests (test_resume, test_signals, test_determinism, test_two_ranks,
test_generation_ranks, test_data_faults, test_validation). Module level, so ddp_spawn can pickle them."""
from __future__ import annotations

import csv
import json
import multiprocessing as mp
import os
import signal
from pathlib import Path

import lightning as L
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
    from s2d.data.datamodules import ClipDataModule
    from s2d.lit.distillation import DistillationModule

    torch.manual_seed(seed)
    optim = {**OPTIM, "lr": lr, "milestones": [3], "gamma": 0.5}  # the LR changes before the interruption
    module = DistillationModule(TINY, LOSS, optim, ema_momentum=0.9, teacher_score=0.5, distill_warmup=0, seed=seed)
    data = ClipDataModule(*sparse_data, "sparse", batch_size=2, seed=seed, num_workers=num_workers,
                                   augment=AugmentConfig(size=(48, 64)))
    return module, data


def _fit(root, module, data, max_steps, callbacks=(), ckpt_path=None):
    tr = L.Trainer(max_steps=max_steps, accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                   enable_model_summary=False, default_root_dir=str(root), gradient_clip_val=0.01,
                   use_distributed_sampler=False, callbacks=list(callbacks))
    tr.fit(module, data, ckpt_path=ckpt_path)
    return tr


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
    module = _DDPModule(TINY, LOSS, {**OPTIM}, ema_momentum=0.9, teacher_score=0.5, distill_warmup=0, seed=0, **kw)
    module.folder, module.empty_rank = str(tmp_path), empty_rank
    return module


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


def _val_data(sparse_data, **kw):
    from s2d.data.clips import AugmentConfig
    from s2d.data.datamodules import ClipDataModule

    ds, gt = sparse_data
    return ClipDataModule(ds, gt, "sparse", batch_size=2, seed=0, augment=AugmentConfig(size=(48, 64)),
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
    return OracleOnFirstVideo(TINY, LOSS, OPTIM, ema_momentum=0.9, teacher_score=0.5, distill_warmup=0, seed=0)


class NaNAtSecondValidation(OracleOnFirstVideo):
    def on_validation_epoch_end(self):
        super().on_validation_epoch_end()
        if self.global_step == 4:
            self.log("val/AP", float("nan"))


class ValReport(L.Callback):
    def __init__(self, folder: str):
        self.folder = folder

    def on_validation_end(self, trainer, module):
        with open(Path(self.folder) / f"val_rank{trainer.global_rank}.txt", "a") as f:
            f.write(f"{trainer.global_step} {float(trainer.callback_metrics['val/AP'])}\n")


class SignalRank1(L.Callback):
    """SIGUSR1 to rank 1 only, at step 2 (SLURM may deliver the signal to some tasks before others)."""

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        if trainer.global_step == 2 and trainer.global_rank == 1:
            os.kill(os.getpid(), signal.SIGUSR1)
