"""Stage "eval": score predictions against ground truth and write metrics json + a readable table."""
from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

from s2d.errors import S2DError
from s2d.evaluation import STAT_NAMES, davis_jf, evaluate_ap
from s2d.io.atomic import atomic_write_json, atomic_write_text
from s2d.labelset.types import Labelset
from s2d.labelset.ytvis import predictions_from_json, read_json_file

log = logging.getLogger(__name__)

JF_NAMES = ("J&F-Mean", "J-Mean", "J-Recall", "F-Mean", "F-Recall")


def score(gt: Labelset, pred: Labelset, voids: dict | None = None, with_jf: bool = True,
          workers: int | None = None, jf_per_object: list | None = None) -> dict[str, float]:
    """Video AP/AR (in percent, as papers report them) and, if asked, DAVIS J&F (percent); ``jf_per_object``
    receives each object's (video, id, J-Mean, F-Mean) as fractions (``davis_jf``)."""
    ap = evaluate_ap(gt, pred, workers=workers)
    out = {k: (v * 100 if v >= 0 else v) for k, v in ap.items()}
    if with_jf:
        jf = davis_jf(gt.videos, {v.name: v for v in pred}, voids, per_object=jf_per_object)
        out.update({k: jf[k] * 100 for k in JF_NAMES})
    return out


def format_table(rows: dict[str, dict[str, float]], keys: tuple[str, ...] | None = None) -> str:
    """Markdown table, one row per labelled result; -1 (undefined) and NaN print as an em dash."""
    keys = keys or tuple(k for k in (*STAT_NAMES, *JF_NAMES) if any(k in r for r in rows.values()))
    lines = ["| | " + " | ".join(keys) + " |", "|---|" + "---:|" * len(keys)]
    for label, r in rows.items():
        cells = []
        for k in keys:
            v = r.get(k)
            cells.append("—" if v is None or v < 0 or (isinstance(v, float) and math.isnan(v)) else f"{v:.1f}")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def run(cfg: Any, run_dir: Path) -> dict:
    from s2d.stages.data import load_data

    if cfg.eval.predictions is None:
        raise S2DError("s2d eval needs eval.predictions=<YouTube-VIS results json>")
    ds = load_data(cfg)
    gt = ds.gt_labelset()
    if gt is None:
        raise S2DError(f"data set {ds.root} has no ground truth to evaluate against")
    path = Path(cfg.eval.predictions)
    pred = predictions_from_json(read_json_file(path), gt, file=path)
    voids = {r.name: r.void for r in ds if r.void is not None}
    metrics = score(gt, pred, voids, cfg.eval.davis_jf, workers=cfg.eval.workers)
    out = Path(cfg.eval.out) if cfg.eval.out else run_dir
    atomic_write_json(out / "metrics.json", {"predictions": str(path), "metrics": metrics}, indent=1)
    table = format_table({path.name: metrics})
    atomic_write_text(out / "metrics.md", table)
    print(table)
    log.info("metrics written to %s", out / "metrics.json")
    return metrics
