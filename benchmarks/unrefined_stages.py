"""The learned stages with and without the GrabCut refinement, on finished runs with ground truth.

    python benchmarks/unrefined_stages.py outputs/multirun/idf        # every finished run under a sweep folder
    python benchmarks/unrefined_stages.py outputs/runs/default-seed0 --metrics AP AP50 J&F-Mean

The dense labelset and the final model's predictions are GrabCut-refined by default (``label.refine``,
``final.refine``). So the report's "final model vs dense labelset" compares the final model + GrabCut with the
distilled teacher + GrabCut, and the final model learned from refined masks. This makes, for each run, its
distilled teacher's dense labelset and its final model's predictions again with the refinement off, and scores
them beside the refined ones: the models' own masks against each other, and what the refinement adds to each.

The run's config is composed from ``conf/`` and the run's ``.hydra/overrides.yaml``; its checkpoints are found
by their fingerprints, as ``s2d run`` finds them. A run made before a setting entered the fingerprints (its
checkpoint folders carry older names) is scored from the one ``distill-*`` and the one ``final-*`` folder it
holds, and only when today's code remakes its labels exactly: its sparse keymasks and refined dense labelset
must score as its metrics.json recorded them, or the run is skipped with the numbers that differ. The refined
sets come from the run's artifacts (made again if missing); the unrefined ones go to a temporary folder, so the
run's artifacts are never changed. Self-training rounds after the first (``final.rounds`` > 1) are not covered:
the run is skipped with a message.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

ROWS = ("dense labelset", "final model")


def run_config(run: Path):
    """The run's config: conf/ composed with the overrides it was launched with."""
    from hydra import compose, initialize_config_dir

    from s2d.config import register_configs

    register_configs()
    overrides = yaml.safe_load((run / ".hydra" / "overrides.yaml").read_text()) or []
    keep = [o for o in overrides if not o.startswith(("hydra", "stage=", "progress="))]
    with initialize_config_dir(str(ROOT / "conf"), version_base=None):
        return compose("s2d", overrides=[*keep, "progress=false"])


def only_checkpoint(run: Path, stage: str) -> Path | None:
    """The last.ckpt of the run's one ``<stage>-*`` checkpoint folder (a run whose fingerprints are older than
    today's code), None with a message when there is none or more than one."""
    found = sorted((run / "checkpoints").glob(f"{stage}-*/last.ckpt"))
    if len(found) != 1:
        print(f"{run}: no checkpoint under today's fingerprint and {len(found)} {stage}-* folders "
              "(one is needed to read it as the run's), skipped")
        return None
    return found[0]


def same_scores(run: Path, row: str, now: dict[str, float]) -> bool:
    """Whether labels made by today's code score as the run's metrics.json recorded them (the row whose name starts
    with ``row``, every metric both have, to 4 decimals): the check that an older run's checkpoints are read
    against the labels they were trained on and from."""
    import json

    recorded = json.loads((run / "metrics.json").read_text())["metrics"]
    then = next((v for k, v in recorded.items() if k.startswith(row)), None)
    if then is None:
        print(f"{run}: metrics.json has no '{row}' row, skipped")
        return False
    differ = {m: (then[m], now[m]) for m in then if m in now and round(then[m], 4) != round(now[m], 4)}
    if differ:
        print(f"{run}: its checkpoints carry older fingerprints, and today's {row} differ from the run's "
              f"(then, now): {differ}; skipped")
    return not differ


@dataclass
class Finished:
    """A finished run's config, data, keymasks, ground truth and the checkpoints of its learned stages."""
    cfg: Any
    up: Any              # s2d.stages.chain.upstream(..., through="keymasks")
    gt: Any              # the ground-truth labelset
    voids: dict
    teacher: Path        # the distilled teacher
    refined: Any         # the run's dense labelset (StageOutput), as the run made it
    final: Path          # the final model

    @property
    def keymasks(self) -> tuple[Any, str]:
        return self.up.keymasks.labels, self.up.keymasks.fingerprint


def finished(run: Path) -> Finished | None:
    """The run's checkpoints and dense labelset, found as ``s2d run`` finds them (or, for a run older than
    today's fingerprints, its one checkpoint folder of each stage, when today's code remakes its labels); None
    with a message when the run cannot be scored."""
    from s2d.stages import distill as distill_stage
    from s2d.stages import final as final_stage
    from s2d.stages import label as label_stage
    from s2d.stages.chain import upstream
    from s2d.stages.evaluate import score

    cfg = run_config(run)
    if cfg.final.rounds != 1:
        print(f"{run}: final.rounds={cfg.final.rounds}, skipped (only the first round is covered)")
        return None
    up = upstream(cfg, through="keymasks")
    if not up.ds.has_gt:
        print(f"{run}: its data has no ground truth, skipped")
        return None
    km, km_fp = up.keymasks.labels, up.keymasks.fingerprint
    gt = up.ds.gt_labelset()
    voids = {r.name: r.void for r in up.ds if r.void is not None}
    teacher = distill_stage.checkpoint_dir(cfg, run, "distill", km_fp, "sparse") / "last.ckpt"
    older = not teacher.is_file()
    if older:
        teacher = only_checkpoint(run, "distill")
        if teacher is None or not same_scores(run, "sparse keymasks", score(gt, km, voids)):
            return None
    refined = label_stage.compute(cfg, up.ds, teacher, up.data_fp, (km, km_fp))
    final = distill_stage.checkpoint_dir(final_stage.stage_config(cfg), run, "final", refined.fingerprint,
                                         "dense") / "last.ckpt"
    if older:
        final = only_checkpoint(run, "final")
        if final is None or not same_scores(run, "dense labelset", score(gt, refined.labels, voids)):
            return None
    if not final.is_file():
        print(f"{run}: no finished final checkpoint ({final}), skipped")
        return None
    return Finished(cfg, up, gt, voids, teacher, refined, final)


def remade(f: Finished, change: dict, metrics: list[str]) -> dict[str, dict[str, float]]:
    """The run's dense labelset and final predictions made again from its checkpoints with the config ``change``
    (into a temporary folder: the run's artifacts are never touched), scored: {row: {metric: value}}."""
    from omegaconf import OmegaConf

    from s2d.stages import final as final_stage
    from s2d.stages import label as label_stage

    with tempfile.TemporaryDirectory() as tmp:
        c = OmegaConf.merge(f.cfg, change, {"paths": {"artifacts": tmp}})
        dense = label_stage.compute(c, f.up.ds, f.teacher, f.up.data_fp, f.keymasks).labels
        pred = final_stage.predict(c, f.up.ds, f.final, f.up.data_fp).labels
    return scored(f, dense, pred, metrics)


def as_run(f: Finished, metrics: list[str]) -> dict[str, dict[str, float]]:
    """The run's own dense labelset and final predictions (from its artifacts, made again if missing), scored."""
    from s2d.stages import final as final_stage

    pred = final_stage.predict(f.cfg, f.up.ds, f.final, f.up.data_fp).labels
    return scored(f, f.refined.labels, pred, metrics)


def scored(f: Finished, dense, pred, metrics: list[str]) -> dict[str, dict[str, float]]:
    """A dense labelset and final predictions of run ``f`` against its ground truth: {row: {metric: value}}."""
    from s2d.stages.evaluate import score

    return {row: {m: v for m, v in score(f.gt, ls, f.voids).items() if m in metrics}
            for row, ls in zip(ROWS, (dense, pred))}


def score_run(run: Path, metrics: list[str]) -> dict[str, dict[str, dict[str, float]]] | None:
    """-> {"refined" | "unrefined": {row: {metric: value}}}, or None when the run cannot be scored."""
    f = finished(run)
    if f is None:
        return None
    return {"refined": as_run(f, metrics),
            "unrefined": remade(f, {"label": {"refine": False}, "final": {"refine": False}}, metrics)}


def parse_runs(doc: str) -> tuple[argparse.Namespace, list[Path]]:
    """The command line of a script that scores finished runs: (its arguments, the run folders named or found
    under the folders named); exits with a message when there is none."""
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", type=Path, help="run folders, or sweep folders holding them")
    ap.add_argument("--metrics", nargs="+", default=["AP", "AP50", "AP75", "AR10", "J&F-Mean"])
    args = ap.parse_args()
    runs = sorted({h.parent for r in args.runs for h in ([r / ".hydra"] if (r / ".hydra").is_dir()
                                                         else r.rglob(".hydra"))})
    if not runs:
        sys.exit(f"no run folder (one with .hydra/overrides.yaml) in {[str(r) for r in args.runs]}")
    return args, runs


def compare(doc: str, kinds: tuple[str, str], score, gain: str, adds: str) -> None:
    """Score every run the command line names with ``score(run, metrics)`` -> {kind: {row: {metric: value}}}, or
    None when the run cannot be scored, for the two ``kinds`` (without, with a setting); print each run's table,
    then the mean ± std of every row, the final model minus the dense labelset run by run, and ``gain`` (the
    second kind minus the first) row by row. ``adds``: what the summary's heading says the second kind adds."""
    args, runs = parse_runs(doc)
    from s2d.stages.table import fmt_gain, fmt_mean

    metrics = args.metrics

    def line(label: str, cells) -> None:
        print(f"| {label} | " + " | ".join(cells) + " |")

    def header() -> None:
        print("| | " + " | ".join(metrics) + " |\n|---|" + "---:|" * len(metrics))

    results = {}
    for run in runs:
        t = time.perf_counter()
        res = score(run, metrics)
        if res is None:
            continue
        results[run] = res
        print(f"\n{run} ({time.perf_counter() - t:.0f} s)")
        header()
        for kind in kinds:
            for row in ROWS:
                line(f"{row}, {kind}", (f"{res[kind][row][m]:.1f}" for m in metrics))
    if not results:
        sys.exit("no run could be scored")

    def diffs(a: tuple[str, str], b: tuple[str, str], m: str) -> str:
        """(kind, row) a minus b, run by run, over the runs where both are defined."""
        pairs = [(r[a[0]][a[1]][m], r[b[0]][b[1]][m]) for r in results.values()]
        return fmt_gain([x - y for x, y in pairs if x >= 0 and y >= 0])

    print(f"\nOver {len(results)} run(s): mean ± std, then the final model minus the dense labelset run by run (mean "
          f"± std, and in how many runs it is at or above it), and {adds} to each row")
    header()
    for kind in kinds:
        for row in ROWS:
            line(f"{row}, {kind}", (fmt_mean([r[kind][row][m] for r in results.values()]) for m in metrics))
    for kind in kinds:
        line(f"final - dense, {kind}", (diffs((kind, "final model"), (kind, "dense labelset"), m) for m in metrics))
    for row in ROWS:
        line(f"{gain}, {row}", (diffs((kinds[1], row), (kinds[0], row), m) for m in metrics))


def main() -> None:
    compare(__doc__, ("unrefined", "refined"), score_run, "refinement's gain", "what the refinement adds")


if __name__ == "__main__":
    main()
