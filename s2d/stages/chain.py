"""The one place that chains the generation stages: data -> masks -> keymasks, each loaded when its artifact is
complete and computed otherwise. Every verb that needs upstream results starts here: ``s2d masks``,
``s2d keymasks`` and ``s2d distill`` are defined below, ``s2d run``/``final`` in ``s2d.stages.pipeline``. The
stage modules hold the work (each ``compute`` returns a ``StageOutput``) and never import this one."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from s2d.compute import compute_env
from s2d.data.full_rate import with_full_rate
from s2d.data.recordings import on_kept_frames, recordings
from s2d.data.sources import Dataset
from s2d.labelset.types import Labelset
from s2d.io.atomic import atomic_write_json, atomic_write_text
from s2d.stages.common import StageOutput, section
from s2d.version import code_version

log = logging.getLogger(__name__)


@dataclass
class Learning:
    """What the learned stages (distill, label, final, predict) read: the videos and their sparse labelset, or,
    with ``train.full_rate`` where keymask discovery ran over the recordings, the recordings and the keymasks of
    their every frame (``s2d.data.recordings``), under fingerprints of their own."""

    ds: Dataset
    keymasks: Labelset
    keymasks_fp: str
    data_fp: str
    recorded: bool = False  # whether ``ds`` holds recordings

    def on_videos(self, labels: Labelset | None, videos: Dataset) -> Labelset | None:
        """A labelset the learned stages made, on ``videos``' own frames (for scores and pictures)."""
        return on_kept_frames(labels, videos) if self.recorded and labels is not None else labels


@dataclass
class Upstream:
    ds: Dataset
    data_fp: str
    masks: StageOutput
    keymasks: StageOutput | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    learning: Learning | None = None  # set with the keymasks


def upstream(cfg: Any, through: str = "keymasks", check_validation: bool = False) -> Upstream:
    """data -> masks (-> keymasks when ``through="keymasks"``). ``check_validation``: refuse
    ``train.val_every_n_steps`` on data without ground truth before any work."""
    from s2d.stages import keymasks as keymasks_stage
    from s2d.stages import masks as masks_stage
    from s2d.stages.data import data_fingerprint, load_data

    if through not in ("masks", "keymasks"):
        raise ValueError(f"upstream through '{through}': masks | keymasks")
    t = time.perf_counter()
    ds = load_data(cfg)
    if check_validation:
        from s2d.stages.distill import validation_videos

        validation_videos(cfg, ds)
    up = Upstream(ds, data_fingerprint(cfg, ds), masks=None)  # type: ignore[arg-type]
    up.seconds["data"] = time.perf_counter() - t
    t = time.perf_counter()
    up.masks = masks_stage.compute(cfg, ds, up.data_fp)
    up.seconds["masks"] = time.perf_counter() - t
    if through == "keymasks":
        t = time.perf_counter()
        up.keymasks = keymasks_stage.compute(cfg, ds, up.masks.labels, up.masks.fingerprint, up.masks.folder)
        up.seconds["keymasks"] = time.perf_counter() - t
        up.learning = learning(cfg, up)
    return up


def learning(cfg: Any, up: Upstream) -> Learning:
    """The learned stages' data (``Learning``): the recordings where ``train.full_rate`` is on and the keymasks
    stage kept the keymasks of their every frame, else the videos."""
    from s2d.fingerprint import fingerprint
    from s2d.stages.keymasks import recording_labels

    km = up.keymasks
    rec = recording_labels(km, up.ds) if cfg.train.full_rate else None
    if rec is None:
        return Learning(up.ds, km.labels, km.fingerprint, up.data_fp)
    n = len(with_full_rate(up.ds))
    log.info("distill, label, final: learning from the recordings of %d video(s), %d frames instead of their own "
             "%d (train.full_rate; scored on the videos' own frames)", n,
             sum(len(r.video) if r.video.full_rate is None else r.video.full_rate.length for r in up.ds),
             sum(len(r.video) for r in up.ds))
    key = {"train.full_rate": "the recordings"}
    return Learning(recordings(up.ds), rec, fingerprint(km.fingerprint, key), fingerprint(up.data_fp, key),
                    recorded=True)


def run_masks(cfg: Any, run_dir: Path) -> dict:
    up = upstream(cfg, through="masks")
    ds, ls, root = up.ds, up.masks.labels, up.masks.folder
    n = sum(len(v.instances) for v in ls)
    frames = sum(v.length for v in ls)
    print(f"masks: {n} masks on {frames} frames ({n / max(frames, 1):.2f} per frame) -> {root}")
    if ds.has_gt:
        from s2d.evaluation.frame_ap import frame_ap

        s = frame_ap(ds.gt_labelset(), ls)
        print(f"masks: frame-level class-agnostic AP {100 * s['AP']:.1f}, AP50 {100 * s['AP50']:.1f}, "
              f"AR10 {100 * s['AR10']:.1f}")
    return {"labelset": str(root)}


def run_keymasks(cfg: Any, run_dir: Path) -> dict:
    from s2d.stages.evaluate import format_table, score

    up = upstream(cfg, through="keymasks")
    ds, ls, baseline, root = up.ds, up.keymasks.labels, up.keymasks.baseline, up.keymasks.folder
    print((root / "summary.md").read_text())
    result: dict = {"labelset": str(root)}
    if ds.has_gt:
        gt = ds.gt_labelset()
        rows = {"single-frame masks + IoU linker": score(gt, baseline, with_jf=False),
                "sparse keymasks": score(gt, ls, with_jf=False)}
        table = format_table(rows)
        print(table)
        atomic_write_json(run_dir / "metrics.json", {"stage": "keymasks", "config": section(cfg, "keymasks"),
                                                      "metrics": rows, "complete": True, "code_version": code_version(),
                                                      "compute": compute_env()})
        atomic_write_text(run_dir / "metrics.md", table)
        result["metrics"] = rows
    log.info("keymasks: overlays in %s", root / "overlays")
    return result


def run_distill(cfg: Any, run_dir: Path) -> dict:
    up = upstream(cfg, through="keymasks", check_validation=True)
    lr = up.learning
    from s2d.stages.distill import train

    return {"checkpoint": str(train(cfg, run_dir, "distill", lr.ds, lr.keymasks, "sparse", lr.keymasks_fp,
                                    val_ds=up.ds))}
