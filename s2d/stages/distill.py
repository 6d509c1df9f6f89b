"""Stage "distill": sparse-to-dense distillation (student + EMA teacher, Temporal DropLoss) on the sparse
keymask labelset. Runs the earlier stages first (skipping finished ones), trains with Lightning, and keeps
``last.ckpt`` plus the latest periodic checkpoint in ``<run>/checkpoints/<stage>-<fingerprint>/``: a rerun of the
same command resumes from the newest valid checkpoint there (periodic, ``on_exception`` after an error or
SIGTERM, ``hpc_ckpt_<n>`` after SLURM's SIGUSR1) instead of starting over, mid-epoch included, and a change to
the labels, the model, the loss, the solver or the augmentation starts a new folder instead of resuming a
stale one. ``resume.checkpoint`` resumes from an explicit file, with the checks of ``s2d.lit.run_stamp``."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from s2d.stages.common import section

log = logging.getLogger(__name__)


def build(cfg: Any, ds, labels, mode: str = "sparse", quarantine: Path | None = None, val_ds=None):
    """(module, data module) of a learning stage on ``ds`` and its ``labels``; ``val_ds``: the videos validation
    scores (``train.val_every_n_steps``; default ``ds``: the recordings the stage may learn from have no ground
    truth, their videos do)."""
    import torch

    from s2d.data.clips import AugmentConfig
    from s2d.data.datamodules import ClipDataModule
    from s2d.lit.distillation import DenseModule, DistillationModule

    t = cfg.train
    aug = AugmentConfig.of(t)
    val_ds = ds if val_ds is None else val_ds
    data = ClipDataModule(ds, labels, mode, t.batch_size, t.clip_length, t.num_workers, t.fallback_radius,
                          cfg.seed, aug, on_error=t.on_error, retries=t.substitute_retries,
                          quarantine=None if quarantine is None else str(quarantine),
                          val_videos=validation_videos(cfg, val_ds), val_data=val_ds,
                          teach_absent=teaches_absent(cfg, mode),
                          frame_cache_mb=t.frame_cache_mb, score_targets=scores_as_targets(cfg, mode),
                          teacher_scores=teacher_scores(cfg, mode),
                          drop_cut_frames=drops_cut_frames(cfg, mode), repeat_iou=repeat_iou(cfg, mode))
    cls = DistillationModule if mode == "sparse" else DenseModule
    # initial weights depend on the seed only, not on whatever consumed the global RNG before this point
    torch.manual_seed(cfg.seed)
    lab = cfg.label
    val = {"score_thr": lab.eval_score_thr, "window": lab.window, "overlap": lab.overlap,
           "link_iou": lab.link_iou, "nms_iou": lab.nms_iou, "input_scale": lab.input_scale,
           "mask_score": lab.mask_score, "overlap_decay": lab.overlap_decay,
           "fragments_last": lab.fragments_last,
           "crop_size": list(t.crop_size), "crop_scale": list(t.crop_scale)}
    module = cls(section(cfg, "model"), section(cfg, "loss"), section(cfg, "optim"), **section(cfg, "distill"),
                 seed=cfg.seed, val=val)
    return module, data


def warn_if_coarse(ds, train: Any, stage: str) -> None:
    """Say so when the crops teach the model the data's most common frame size at under half its scale."""
    from collections import Counter

    from s2d.data.clips import AugmentConfig
    from s2d.inference.scale import coarse_scale_note

    sizes = Counter(tuple(r.video.size) for r in ds)
    if sizes:
        note = coarse_scale_note(sizes.most_common(1)[0][0], AugmentConfig.of(train))
        if note:
            log.warning("%s: %s", stage, note)


# Below this rate the solver is one for a trained start (the method's 1e-6, experiment=paper); from random
# weights it barely moves them (the CPU schedule trains from scratch at 1e-3, the GPU tier's short runs at 1e-4).
COLD_START_LR = 1e-5


def cold_start_note(model: Any, lr: float) -> str | None:
    """Why a run from random weights at a trained start's learning rate will not learn, or None: a whole GPU
    schedule spent on a model that stays near its initialisation is the costliest mistake the paper recipe invites."""
    if model.pretrained or model.backbone_weights or lr >= COLD_START_LR:
        return None
    return (f"optim.lr={lr:g} is a rate for a trained start, but neither model.pretrained nor "
            "model.backbone_weights is set: the model starts from random weights and will barely learn. Give a "
            "local checkpoint (model.pretrained=/w/cutler_m2f_rn50.pth, or model.backbone_weights=/w/resnet50.pth "
            "for the backbone alone), or raise optim.lr (from scratch: 1e-4 to 1e-3)")


def validation_videos(cfg: Any, ds) -> list[str] | None:
    """The videos scored during training (train.val_every_n_steps), or None. Called right after the data is
    opened, so a set without ground truth is refused before any work."""
    t = cfg.train
    if not t.val_every_n_steps:
        return None
    names = [r.name for r in ds if r.gt is not None][: t.val_videos]
    if not names:
        from s2d.errors import ConfigError

        raise ConfigError("train.val_every_n_steps", f"validation needs ground truth and {ds.root} has none; "
                          "set train.val_every_n_steps=null")
    return names


def trainer(cfg: Any, run_dir: Path, stage: str, ckpt_dir: Path):
    """The Lightning Trainer of a learning stage. Everything it writes on its own (SLURM/exception
    checkpoints) goes to the stage's checkpoint folder, never to a folder another stage or run shares."""
    import lightning as L
    from lightning.pytorch.callbacks import ModelCheckpoint, OnExceptionCheckpoint
    from lightning.pytorch.loggers import CSVLogger
    from lightning.pytorch.plugins.environments import SLURMEnvironment

    from s2d.lit import determinism
    from s2d.lit.amp_skips import AmpSkipCounter
    from s2d.lit.checkpoint_io import AtomicCheckpointIO
    from s2d.lit.requeue import RequeueOnSignal
    from s2d.lit.run_stamp import RunStamp
    from s2d.lit.speed import SpeedMonitor

    t = cfg.train
    loggers = [CSVLogger(str(run_dir / "logs"), name=stage)]  # one CSV folder per launch: never overwritten
    if cfg.logger.wandb:
        from s2d.stages.loggers import wandb_logger

        wb = wandb_logger(cfg, run_dir, stage)
        if wb is not None:
            loggers.append(wb)
    # last.ckpt plus the latest periodic checkpoint (no monitor: "top 1" is simply the newest)
    ckpt = ModelCheckpoint(dirpath=ckpt_dir, save_last=True, save_top_k=1,
                           every_n_train_steps=t.checkpoint_every_n_steps, filename="step{step:06d}",
                           auto_insert_metric_name=False)
    callbacks = [ckpt,
                 # an exception or SIGTERM (SLURM time limit, scancel) ends the run with a checkpoint of the
                 # last finished step: at most the step in progress is lost
                 OnExceptionCheckpoint(dirpath=str(ckpt_dir), filename="on_exception"),
                 RequeueOnSignal(ckpt_dir),
                 RunStamp(config_dict(cfg)),
                 AmpSkipCounter(),
                 SpeedMonitor(stage, t.log_every_n_steps)]
    if t.monitor:
        callbacks.append(best_checkpoint(ckpt_dir, t.monitor, t.monitor_mode))
    if cfg.fault.kind:
        from s2d.lit.fault_injector import FaultInjector

        callbacks.append(FaultInjector(cfg.fault.kind, cfg.fault.step, cfg.fault.rank))
    quiet_lightning()
    on_cuda = determinism.uses_cuda(t.accelerator)
    deterministic, note = determinism.trainer_mode(t.deterministic, on_cuda)
    if note:
        log.warning(note)
    if on_cuda:
        determinism.prepare_cuda(deterministic)
    plugins: list = [AtomicCheckpointIO()]
    if SLURMEnvironment.detect():
        plugins.append(SLURMEnvironment(auto_requeue=False))  # RequeueOnSignal does it, at a step boundary
    return L.Trainer(max_steps=t.max_steps, accelerator=t.accelerator, devices=t.devices, num_nodes=t.num_nodes,
                     strategy=t.strategy, precision=t.precision, gradient_clip_val=t.gradient_clip_val,
                     deterministic=deterministic,
                     log_every_n_steps=t.log_every_n_steps, default_root_dir=str(ckpt_dir),
                     logger=loggers, callbacks=callbacks, plugins=plugins,
                     enable_progress_bar=cfg.progress, use_distributed_sampler=False, num_sanity_val_steps=0,
                     # validation every N optimizer steps, across epoch boundaries (epochs are short)
                     val_check_interval=t.val_every_n_steps, check_val_every_n_epoch=None if t.val_every_n_steps else 1,
                     limit_val_batches=1.0 if t.val_every_n_steps else 0)


class _DropAdverts(logging.Filter):
    """Lightning's advert, and its note on *saving* full checkpoints ("`weights_only` was not set"), which reads
    as if checkpoints were loaded unsafely (they are loaded with weights_only=True)."""

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        return "litlogger" not in msg and "`weights_only` was not set" not in msg


# Lightning warnings that are wrong for this suite: the teacher is in eval mode on purpose, resuming is decided
# here (not by Lightning's "last"), and the pytree deprecation is Lightning's own business.
_MISLEADING = (r".*fit\(ckpt_path=None\)` was called without a model", r".*fit\(ckpt_path=\"last\"\) is set, but there is",
               r".*module\(s\) in eval mode at the start of training", r".*isinstance\(treespec, LeafSpec\)` is deprecated")


def quiet_lightning() -> None:
    """Lightning's lines once (through the run's own logging, console and log file), without its adverts and
    without warnings that do not apply here."""
    import warnings

    root_prints = bool(logging.getLogger().handlers)  # Hydra configured it: console and the run's log file
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        lg = logging.getLogger(name)
        if root_prints:  # Lightning's own stderr handler would print every line a second time
            lg.handlers.clear()
            lg.propagate = True
    for h in logging.getLogger().handlers:  # filters on handlers see records propagated from every child logger
        if not any(isinstance(f, _DropAdverts) for f in h.filters):
            h.addFilter(_DropAdverts())
    for msg in _MISLEADING:
        warnings.filterwarnings("ignore", message=msg)


def best_checkpoint(ckpt_dir: Path, monitor: str, mode: str = "max"):
    """best-step<k>.ckpt: the step with the best ``monitor`` so far. A non-finite value counts as the worst
    possible one (Lightning's rule), so a NaN metric never becomes the best checkpoint."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    return ModelCheckpoint(dirpath=ckpt_dir, monitor=monitor, mode=mode, save_top_k=1, save_last=False,
                           filename="best-step{step:06d}", auto_insert_metric_name=False)


def config_dict(cfg: Any) -> dict:
    """The resolved config as plain types (stored in every checkpoint)."""
    from omegaconf import OmegaConf

    return OmegaConf.to_container(cfg, resolve=True, enum_to_str=True) if OmegaConf.is_config(cfg) else dict(cfg)


# train keys that change how long or how visibly a run trains, not what it learns: changing them resumes the
# same checkpoint folder (e.g. more steps) instead of starting a new one
_RESUMABLE_TRAIN_KEYS = ("max_steps", "log_every_n_steps", "checkpoint_every_n_steps", "num_workers", "frame_cache_mb",
                         "on_error", "substitute_retries", "val_every_n_steps", "val_videos", "monitor",
                         "monitor_mode", "deterministic")


# bump when training with the same config learns something else (2: empty teacher tubes are no targets; 3: nor
# are tubes the crop leaves empty, and targets the matcher cannot tell apart are matched in index order)
TRAIN_VERSION = 3


def teaches_absent(cfg: Any, mode: str) -> bool:
    """Whether a stage trained on ``mode`` labels teaches the empty frames of their tubes as absent
    (``final.teach_absent``: the dense labelset's teacher tubes; never the sparse keymasks)."""
    return mode != "sparse" and bool(cfg.final.teach_absent)


def drops_cut_frames(cfg: Any, mode: str) -> bool:
    """Whether a stage that teaches empty frames as absent leaves out the frames ``label.one_identity`` cut from a
    tube (``final.drop_cut_frames``)."""
    return teaches_absent(cfg, mode) and bool(cfg.final.drop_cut_frames)


def scores_as_targets(cfg: Any, mode: str) -> bool:
    """Whether a stage trained on ``mode`` labels learns their scores as class targets (``final.score_targets``:
    the dense labelset's; the keymasks' scores are a discovery heuristic, never a target)."""
    return mode != "sparse" and bool(cfg.final.score_targets)


def teacher_scores(cfg: Any, mode: str) -> bool:
    """Whether the class targets a stage learns are the teacher's foreground probabilities of the labelset's tubes
    rather than their ranked scores (``final.teacher_scores``, with ``final.score_targets``)."""
    return scores_as_targets(cfg, mode) and bool(cfg.final.teacher_scores)


def repeat_iou(cfg: Any, mode: str) -> float | None:
    """The clip IoU at which a stage trained on ``mode`` labels leaves out a target that repeats a higher-scored
    one (``final.repeat_iou``: the dense labelset's tubes; keymask instances never repeat each other)."""
    return cfg.final.repeat_iou if mode != "sparse" else None


def starts_from_scratch(cfg: Any, mode: str) -> bool:
    """Whether a stage trained on ``mode`` labels starts from the distill stage's weights rather than those of the
    teacher that made its labels (``final.init=scratch``; the distill stage always starts there)."""
    return mode != "sparse" and cfg.final.init == "scratch"


def checkpoint_dir(cfg: Any, run_dir: Path, stage: str, upstream_fp: str, mode: str = "sparse") -> Path:
    """checkpoints/<stage>-<fingerprint>: the labels trained on plus every setting that changes the model."""
    from s2d.fingerprint import fingerprint

    # full_rate acts through the labels trained on (their fingerprint says so where it acts)
    train = {k: v for k, v in section(cfg, "train").items() if k not in _RESUMABLE_TRAIN_KEYS and k != "full_rate"}
    # present only when on, so stages trained before the key existed keep their fingerprints
    absent = [{"teach_absent": True}] if teaches_absent(cfg, mode) else []
    absent += [{"score_targets": True}] if scores_as_targets(cfg, mode) else []
    absent += [{"teacher_scores": True}] if teacher_scores(cfg, mode) else []
    absent += [{"drop_cut_frames": True}] if drops_cut_frames(cfg, mode) else []
    absent += [{"repeat_iou": repeat_iou(cfg, mode)}] if repeat_iou(cfg, mode) is not None else []
    absent += [{"init": "scratch"}] if starts_from_scratch(cfg, mode) else []
    fp = fingerprint(stage, TRAIN_VERSION, upstream_fp, cfg.seed, section(cfg, "model"), section(cfg, "loss"),
                     section(cfg, "optim"), section(cfg, "distill"), train, *absent)
    return run_dir / "checkpoints" / f"{stage}-{fp}"


def train(cfg: Any, run_dir: Path, stage: str, ds, labels, mode: str, upstream_fp: str,
          init: Path | None = None, val_ds=None) -> Path:
    """Train (or resume, or skip when finished) one learning stage; returns its final checkpoint. ``val_ds``: the
    videos validation scores, when not ``ds`` (``build``)."""
    import torch
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    from s2d.errors import S2DError
    from s2d.lit.checkpoint_io import newest_valid_checkpoint
    from s2d.lit.run_stamp import check_resume

    folder = checkpoint_dir(cfg, run_dir, stage, upstream_fp, mode)
    last = folder / "last.ckpt"
    ckpt = None
    if cfg.resume.checkpoint:
        resume = Path(cfg.resume.checkpoint)
        if not resume.is_file():
            raise S2DError(f"resume.checkpoint: {resume} does not exist")
        ckpt = torch.load(resume, map_location="cpu", weights_only=True)
        step = int(ckpt["global_step"])
    else:
        resume, step = newest_valid_checkpoint(folder)
    if resume is not None and step == cfg.train.max_steps and not cfg.resume.checkpoint:
        log.info("%s: finished checkpoint found (%d steps), skipping", stage, step)
        return resume
    if not any(v.instances for v in labels):
        why = ("the masks found nothing that moves or stands out (see the keymasks summary.md): try more frames "
               "(data.max_frames, data.stride), a larger data.short_side, or other masks (masks=motion_maskcut, "
               "masks=imported)") if mode == "sparse" else (
              f"no prediction of the distilled teacher reached label.score_thr={cfg.label.score_thr}: train the "
              "distill stage longer (train.max_steps) or lower label.score_thr")
        raise S2DError(f"{stage}: the {mode} labelset has no instance in any of its {len(labels)} video(s), so "
                       f"there is nothing to train on; {why}")
    module, data = build(cfg, ds, labels, mode, quarantine=run_dir / "quarantine.jsonl", val_ds=val_ds)
    if resume is None:
        warn_if_coarse(ds, cfg.train, stage)
        cold = cold_start_note(cfg.model, cfg.optim.lr) if init is None else None  # a later stage starts trained
        if cold:
            log.warning("%s: %s", stage, cold)
        if init is None and starts_from_scratch(cfg, mode):
            log.info("%s: starts from the distill stage's initial weights, not from the teacher that made its "
                     "labels (final.init=scratch)", stage)
    if resume is not None:
        if ckpt is None:
            ckpt = torch.load(resume, map_location="cpu", weights_only=True)
        check_resume(ckpt, resume, config_dict(cfg), module.state_dict(), cfg.train.max_steps,
                     cfg.resume.allow_config_change)
        del ckpt  # Lightning loads it itself; do not hold a second copy in memory while training
        log.info("%s: resuming from %s (step %d)", stage, resume, step)
    if init is not None and resume is None:
        # start both student and teacher from the previous stage's teacher (EMA) weights
        from s2d.models.weights import load_pretrained, read_checkpoint

        tensors = read_checkpoint(init, key="init")
        for net in (module.student, module.teacher):
            load_pretrained(net, init, which="teacher", key="init", tensors=tensors)
    tr = trainer(cfg, run_dir, stage, folder)
    try:
        tr.fit(module, data, ckpt_path=str(resume) if resume is not None else None, weights_only=True)
        # periodic checkpoints may not fall on the last step: the final state is always written as last.ckpt
        tr.save_checkpoint(last)
    except SIGTERMException:
        # SLURM's time limit or scancel: Lightning stopped after the current step and OnExceptionCheckpoint
        # saved it. Exit like a process killed by SIGTERM (128 + 15), so the job is not recorded as a success.
        log.error("%s: stopped by SIGTERM at step %d; %s holds it, rerun the same command to resume",
                  stage, tr.global_step, folder / "on_exception.ckpt")
        raise SystemExit(143) from None
    finally:
        from s2d.stages.loggers import finish_wandb

        finish_wandb()
    log.info("%s: checkpoints in %s, losses in %s", stage, last.parent, run_dir / "logs" / stage)
    return last
