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

from unrefined_stages import as_run, compare, finished, remade


def score_run(run, metrics: list[str]) -> dict | None:
    """-> {"plain" | "flip": {row: {metric: value}}}: the run's own rows, and its rows made again with
    ``label.flip`` the other way; None when the run cannot be scored."""
    f = finished(run)
    if f is None:
        return None
    own, other = as_run(f, metrics), remade(f, {"label": {"flip": not f.cfg.label.flip}}, metrics)
    return {"plain": other, "flip": own} if f.cfg.label.flip else {"plain": own, "flip": other}


def main() -> None:
    compare(__doc__, ("plain", "flip"), score_run, "flip's gain", "what the mirrored pass adds")


if __name__ == "__main__":
    main()
