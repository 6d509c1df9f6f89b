"""``s2d table``: the ablation table of a sweep, one row per setting.

Each finished run folder holds ``metrics.json`` (with ``"complete": true``) and Hydra's
``.hydra/overrides.yaml``; the row label is the run's overrides minus the ones shared by every run.
Unfinished runs (no metrics, or not complete) are excluded and listed under the table.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from s2d.errors import S2DError
from s2d.io.atomic import atomic_write_text


def collect(root: Path, row: str) -> tuple[list[tuple[dict, dict]], list[str]]:
    runs, unfinished = [], []
    for hydra_dir in sorted(root.rglob(".hydra")):
        run = hydra_dir.parent
        overrides = yaml.safe_load((hydra_dir / "overrides.yaml").read_text()) or [] \
            if (hydra_dir / "overrides.yaml").exists() else []
        m = run / "metrics.json"
        try:
            data = json.loads(m.read_text()) if m.exists() else None
        except json.JSONDecodeError:
            data = None
        if not data or not data.get("complete") or row not in data.get("metrics", {}):
            unfinished.append(str(run.relative_to(root)))
            continue
        setting = dict(o.split("=", 1) for o in overrides if "=" in o and not o.startswith(("hydra", "stage=")))
        runs.append((setting, data["metrics"][row]))
    return runs, unfinished


def build(root: Path, row: str, metrics: list[str]) -> str:
    runs, unfinished = collect(root, row)
    if not runs:
        raise S2DError(f"{root}: no finished runs with a '{row}' row (unfinished: {unfinished[:10]})")
    keys = sorted({k for s, _ in runs for k in s})
    varying = [k for k in keys if len({s.get(k) for s, _ in runs}) > 1]
    seen: dict[tuple, int] = {}
    lines = ["| " + " | ".join(varying + metrics) + " |", "|" + "---|" * len(varying) + "---:|" * len(metrics)]
    for setting, vals in sorted(runs, key=lambda r: tuple(str(r[0].get(k)) for k in varying)):
        cell = tuple(setting.get(k) for k in varying)
        if cell in seen:
            raise S2DError(f"{root}: two finished runs for the same setting {dict(zip(varying, cell))}")
        seen[cell] = 1
        lines.append("| " + " | ".join(str(c) for c in cell) + " | " +
                     " | ".join("—" if vals.get(k) is None or vals[k] < 0 else f"{vals[k]:.1f}" for k in metrics) + " |")
    text = "\n".join(lines) + "\n"
    if unfinished:
        text += "\nExcluded (unfinished): " + ", ".join(unfinished) + "\n"
    return text


def run(cfg: Any, run_dir: Path) -> dict:
    if cfg.table.root is None:
        raise S2DError("s2d table needs table.root=<folder of runs, e.g. outputs/multirun/ablation_keymasks>")
    root = Path(cfg.table.root)
    text = build(root, cfg.table.row, list(cfg.table.metrics))
    atomic_write_text(root / "table.md", text)
    print(text)
    return {"table": str(root / "table.md")}
