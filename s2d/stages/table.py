"""``s2d table``: the ablation table of a sweep, one row per setting, seeds aggregated (markdown and LaTeX).

Each finished run folder holds ``metrics.json`` (``"complete": true`` and the code version) and Hydra's
``.hydra/overrides.yaml``; the row is the run's overrides minus ``seed`` and minus the ones every run shares.
Several seeds of one setting become mean ± std (n); two runs of the same setting AND seed are an error.
Runs that are unfinished, or from another code version (unless ``table.any_version=true``), are excluded and
listed under the table; a setting with no finished run shows "—". Under the table, the compute the runs came from
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
            ) -> tuple[list[tuple[dict, dict]], list[str], dict[str, int]]:
    """-> (setting and metrics row per run folder, None where excluded; the excluded, with why; how many of the
    included runs each compute environment produced)."""
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
            runs.append((setting, None))
            continue
        if not any_version and data.get("code_version") != code_version():
            excluded.append(f"{name} (code version {data.get('code_version')})")
            runs.append((setting, None))
            continue
        runs.append((setting, data["metrics"][row]))
        env = describe(data.get("compute"))
        computes[env] = computes.get(env, 0) + 1
    return runs, excluded, computes


def _fmt(vals: list[float]) -> str:
    vals = [v for v in vals if v is not None and v >= 0]
    if not vals:
        return "—"
    if len(vals) == 1:
        return f"{vals[0]:.1f}"
    return f"{np.mean(vals):.1f} ± {np.std(vals):.1f} ({len(vals)})"


def build(root: Path, row: str, metrics: list[str], any_version: bool = True) -> tuple[str, str]:
    """-> (markdown, latex)."""
    runs, excluded, computes = collect(root, row, any_version)
    if not any(v is not None for _, v in runs):
        raise S2DError(f"{root}: no finished runs with a '{row}' row (excluded: {excluded[:10]})")
    keys = sorted({k for s, _ in runs for k in s} - {"seed"})
    varying = [k for k in keys if len({s.get(k) for s, _ in runs}) > 1]
    cells: dict[tuple, dict[str, dict]] = {}
    for setting, vals in runs:
        cell = tuple(setting.get(k) for k in varying)
        cells.setdefault(cell, {})
        if vals is None:
            continue
        seed = setting.get("seed", "0")
        if seed in cells[cell]:
            raise S2DError(f"{root}: two finished runs for the same setting {dict(zip(varying, cell))} and seed "
                           f"{seed}; remove one (no silent overwrite)")
        cells[cell][seed] = vals
    md = ["| " + " | ".join(varying + metrics) + " |", "|" + "---|" * len(varying) + "---:|" * len(metrics)]
    tex = [r"\begin{tabular}{" + "l" * len(varying) + "r" * len(metrics) + "}", r"\toprule",
           " & ".join([k.split(".")[-1].replace("_", r"\_") for k in varying] + [m.replace("_", r"\_") for m in metrics])
           + r" \\", r"\midrule"]
    missing = []
    for cell in sorted(cells, key=lambda c: tuple(str(x) for x in c)):
        seeds = cells[cell]
        if not seeds:
            missing.append(dict(zip(varying, cell)))
        vals = [_fmt([s.get(m) for s in seeds.values()]) for m in metrics]
        names = [str(c) for c in cell]  # empty in a seeds-only sweep: the row is the metrics' cells, like the header
        md.append("| " + " | ".join(names + vals) + " |")
        tex.append(" & ".join(names + [v.replace("±", r"$\pm$").replace("—", "--") for v in vals]) + r" \\")
    tex += [r"\bottomrule", r"\end{tabular}"]
    text = "\n".join(md) + "\n"
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
    md, tex = build(root, cfg.table.row, list(cfg.table.metrics), cfg.table.any_version)
    atomic_write_text(root / "table.md", md)
    atomic_write_text(root / "table.tex", tex)
    print(md)
    return {"table": str(root / "table.md"), "latex": str(root / "table.tex")}
