"""``s2d run``: every stage in order (data -> masks -> keymasks -> distill -> label -> final), each skipped
when its artifact is already complete (fingerprinted folders; finished checkpoints), then a report (markdown
+ pictures) of class-agnostic AP/AR and J&F after each stage.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from s2d.compute import compute_env, describe
from s2d.data.full_rate import with_full_rate
from s2d.version import code_version
from s2d.io.atomic import atomic_write_bytes, atomic_write_json, atomic_write_text
from s2d.report.errors import error_lines
from s2d.report.gains import gain_lines
from s2d.report.per_object import CSV_NAME as PER_OBJECT_CSV, per_object_csv, per_object_lines
from s2d.report.pictures import bar_plot, pictures_section
from s2d.stages.common import section

log = logging.getLogger(__name__)


def _gain_steps(rounds: list[dict], has_final: bool) -> list[tuple[str, str, str]]:
    from s2d.stages.final import round_row

    steps = [("distill", round_row(1), "sparse keymasks")]
    steps += [(f"final round {r - 1}", round_row(r), round_row(r - 1)) for r in range(2, len(rounds) + 1)]
    if has_final:
        steps += [("final", "final model", round_row(len(rounds))), ("the learned stages together", "final model",
                                                                   "sparse keymasks")]
    return steps


def _ranking_sentence(cfg: Any) -> str:
    """How the learned stages' tubes are ranked (``s2d.inference.rescore``): AP depends on it, so the report says."""
    how = ["foreground probability"]
    if cfg.label.mask_score:
        how.append("mean mask probability inside the mask (`label.mask_score`)")
    if cfg.label.overlap_decay:
        how.append("share of the tube's pixels no higher-ranked tube of its video covers (`label.overlap_decay`"
                   + (", a tube that repeats a longer one on most of its frames ranked after it, "
                      "`label.fragments_last`)" if cfg.label.fragments_last else ")"))
    return "The learned stages' tubes are ranked by " + " x ".join(how) + "."


def _curves(run_dir: Path, stages: list[str]) -> list[str]:
    """Report section: one learning-curve picture per learning stage, from its CSV logs."""
    from s2d.report.curves import plot_curves, read_curves, teacher_term_note

    lines = ["## Learning curves", "",
             "Training loss terms per stage (moving average, log scale). The red line, when present, is the "
             "teacher's video AP50 against the ground truth every train.val_every_n_steps steps: a diagnostic "
             "for you, never used by the run (no checkpoint, threshold or stop depends on it).", ""]
    drawn = False
    for stage in stages:
        curves = read_curves(run_dir / "logs" / stage)
        if not curves:
            continue
        pic = Path("curves") / f"{stage}.png"
        atomic_write_bytes(run_dir / pic, plot_curves(curves, f"{stage}: training loss"))
        lines += [f"`{stage}`", "", f"![{stage}]({pic.as_posix()})", ""]
        note = teacher_term_note(curves)
        lines += [note, ""] if note else []
        drawn = True
    return lines if drawn else []


def run(cfg: Any, run_dir: Path) -> dict:
    from s2d.evaluation.frame_ap import frame_ap
    from s2d.evaluation.errors import labelset_errors
    from s2d.io.job_ranks import job_rank_world
    from s2d.stages.chain import upstream
    from s2d.stages.evaluate import format_table, score

    t0 = time.perf_counter()
    learn = cfg.stage in ("run", "final", "label")  # `s2d run` and the later verbs include the learning stages
    up = upstream(cfg, through="keymasks", check_validation=learn)  # validation without ground truth: refused now
    ds, timings = up.ds, dict(up.seconds)
    masks, masks_dir = up.masks.labels, up.masks.folder
    keymasks, baseline, km_dir = up.keymasks.labels, up.keymasks.baseline, up.keymasks.folder
    dense = final_pred = None
    rounds: list[dict] = []  # per self-training round: its dense labelset, where it is, the model trained on it
    if learn:
        from s2d.stages import distill as distill_stage
        from s2d.stages import final as final_stage
        from s2d.stages import label as label_stage

        # the videos, or their recordings with train.full_rate (s2d.stages.chain.Learning): the labelsets made
        # there are scored and drawn on the videos' own frames
        lr = up.learning
        t = time.perf_counter()
        distill_ckpt = distill_stage.train(cfg, run_dir, "distill", lr.ds, lr.keymasks, "sparse", lr.keymasks_fp,
                                           val_ds=ds)
        timings["distill"] = time.perf_counter() - t
        # self-training rounds (final.rounds): the current teacher labels every video, a student trained on
        # those dense labels (starting from the teacher, or from the distill stage's start with
        # final.init=scratch) becomes the next teacher; every round's labelset is kept
        teacher = distill_ckpt
        final_ckpt = pred_dir = None
        for r in range(1, cfg.final.rounds + 1):
            t = time.perf_counter()
            learned_from = (lr.keymasks, lr.keymasks_fp) if r == 1 else (rounds[-1]["labels"], rounds[-1]["fp"])
            labels_r, label_dir, label_fp, _ = label_stage.compute(cfg, lr.ds, teacher, lr.data_fp, learned_from,
                                                                   sparse=r == 1)
            timings[f"label{r}"] = time.perf_counter() - t
            rounds.append({"labels": labels_r, "dir": label_dir, "fp": label_fp, "ckpt": None})
            if not any(v.instances for v in labels_r):  # nothing to train on: say so, report what ran
                log.warning("final: round %d skipped, its dense labelset is empty (no prediction of the teacher "
                            "reached label.score_thr=%s); train longer (train.max_steps) or lower label.score_thr",
                            r, cfg.label.score_thr)
                break
            t = time.perf_counter()
            teacher = distill_stage.train(final_stage.stage_config(cfg), run_dir, final_stage.round_stage(r), lr.ds,
                                          labels_r, "dense", label_fp, val_ds=ds,
                                          init=None if distill_stage.starts_from_scratch(cfg, "dense") else teacher)
            timings[f"final{r}"] = time.perf_counter() - t
            rounds[-1]["ckpt"] = final_ckpt = teacher
        for rd in rounds:
            rd["scored"] = lr.on_videos(rd["labels"], ds)
        dense = rounds[0]["scored"]
        if final_ckpt is not None:
            t = time.perf_counter()
            final_pred, pred_dir, _, _ = final_stage.predict(cfg, lr.ds, final_ckpt, lr.data_fp)
            final_pred = lr.on_videos(final_pred, ds)
            timings["predict"] = time.perf_counter() - t

    rank, world = job_rank_world()
    if rank != 0:  # several tasks of one job ran the stages together; one of them scores and reports
        log.info("rank %d of %d: stages done, rank 0 writes the report", rank, world)
        return {"metrics": {}}
    compute = compute_env()
    lines = [f"# s2d run `{cfg.run_id}`", "",
             f"Data: {len(ds)} videos from `{ds.root}` ({cfg.data.kind}); tracker `{cfg.tracker.kind}`; "
             f"masks `{cfg.masks.source}/{cfg.masks.features}`.", "",
             *([f"The learned stages learned from the recordings of {len(with_full_rate(ds))} video(s), every frame "
                "between their own (`train.full_rate`); their labelsets are scored and drawn on the videos' own "
                "frames.", ""] if learn and up.learning.recorded else []),
             f"Compute: {describe(compute)} (the learned stages' numbers depend on it: docs/RESULTS.md, "
             "\"Reproducibility\").", "",
             "| stage | artifact | seconds |", "|---|---|---:|",
             f"| masks | `{masks_dir}` | {timings['masks']:.1f} |",
             f"| keymasks | `{km_dir}` | {timings['keymasks']:.1f} |"]
    if learn:
        lines += [f"| distill | `{distill_ckpt}` | {timings['distill']:.1f} |"]
        for r, rd in enumerate(rounds, 1):
            lines += [f"| label (round {r}) | `{rd['dir']}` | {timings[f'label{r}']:.1f} |"]
            if rd["ckpt"] is not None:
                lines += [f"| final (round {r}) | `{rd['ckpt']}` | {timings[f'final{r}']:.1f} |"]
            else:
                lines += [f"| final (round {r}) | skipped: the dense labelset is empty (no teacher prediction "
                          "reached label.score_thr) | — |"]
        if pred_dir is not None:
            lines += [f"| predict | `{pred_dir}` | {timings['predict']:.1f} |"]
    lines += [""]
    metrics: dict[str, dict[str, float]] = {}
    error_counts: dict[str, dict[str, int]] = {}  # per labelset: objects found and missed, costly false positives
    if ds.has_gt:
        gt = ds.gt_labelset()
        voids = {r.name: r.void for r in ds if r.void is not None}
        fa = frame_ap(gt, masks)
        metrics["single-frame masks (per frame)"] = {k: (100 * v if v >= 0 else v) for k, v in fa.items()}
        # the labelsets the learned stages start from and make, by report row: scored, and where they lose AP50
        learned = {"sparse keymasks": keymasks,
                   **{final_stage.round_row(r): rd["scored"] for r, rd in enumerate(rounds, 1)}}
        if final_pred is not None:
            learned["final model"] = final_pred
        # J and F object by object, from the same pass as the J&F rows (the report's "J&F per object")
        per_object: dict[str, list] = {}
        for row, labels in {"single-frame masks + IoU linker": baseline, **learned}.items():
            metrics[row] = score(gt, labels, voids, jf_per_object=per_object.setdefault(row, []))
        lines += ["## Class-agnostic results against the ground truth", "",
                  "Video AP/AR over tubes (YouTube-VIS protocol, 128²/256² area bounds) and DAVIS-2017 "
                  "unsupervised J&F, in %. The first row scores every frame on its own (single-frame masks "
                  "have no identity across frames); — = undefined (no object in that area range). "
                  f"{_ranking_sentence(cfg)}", "",
                  format_table(metrics), "", "![metrics](metrics.png)", ""]
        bar_plot(run_dir / "metrics.png", metrics, ("AP", "AP50", "AP75", "AR10", "J&F-Mean"))
        gains = gain_lines(metrics, _gain_steps(rounds, final_pred is not None))
        if gains:
            lines += ["What each learning stage added over the labels it learned from:", "", *gains, ""]
        errors = {row: labelset_errors(gt, labels) for row, labels in learned.items()}
        lines += error_lines(errors)
        atomic_write_text(run_dir / PER_OBJECT_CSV, per_object_csv(per_object))
        lines += per_object_lines(per_object, PER_OBJECT_CSV)
        error_counts = {row: {"objects": e.objects, "found": e.found, "missed": len(e.missed), **e.counts()}
                        for row, e in errors.items()}
    else:
        lines += ["No ground truth, so no metrics: the pictures below and the overlay gifs show what each stage "
                  "found.", ""]
    if learn:
        lines += _curves(run_dir, ["distill"] + [final_stage.round_stage(r) for r, rd in enumerate(rounds, 1)
                                                 if rd["ckpt"] is not None])
    lines += pictures_section(run_dir, ds, keymasks, dense, final_pred)
    summary = (km_dir / "summary.md").read_text()
    lines += ["## Keymask discovery per video", "", summary, "",
              f"Overlay gifs: `{km_dir / 'overlays'}`", ""]
    atomic_write_text(run_dir / "report.md", "\n".join(lines))
    atomic_write_json(run_dir / "metrics.json", {"run_id": cfg.run_id, "metrics": metrics, "errors": error_counts,
                                                 "seconds": timings,
                                                 "config": {k: section(cfg, k) for k in
                                                            ("data", "masks", "tracker", "keymasks", "model",
                                                             "loss", "optim", "train", "distill", "label",
                                                             "final")},
                                                 "complete": True, "code_version": code_version(),
                                                 "compute": compute}, indent=1)
    if cfg.logger.wandb:
        from s2d.stages.loggers import log_report_to_wandb

        log_report_to_wandb(cfg, run_dir, metrics)
    print("\n".join(lines[:10]))
    if metrics:
        print(format_table(metrics))
    print(f"report: {run_dir / 'report.md'}  ({time.perf_counter() - t0:.0f} s)")
    return {"metrics": metrics}
