"""The run's loggers: W&B with a stable id per run folder (a requeued job continues its W&B run), ended between
stages, and the report's numbers and pictures as one W&B run. The CSV logger is always on (stages/distill.py)."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from s2d.stages.common import section

log = logging.getLogger(__name__)


def wandb_run_id(cfg: Any, run_dir: Path, stage: str) -> str:
    """<run_id>-<stage>-<hash of the run folder>: the same for every launch of one job (a requeued job keeps its
    folder), different for the jobs of a sweep even when they share name and seed (their folders differ)."""
    import hashlib

    folder = hashlib.sha1(str(Path(run_dir).resolve()).encode()).hexdigest()[:8]
    return f"{cfg.run_id[:40]}-{stage}-{folder}".replace("/", "_")


def finish_wandb() -> None:
    """End the W&B run of this process, if any, so that the next stage or the next job of a sweep run in this
    process starts its own run instead of writing into this one."""
    import sys

    wandb = sys.modules.get("wandb")
    if wandb is not None and wandb.run is not None:
        wandb.finish()


def wandb_logger(cfg: Any, run_dir: Path, stage: str):
    """W&B with a stable run id (``wandb_run_id``), so a requeued or resumed job continues the same W&B run.
    If W&B cannot start (no network, bad credentials) training goes on with the CSV logger and a warning."""
    import os

    from lightning.pytorch.loggers import WandbLogger

    os.environ.setdefault("WANDB_MODE", str(cfg.logger.mode))
    finish_wandb()
    try:
        wb = WandbLogger(project=cfg.logger.project, entity=cfg.logger.entity, name=f"{cfg.run_id}/{stage}",
                         id=wandb_run_id(cfg, run_dir, stage), resume="allow", save_dir=str(run_dir),
                         job_type=stage, config={k: section(cfg, k) for k in ("data", "model", "loss", "optim",
                                                                             "train", "distill", "keymasks")})
        wb.experiment  # starts the run now, so a failure shows here and not in the middle of training
        return wb
    except Exception as e:  # noqa: BLE001 - any failure of an optional logger must not stop training
        log.warning("W&B could not start (%s); continuing with the CSV logger only", e)
        return None


def log_report_to_wandb(cfg: Any, run_dir: Path, metrics: dict[str, dict[str, float]]) -> bool:
    """The report's numbers (one row per stage), its pictures and the resolved config as one W&B run
    (id from ``wandb_run_id``, job_type "report"). Returns False, with a warning, when W&B cannot start."""
    import os

    os.environ.setdefault("WANDB_MODE", str(cfg.logger.mode))
    try:
        import wandb

        finish_wandb()
        run = wandb.init(project=cfg.logger.project, entity=cfg.logger.entity, id=wandb_run_id(cfg, run_dir, "report"),
                         name=f"{cfg.run_id}/report", job_type="report", resume="allow", dir=str(run_dir),
                         config={k: section(cfg, k) for k in ("data", "masks", "tracker", "keymasks", "model",
                                                             "loss", "optim", "train", "distill", "label")})
        keys = sorted({k for r in metrics.values() for k in r})
        run.log({"metrics": wandb.Table(columns=["stage", *keys],
                                        data=[[st, *[r.get(k) for k in keys]] for st, r in metrics.items()])})
        run.summary.update({f"{st}/{k}": v for st, r in metrics.items() for k, v in r.items()})
        from s2d.report.per_object import CSV_NAME

        per_object = run_dir / CSV_NAME  # the report's J&F per object, every object
        if per_object.exists():
            import csv

            head, *rows = list(csv.reader(per_object.read_text().splitlines()))
            run.log({"jf_per_object": wandb.Table(columns=head, data=[[r[0], int(r[1]), *map(float, r[2:])]
                                                                      for r in rows])})
        for name in ("metrics.png", "stages.png"):
            if (run_dir / name).exists():
                run.log({name.removesuffix(".png"): wandb.Image(str(run_dir / name))})
        run.finish()
        return True
    except Exception as e:  # noqa: BLE001 - an optional logger must never fail the run
        log.warning("W&B report logging failed (%s); the report is in %s", e, run_dir)
        return False
