"""Stage "final": the model trained on the dense labelset with one round of EMA self-distillation, started
from the distilled teacher; then its predictions on every video (for evaluation)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from s2d.fingerprint import fingerprint
from s2d.io.atomic import sha256_file
from s2d.stages.common import artifact_dir, section


def predict(cfg: Any, ds, ckpt: Path, data_fp: str):
    from s2d.stages.label import load_model, predictions

    fp = fingerprint("predict", 1, data_fp, sha256_file(ckpt), section(cfg, "label"))
    root = artifact_dir(cfg, "predict", fp)
    model = load_model(cfg, ckpt, "teacher")
    nms = cfg.label.nms_iou if cfg.label.nms else None
    return predictions(cfg, ds, model, cfg.label.eval_score_thr, nms, "predict", fp, root), root


def run(cfg: Any, run_dir: Path) -> dict:
    from s2d.stages.pipeline import run as run_pipeline

    return run_pipeline(cfg, run_dir)
