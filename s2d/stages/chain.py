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
from s2d.data.sources import Dataset
from s2d.io.atomic import atomic_write_json, atomic_write_text
from s2d.stages.common import StageOutput, section
from s2d.version import code_version

log = logging.getLogger(__name__)


@dataclass
class Upstream:
    ds: Dataset
    data_fp: str
    masks: StageOutput
    keymasks: StageOutput | None = None
    seconds: dict[str, float] = field(default_factory=dict)


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
    return up


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
    km = up.keymasks
    from s2d.stages.distill import train

    return {"checkpoint": str(train(cfg, run_dir, "distill", up.ds, km.labels, "sparse", km.fingerprint))}
