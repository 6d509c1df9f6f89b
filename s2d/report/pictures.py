"""The report's pictures: a bar plot of the metrics, per video one picture with a row per stage, overlay gifs."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from s2d.io.atomic import atomic_write_bytes


def bar_plot(path: Path, rows: dict[str, dict[str, float]], keys: tuple[str, ...]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import io

    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(1.6 + 1.4 * len(keys), 3.2), dpi=110)
    width = 0.8 / max(len(rows), 1)
    for i, (label, r) in enumerate(rows.items()):
        vals = [max(r.get(k, 0.0), 0.0) for k in keys]
        ax.bar(np.arange(len(keys)) + i * width, vals, width, label=label)
    ax.set_xticks(np.arange(len(keys)) + width * (len(rows) - 1) / 2, keys)
    ax.set_ylabel("%")
    ax.set_ylim(0, 100)
    ax.legend(fontsize=7, loc="upper right")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def stage_picture(path: Path, ds, name: str, layers: dict, unnest: Sequence[str] = ()) -> None:
    """One row per stage (ground truth first), 4 frames across, masks coloured by instance; the layers named in
    ``unnest`` drawn without their nested duplicates (``unnested``)."""
    from s2d.viz import grid, overlay, palette, save_png

    r = ds[name]
    T = len(r.video)
    ts = sorted({0, T // 3, 2 * T // 3, T - 1})
    frames = [r.video[t] for t in ts]
    rows = []
    for label, vl in layers.items():
        if vl is None:
            continue
        m = vl.masks(ts)  # (N, 4, H, W): the frames drawn
        if label in unnest:
            m = unnested(m, [i.score for i in vl.instances])
        colors = palette(max(len(m), 1))
        rows.append([overlay(f, m[:, i], colors[:len(m)]) for i, f in enumerate(frames)])
    save_png(path, grid(rows))


REPORT_VIDEOS = 6  # videos drawn in the report (drawn_videos); every video has its gifs in overlays/


def safe_name(name: str) -> str:
    return name.replace("/", "_")


NESTED = 0.5  # a predicted mask this much inside the masks drawn before it on its frame is not drawn
UNNESTED = ("final model",)  # the layers drawn ``unnested``: predictions (labels are drawn as they are taught)


def unnested(masks: np.ndarray, scores: Sequence[float]) -> np.ndarray:
    """masks (N, F, H, W) bool of N tubes on F drawn frames, scores (N,) -> the masks to draw: on each frame the
    tubes go best first, and one whose mask lies ``NESTED`` or more inside the masks drawn before it is left out
    there. A final model's predictions keep every tube down to ``label.eval_score_thr`` for video AP, which
    ranks them; the duplicates the ranking scored down (a query on an object another tube holds, often a smaller
    mask inside it) were drawn as rings of masks inside each object (a talking head: 7 tubes in one face). A
    threshold on the score is no cure: a distinct object the model is unsure of (a small walker, 0.1-0.3) is
    worth seeing, a duplicate is not."""
    out = masks.copy()
    order = np.argsort(-np.asarray(scores, np.float64), kind="stable")
    for f in range(masks.shape[1]):
        drawn = np.zeros(masks.shape[2:], bool)
        for i in order:
            m = masks[i, f]
            area = np.count_nonzero(m)
            if area and np.count_nonzero(m & drawn) >= NESTED * area:
                out[i, f] = False
            drawn |= out[i, f]
    return out


def drawn_videos(names: list[str], sources: list[str], cap: int = REPORT_VIDEOS) -> list[str]:
    """The videos the report draws: at most ``cap``, each source file's first video before any file's second,
    in name order. A file cut into shots (data.shots) is several videos, and the first ones by name would all
    be shots of one file (a montage's 6 shots filled the report and hid the other 4 files of its folder)."""
    seen: dict[str, int] = {}
    rank = []
    for i, (n, src) in enumerate(zip(names, sources)):
        rank.append((seen.get(src, 0), i, n))
        seen[src] = seen.get(src, 0) + 1
    picked = sorted(rank)[:cap]
    return [n for _, _, n in sorted(picked, key=lambda x: x[1])]


def pictures_section(run_dir: Path, ds, keymasks, dense, final_pred) -> list[str]:
    """Report section: per video (capped) a picture with one row per stage, with or without ground truth, and
    overlay gifs of the dense labels and the final model's predictions. The final model's tubes are drawn
    ``unnested``; the dense labels whole, as they are taught."""
    from s2d.viz import overlay, palette, save_gif

    lines = ["## What each stage found", ""]
    if final_pred is not None:
        lines += ["On each frame of the final model's rows, a tube whose mask lies mostly inside those of "
                  "higher-scored tubes (a duplicate its ranking scored down) is not drawn; metrics.json scores "
                  "every tube.", ""]
    names = drawn_videos(ds.names, [ds[n].source for n in ds.names])
    for i, name in enumerate(names):
        r = ds[name]
        layers = {"ground truth": r.gt, "sparse keymasks": keymasks[name],
                  "dense labels": dense[name] if dense is not None else None,
                  "final model": final_pred[name] if final_pred is not None else None}
        pic = Path("pictures") / f"{safe_name(name)}.png"
        stage_picture(run_dir / pic, ds, name, layers, unnest=UNNESTED)
        if i == 0:  # the first video's picture is also the report's headline picture (and W&B's)
            atomic_write_bytes(run_dir / "stages.png", (run_dir / pic).read_bytes())
        rows = ", ".join(k for k, v in layers.items() if v is not None)
        lines += [f"`{name}` — rows, top to bottom: {rows}", "", f"![{name}]({pic.as_posix()})", ""]
        gifs = []
        frames = None
        shown = list(range(0, len(r.video), max(1, len(r.video) // 40)))  # about 40 frames of any video
        for label, layer in (("dense", "dense labels"), ("final", "final model")):
            vl = layers[layer]
            if vl is None:
                continue
            frames = r.video.frames(shown) if frames is None else frames  # decoded once for both gifs
            m = vl.masks(shown)  # (N, len(shown), H, W)
            if layer in UNNESTED:
                m = unnested(m, [i.score for i in vl.instances])
            colors = palette(max(len(m), 1))
            drawn = [overlay(f, m[:, i], colors[:len(m)]) for i, f in enumerate(frames)]
            gif = Path("overlays") / f"{safe_name(name)}_{label}.gif"
            save_gif(run_dir / gif, drawn)
            gifs.append(f"[{label}]({gif.as_posix()})")
        if gifs:
            lines += ["Overlay gifs: " + ", ".join(gifs), ""]
    if len(ds) > len(names):
        lines += [f"({len(ds) - len(names)} more videos are not drawn here.)", ""]
    return lines
