"""Stage "distill": sparse-to-dense distillation (student + EMA teacher, Temporal DropLoss) on the sparse
keymask labelset. Runs the earlier stages first (skipping finished ones), trains with Lightning, and keeps
``last.ckpt`` plus the latest periodic checkpoint in ``<run>/checkpoints/<stage>-<fingerprint>/``: a rerun of the
same command resumes from the last checkpoint instead of starting over, and a change to the labels, the
model, the loss, the solver or the augmentation starts a new folder instead of resuming a stale one."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from s2d.stages.common import section

log = logging.getLogger(__name__)


def build(cfg: Any, ds, labels, mode: str = "sparse"):
    import torch

    from s2d.data.clips import AugmentConfig
    from s2d.data.datamodules import ClipDataModule
    from s2d.lit.distillation import DenseModule, DistillationModule

    t = cfg.train
    aug = AugmentConfig(size=tuple(t.crop_size), crop_scale=tuple(t.crop_scale), rotation=t.rotation)
    data = ClipDataModule(ds, labels, mode, t.batch_size, t.clip_length, t.num_workers, t.fallback_radius,
                          cfg.seed, aug)
    cls = DistillationModule if mode == "sparse" else DenseModule
    # initial weights depend on the seed only, not on whatever consumed the global RNG before this point
    torch.manual_seed(cfg.seed)
    module = cls(section(cfg, "model"), section(cfg, "loss"), section(cfg, "optim"), **section(cfg, "distill"),
                 seed=cfg.seed)
    return module, data


def wandb_logger(cfg: Any, run_dir: Path, stage: str):
    """W&B with a stable run id (run id + stage), so a requeued or resumed job continues the same W&B run.
    If W&B cannot start (no network, bad credentials) training goes on with the CSV logger and a warning."""
    import os

    from lightning.pytorch.loggers import WandbLogger

    os.environ.setdefault("WANDB_MODE", cfg.logger.mode)
    try:
        wb = WandbLogger(project=cfg.logger.project, entity=cfg.logger.entity, name=f"{cfg.run_id}/{stage}",
                         id=f"{cfg.run_id}-{stage}".replace("/", "_"), resume="allow", save_dir=str(run_dir),
                         job_type=stage, config={k: section(cfg, k) for k in ("data", "model", "loss", "optim",
                                                                             "train", "distill", "keymasks")})
        wb.experiment  # starts the run now, so a failure shows here and not in the middle of training
        return wb
    except Exception as e:  # noqa: BLE001 - any failure of an optional logger must not stop training
        log.warning("W&B could not start (%s); continuing with the CSV logger only", e)
        return None


def trainer(cfg: Any, run_dir: Path, stage: str, ckpt_dir: Path):
    import lightning as L
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.loggers import CSVLogger

    from s2d.lit.checkpoint_io import AtomicCheckpointIO

    t = cfg.train
    loggers = [CSVLogger(str(run_dir / "logs"), name=stage)]  # one CSV folder per launch: never overwritten
    if cfg.logger.wandb:
        wb = wandb_logger(cfg, run_dir, stage)
        if wb is not None:
            loggers.append(wb)
    # last.ckpt plus the latest periodic checkpoint (no monitor: "top 1" is simply the newest)
    ckpt = ModelCheckpoint(dirpath=ckpt_dir, save_last=True, save_top_k=1,
                           every_n_train_steps=t.checkpoint_every_n_steps, filename="step{step:06d}",
                           auto_insert_metric_name=False)
    callbacks = [ckpt]
    if cfg.fault.kind:
        from s2d.lit.fault_injector import FaultInjector

        callbacks.append(FaultInjector(cfg.fault.kind, cfg.fault.step, cfg.fault.rank))
    return L.Trainer(max_steps=t.max_steps, accelerator=t.accelerator, devices=t.devices, num_nodes=t.num_nodes,
                     strategy=t.strategy, precision=t.precision, gradient_clip_val=t.gradient_clip_val,
                     log_every_n_steps=t.log_every_n_steps, default_root_dir=str(run_dir),
                     logger=loggers, callbacks=callbacks, plugins=[AtomicCheckpointIO()],
                     enable_progress_bar=cfg.progress, use_distributed_sampler=False, num_sanity_val_steps=0)


# train keys that change how long or how visibly a run trains, not what it learns: changing them resumes the
# same checkpoint folder (e.g. more steps) instead of starting a new one
_RESUMABLE_TRAIN_KEYS = ("max_steps", "log_every_n_steps", "checkpoint_every_n_steps", "num_workers")


def checkpoint_dir(cfg: Any, run_dir: Path, stage: str, upstream_fp: str) -> Path:
    """checkpoints/<stage>-<fingerprint>: the labels trained on plus every setting that changes the model."""
    from s2d.fingerprint import fingerprint

    train = {k: v for k, v in section(cfg, "train").items() if k not in _RESUMABLE_TRAIN_KEYS}
    fp = fingerprint(stage, upstream_fp, cfg.seed, section(cfg, "model"), section(cfg, "loss"),
                     section(cfg, "optim"), section(cfg, "distill"), train)
    return run_dir / "checkpoints" / f"{stage}-{fp}"


def train(cfg: Any, run_dir: Path, stage: str, ds, labels, mode: str, upstream_fp: str,
          init: Path | None = None) -> Path:
    """Train (or resume, or skip when finished) one learning stage; returns its final checkpoint."""
    import torch

    from s2d.lit.checkpoint_io import newest_valid_checkpoint

    folder = checkpoint_dir(cfg, run_dir, stage, upstream_fp)
    last = folder / "last.ckpt"
    resume, step = newest_valid_checkpoint(folder)
    if resume is not None:
        if step >= cfg.train.max_steps:
            log.info("%s: finished checkpoint found (%d steps), skipping", stage, step)
            return resume
        log.info("%s: resuming from %s (step %d)", stage, resume, step)
    module, data = build(cfg, ds, labels, mode)
    if init is not None and resume is None:
        # start both student and teacher from the previous stage's teacher (EMA) weights
        sd = torch.load(init, map_location="cpu", weights_only=True)["state_dict"]
        teacher = {k[len("teacher."):]: v for k, v in sd.items() if k.startswith("teacher.")}
        module.student.load_state_dict(teacher)
        module.teacher.load_state_dict(teacher)
    tr = trainer(cfg, run_dir, stage, last.parent)
    tr.fit(module, data, ckpt_path=str(resume) if resume is not None else None)
    # periodic checkpoints may not fall on the last step: the final state is always written as last.ckpt
    tr.save_checkpoint(last)
    log.info("%s: checkpoints in %s, losses in %s", stage, last.parent, run_dir / "logs" / stage)
    return last


def run(cfg: Any, run_dir: Path) -> dict:
    from s2d.stages import keymasks as keymasks_stage
    from s2d.stages import masks as masks_stage
    from s2d.stages.data import data_fingerprint, load_data

    ds = load_data(cfg)
    masks, _, masks_fp = masks_stage.compute(cfg, ds, data_fingerprint(cfg, ds))
    sparse, _, _, km_fp = keymasks_stage.compute(cfg, ds, masks, masks_fp)
    return {"checkpoint": str(train(cfg, run_dir, "distill", ds, sparse, "sparse", km_fp))}
