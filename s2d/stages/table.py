"""``s2d table``: the ablation table of a sweep, one row per setting, seeds aggregated (markdown and LaTeX).

Each finished run folder holds ``metrics.json`` (``"complete": true`` and the code version) and Hydra's
``.hydra/overrides.yaml``; the row is the run's overrides minus ``seed`` and minus the ones every run shares.
Several seeds of one setting become mean ± std (n); two runs of the same setting AND seed are an error.
Runs that are unfinished, or from another code version (unless ``table.any_version=true``), are excluded and
listed under the table; a setting with no finished run shows "—". With ``table.baseline`` (another row of the same
runs, e.g. the dense labelset under the final model) a second table gives the row's gain over it, each run against
itself and then aggregated over seeds: a stage's gain is a paired difference, whose spread is the seeds'
disagreement about the gain, not the sum of both rows' spreads. Under the tables, the compute the runs came from
(``s2d.compute``): runs of several machines are aggregated, but the table says so, since their learned stages
differ by about the spread across seeds.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from s2d.compute import describe
from s2d.errors import S2DError
from s2d.io.atomic import atomic_write_text
from s2d.version import code_version


def collect(root: Path, row: str, any_version: bool = True
            ) -> tuple[list[tuple[str, dict, dict | None]], list[str], dict[str, int]]:
    """-> (name, setting and every metrics row of each run folder, None where excluded; the excluded, with why;
    how many of the included runs each compute environment produced). A run is included if it has ``row``."""
    runs, excluded, computes = [], [], {}
    for hydra_dir in sorted(root.rglob(".hydra")):
        run = hydra_dir.parent
        name = str(run.relative_to(root))
        ov = hydra_dir / "overrides.yaml"
        overrides = (yaml.safe_load(ov.read_text()) or []) if ov.exists() else []
        setting = dict(o.split("=", 1) for o in overrides if "=" in o and not o.startswith(("hydra", "stage=")))
        m = run / "metrics.json"
        try:
            data = json.loads(m.read_text()) if m.exists() else None
        except json.JSONDecodeError:
            data = None
        if not data or not data.get("complete") or row not in data.get("metrics", {}):
            excluded.append(f"{name} (unfinished)")
            runs.append((name, setting, None))
            continue
        if not any_version and data.get("code_version") != code_version():
            excluded.append(f"{name} (code version {data.get('code_version')})")
            runs.append((name, setting, None))
            continue
        runs.append((name, setting, data["metrics"]))
        env = describe(data.get("compute"))
        computes[env] = computes.get(env, 0) + 1
    return runs, excluded, computes


def fmt_mean(vals: list[float]) -> str:
    """One metric over seeds -> "mean ± std (n)" (population std); one value: itself; -1 (undefined) left out."""
    vals = [v for v in vals if v is not None and v >= 0]
    if not vals:
        return "—"
    if len(vals) == 1:
        return f"{vals[0]:.1f}"
    return f"{np.mean(vals):.1f} ± {np.std(vals):.1f} ({len(vals)})"


def fmt_gain(diffs: list[float]) -> str:
    """Per-seed differences -> "+mean ± std (k of n ≥ 0)"; one seed: its difference."""
    if not diffs:
        return "—"
    if len(diffs) == 1:
        return f"{diffs[0]:+.1f}"
    at_least = sum(d >= 0 for d in diffs)
    return f"{np.mean(diffs):+.1f} ± {np.std(diffs):.1f} ({at_least} of {len(diffs)} ≥ 0)"


def _gains(seeds: dict[str, dict], row: str, baseline: str, metric: str) -> list[float]:
    """row - baseline of ``metric`` in each seed's run that has both defined (-1 is undefined)."""
    out = []
    for rows in seeds.values():
        a, b = rows[row].get(metric), rows.get(baseline, {}).get(metric)
        if a is not None and b is not None and a >= 0 and b >= 0:
            out.append(a - b)
    return out


def _tabular(header: list[str], body: list[list[str]], n_left: int) -> list[str]:
    tex = [r"\begin{tabular}{" + "l" * n_left + "r" * (len(header) - n_left) + "}", r"\toprule",
           " & ".join(h.split(".")[-1].replace("_", r"\_") if i < n_left else h.replace("_", r"\_")
                      for i, h in enumerate(header)) + r" \\", r"\midrule"]
    tex += [" & ".join(c.replace("±", r"$\pm$").replace("≥", r"$\geq$").replace("—", "--") for c in cells) + r" \\"
            for cells in body]
    return tex + [r"\bottomrule", r"\end{tabular}"]


def build(root: Path, row: str, metrics: list[str], any_version: bool = True,
          baseline: str | None = None) -> tuple[str, str]:
    """-> (markdown, latex). ``baseline``: another row of the same runs; a second table gives ``row`` minus it,
    paired by seed."""
    runs, excluded, computes = collect(root, row, any_version)
    if not any(v is not None for _, _, v in runs):
        raise S2DError(f"{root}: no finished runs with a '{row}' row (excluded: {excluded[:10]})")
    if baseline is not None and not any(baseline in v for _, _, v in runs if v is not None):
        rows = sorted({r for _, _, v in runs if v is not None for r in v})
        raise S2DError(f"table.baseline='{baseline}': no finished run in {root} has that row; its runs have {rows}")
    keys = sorted({k for _, s, _ in runs for k in s} - {"seed"})
    varying = [k for k in keys if len({s.get(k) for _, s, _ in runs}) > 1]
    cells: dict[tuple, dict[str, dict]] = {}
    for _, setting, vals in runs:
        cell = tuple(setting.get(k) for k in varying)
        cells.setdefault(cell, {})
        if vals is None:
            continue
        seed = setting.get("seed", "0")
        if seed in cells[cell]:
            raise S2DError(f"{root}: two finished runs for the same setting {dict(zip(varying, cell))} and seed "
                           f"{seed}; remove one (no silent overwrite)")
        cells[cell][seed] = vals
    header = varying + metrics
    md = ["| " + " | ".join(header) + " |", "|" + "---|" * len(varying) + "---:|" * len(metrics)]
    body, gain_body, missing = [], [], []
    for cell in sorted(cells, key=lambda c: tuple(str(x) for x in c)):
        seeds = cells[cell]
        if not seeds:
            missing.append(dict(zip(varying, cell)))
        names = [str(c) for c in cell]  # empty in a seeds-only sweep: the row is the metrics' cells, like the header
        body.append(names + [fmt_mean([s[row].get(m) for s in seeds.values()]) for m in metrics])
        if baseline is not None:
            gain_body.append(names + [fmt_gain(_gains(seeds, row, baseline, m)) for m in metrics])
    md += ["| " + " | ".join(cells_) + " |" for cells_ in body]
    tex = _tabular(header, body, len(varying))
    text = "\n".join(md) + "\n"
    if baseline is not None:
        lacking = [name for name, _, vals in runs if vals is not None and baseline not in vals]
        text += (f"\n{row} minus {baseline}, each run against itself (mean ± std over seeds, and in how many seeds "
                 f"the row is at or above it):\n\n" + "| " + " | ".join(header) + " |\n|" + "---|" * len(varying)
                 + "---:|" * len(metrics) + "\n" + "".join("| " + " | ".join(c) + " |\n" for c in gain_body))
        if lacking:
            text += f"\nWithout a '{baseline}' row (left out of the gains): " + ", ".join(lacking) + "\n"
        tex += ["", f"% {row} minus {baseline}, paired by seed"] + _tabular(header, gain_body, len(varying))
    if len(computes) == 1:
        text += f"\nCompute: {next(iter(computes))} (every run).\n"
    else:  # aggregated anyway (a sweep spread over a cluster), but a reader must know
        text += ("\nCompute: runs from " + str(len(computes)) + " environments, whose learned stages differ by about "
                 "the spread across seeds (docs/RESULTS.md, \"Reproducibility\"): "
                 + "; ".join(f"{env} ({n} run{'s' if n > 1 else ''})" for env, n in sorted(computes.items())) + ".\n")
    if excluded:
        text += "\nExcluded: " + ", ".join(excluded) + "\n"
    if missing:
        text += "\nMissing (no finished run): " + "; ".join(str(m) for m in missing) + "\n"
    return text, "\n".join(tex) + "\n"


def run(cfg: Any, run_dir: Path) -> dict:
    if cfg.table.root is None:
        raise S2DError("s2d table needs table.root=<folder of runs, e.g. outputs/multirun/ablation_keymasks>")
    root = Path(cfg.table.root)
    md, tex = build(root, cfg.table.row, list(cfg.table.metrics), cfg.table.any_version, cfg.table.baseline)
    atomic_write_text(root / "table.md", md)
    atomic_write_text(root / "table.tex", tex)
    print(md)
    return {"table": str(root / "table.md"), "latex": str(root / "table.tex")}
