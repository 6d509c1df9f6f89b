"""Stage "final": the model trained on the dense labelset with EMA self-distillation, started from the distilled
teacher (or, with ``final.init=scratch``, where the distill stage started); then its predictions on every video
(for evaluation). ``final.rounds`` = N repeats label -> train N times (each round's teacher labels the videos for
the next). ``s2d final`` is the pipeline (``s2d.stages.pipeline``) up to this stage; this module holds what is
particular to it."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from s2d.fingerprint import fingerprint
from s2d.io.atomic import sha256_file
from s2d.stages.common import StageOutput, artifact_dir


def round_stage(r: int) -> str:
    """The learning stage of self-training round r: its checkpoint folder, CSV logs and W&B run."""
    return "final" if r == 1 else f"final-round{r}"


def round_row(r: int) -> str:
    """The report's row for round r's dense labelset (round 1 is the method's dense labelset)."""
    return "dense labelset (distilled teacher)" if r == 1 else f"dense labelset round {r} (final model {r - 1})"


def stage_config(cfg: Any) -> Any:
    """The config a final round trains with: ``final.distill_warmup``, ``final.teacher_score``, ``final.lr`` and
    ``final.milestones``, when set, replace the distill stage's warm-up, teacher threshold, learning rate and
    rate steps (and so enter the round's checkpoint fingerprint, with the rest of the ``distill`` and ``optim``
    sections)."""
    over: dict = {}
    distill = {k: v for k in ("distill_warmup", "teacher_score") if (v := cfg.final.get(k)) is not None}
    if distill:
        over["distill"] = distill
    optim = {k: v for k, v in (("lr", cfg.final.lr), ("milestones", cfg.final.milestones)) if v is not None}
    if optim:
        over["optim"] = optim
    if not over:
        return cfg
    from omegaconf import OmegaConf

    return OmegaConf.merge(cfg, over)


def predict(cfg: Any, ds, ckpt: Path, data_fp: str) -> StageOutput:
    """The final model's predictions on every video (kept down to label.eval_score_thr, for evaluation), each mask
    GrabCut-refined on its frame with ``final.refine``."""
    from s2d.stages.label import label_settings, load_model, predictions, refines

    fp = fingerprint("predict", 1, data_fp, sha256_file(ckpt), label_settings(cfg, "predict"))
    root = artifact_dir(cfg, "predict", fp)
    model, crop = load_model(cfg, ckpt, "teacher")
    return StageOutput(predictions(cfg, ds, model, crop, cfg.label.eval_score_thr, cfg.label.nms_iou, "predict", fp,
                                   root, refine=refines(cfg, "predict")), root, fp)

