"""Learning curves of a learning stage from its CSV logs: the training loss terms, and (a diagnostic only, when
the data has ground truth and ``train.val_every_n_steps`` is set) the teacher's video AP50 during training.

A resumed stage writes one ``version_<k>/metrics.csv`` per launch; the rows are merged by step, the later
launch winning, so a curve is continuous across a resume.
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

TERMS = ("loss_mask", "loss_dice", "loss_class")  # the main (last decoder layer) terms; aux layers are not drawn


def read_curves(log_dir: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """<run>/logs/<stage> -> {column: (steps, values)} for every logged column with at least one value."""
    rows: dict[str, dict[int, float]] = {}
    for f in sorted(Path(log_dir).glob("version_*/metrics.csv"), key=lambda p: int(p.parent.name.split("_")[1])):
        with f.open(newline="") as fh:
            for row in csv.DictReader(fh):
                if not row.get("step"):
                    continue
                step = int(float(row["step"]))
                for k, v in row.items():
                    if k in ("step", "epoch") or v in ("", None):
                        continue
                    rows.setdefault(k, {})[step] = float(v)
    return {k: (np.array(sorted(d)), np.array([d[s] for s in sorted(d)])) for k, d in rows.items() if d}


def teacher_term_note(curves: dict[str, tuple[np.ndarray, np.ndarray]]) -> str | None:
    """One sentence on the teacher's term of a learning stage from its ``train/distill/targets`` column (the EMA
    teacher's targets per clip, logged on the steps the term ran); None when the term never ran or was logged
    before the column existed."""
    if "train/distill/targets" not in curves:
        return None
    s, v = curves["train/distill/targets"]
    if not np.any(v > 0):
        return (f"The teacher's term (logged from step {int(s[0])}) had no target in any logged step: no query of "
                "the EMA teacher reached its score threshold, so the stage learned from its labels alone.")
    empty = np.mean(v == 0)
    return (f"The teacher's term (logged from step {int(s[0])}): {v.mean():.2f} teacher targets per clip on "
            f"average, " + (f"none in {empty:.0%} of the logged steps." if empty else "some in every logged step."))


def smooth(values: np.ndarray, width: int) -> np.ndarray:
    """Centred moving average over ``width`` points (shorter at the ends): the per-step loss is noisy."""
    if width <= 1 or len(values) < 3:
        return values
    kernel = np.ones(min(width, len(values)))
    return np.convolve(values, kernel, "same") / np.convolve(np.ones_like(values), kernel, "same")


def plot_curves(curves: dict[str, tuple[np.ndarray, np.ndarray]], title: str) -> bytes:
    """One PNG: loss terms (smoothed, log scale) over steps; val/AP50 on a second axis, labelled a diagnostic."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 3.4), dpi=100)
    drawn = False
    for group in ("sparse", "dense", "distill"):
        for term in TERMS:
            key = f"train/{group}/{term}"
            if key in curves and np.any(curves[key][1] > 0):
                s, v = curves[key]
                ax.plot(s, smooth(v, 9), label=f"{group} {term.removeprefix('loss_')}", lw=1.2,
                        ls="-" if group != "distill" else "--")
                drawn = True
    if "train/loss" in curves:
        s, v = curves["train/loss"]
        ax.plot(s, smooth(v, 9), label="total", color="black", lw=1.6)
        drawn = True
    if drawn:
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss (moving average)")
    ax.grid(alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    if "val/AP50" in curves:
        ax2 = ax.twinx()
        s, v = curves["val/AP50"]
        h = ax2.plot(s, 100 * v if v.max() <= 1 else v, "o-", color="tab:red", lw=1.4, ms=3,
                     label="teacher val/AP50 (diagnostic: ground truth, never used by the run)")
        ax2.set_ylabel("val/AP50 (%)", color="tab:red")
        ax2.set_ylim(0, 100)
        handles, labels = handles + h, labels + [h[0].get_label()]
    ax.legend(handles, labels, fontsize=6, loc="upper right")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()
