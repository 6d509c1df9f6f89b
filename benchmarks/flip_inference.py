"""Flip test-time augmentation (``label.flip``) on finished runs with ground truth: the same checkpoints, the
dense labelset and the final model's predictions made with and without the mirrored pass, scored side by side.

    python benchmarks/flip_inference.py outputs/multirun/dfine            # every finished run under a folder
    python benchmarks/flip_inference.py outputs/runs/default-seed0 --metrics AP AP50 J&F-Mean

This measures inference alone: the final model here learned from the run's labelset (made without the mirrored
pass, or with it if the run had ``label.flip=true``). A run made with the key on is scored against the same run
with it off. Checkpoints are found as ``benchmarks/unrefined_stages.py`` finds them; what is made with the key
changed goes to a temporary folder, so the run's artifacts are never touched.
"""
from __future__ import annotations

import sys
import time

from unrefined_stages import ROWS, as_run, finished, parse_runs, remade


def main() -> None:
    args, runs = parse_runs(__doc__)
    from s2d.stages.table import fmt_gain, fmt_mean

    kinds = ("plain", "flip")
    results = {}
    for run in runs:
        t = time.perf_counter()
        f = finished(run)
        if f is None:
            continue
        own, other = as_run(f, args.metrics), remade(f, {"label": {"flip": not f.cfg.label.flip}}, args.metrics)
        results[run] = dict(zip(kinds, (other, own) if f.cfg.label.flip else (own, other)))
        print(f"\n{run} ({time.perf_counter() - t:.0f} s)")
        print("| | " + " | ".join(args.metrics) + " |\n|---|" + "---:|" * len(args.metrics))
        for kind in kinds:
            for row in ROWS:
                print(f"| {row}, {kind} | " + " | ".join(f"{results[run][kind][row][m]:.1f}"
                                                         for m in args.metrics) + " |")
    if not results:
        sys.exit("no run could be scored")
    print(f"\nOver {len(results)} run(s): mean ± std, then what the mirrored pass adds to each row run by run (mean "
          "± std, and in how many runs it is at or above zero), then the final model minus the dense labelset")
    print("| | " + " | ".join(args.metrics) + " |\n|---|" + "---:|" * len(args.metrics))
    for kind in kinds:
        for row in ROWS:
            print(f"| {row}, {kind} | " + " | ".join(fmt_mean([r[kind][row][m] for r in results.values()])
                                                     for m in args.metrics) + " |")
    valid = list(results.values())
    for row in ROWS:
        print(f"| flip's gain, {row} | " + " | ".join(
            fmt_gain([r["flip"][row][m] - r["plain"][row][m] for r in valid
                      if r["flip"][row][m] >= 0 and r["plain"][row][m] >= 0]) for m in args.metrics) + " |")
    for kind in kinds:
        print(f"| final - dense, {kind} | " + " | ".join(
            fmt_gain([r[kind]["final model"][m] - r[kind]["dense labelset"][m] for r in valid
                      if r[kind]["final model"][m] >= 0 and r[kind]["dense labelset"][m] >= 0])
            for m in args.metrics) + " |")


if __name__ == "__main__":
    main()
