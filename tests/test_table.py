"""s2d table: one row per setting, seeds aggregated, unfinished/other-version runs excluded and listed,
missing settings shown as a dash, duplicates refused; LaTeX beside markdown."""
from __future__ import annotations

import json

import pytest
import yaml

from s2d.errors import S2DError
from s2d.stages.table import build
from s2d.version import code_version


def _run(root, name, overrides, metrics=None, complete=True, version=None):
    d = root / name
    (d / ".hydra").mkdir(parents=True)
    (d / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    if metrics is not None:
        (d / "metrics.json").write_text(json.dumps({"complete": complete, "code_version": version or code_version(),
                                                    "metrics": {"sparse keymasks": metrics}}))


def test_rows_seeds_exclusions_and_missing(tmp_path):
    _run(tmp_path, "a1", ["keymasks.gamma_thr=0.2", "seed=0", "stage=keymasks"], {"AP": 10.0, "AP50": 30.0})
    _run(tmp_path, "a2", ["keymasks.gamma_thr=0.2", "seed=1"], {"AP": 14.0, "AP50": 34.0})
    _run(tmp_path, "b", ["keymasks.gamma_thr=0.4", "seed=0"], {"AP": 12.5, "AP50": -1})
    _run(tmp_path, "c", ["keymasks.gamma_thr=0.3", "seed=0"], None)                            # crashed
    _run(tmp_path, "d", ["keymasks.gamma_thr=0.4", "seed=1"], {"AP": 1.0}, complete=False)     # not finished
    _run(tmp_path, "e", ["keymasks.gamma_thr=0.4", "seed=2"], {"AP": 99.0}, version="0.0.1+old")
    md, tex = build(tmp_path, "sparse keymasks", ["AP", "AP50"], any_version=False)
    lines = md.splitlines()
    assert lines[0] == "| keymasks.gamma_thr | AP | AP50 |"
    assert lines[2] == "| 0.2 | 12.0 ± 2.0 (2) | 32.0 ± 2.0 (2) |"     # two seeds: mean ± std (n)
    assert lines[3] == "| 0.3 | — | — |"                                  # no finished run: a dash ...
    assert lines[4] == "| 0.4 | 12.5 | — |"                               # ... and -1 (undefined) too
    assert "c (unfinished)" in md and "d (unfinished)" in md and "e (code version 0.0.1+old)" in md
    assert "Missing (no finished run): {'keymasks.gamma_thr': '0.3'}" in md
    assert r"12.0 $\pm$ 2.0 (2)" in tex and tex.startswith(r"\begin{tabular}{lrr}")
    md_all, _ = build(tmp_path, "sparse keymasks", ["AP"], any_version=True)
    assert "| 0.4 | 55.8 ± 43.2 (2) |" in md_all


def test_two_runs_for_one_setting_and_seed_is_an_error(tmp_path):
    _run(tmp_path, "a", ["keymasks.gamma_thr=0.2", "seed=1"], {"AP": 1.0})
    _run(tmp_path, "b", ["keymasks.gamma_thr=0.2", "seed=1"], {"AP": 2.0})
    _run(tmp_path, "c", ["keymasks.gamma_thr=0.3", "seed=1"], {"AP": 2.0})
    with pytest.raises(S2DError, match="two finished runs for the same setting.*seed 1"):
        build(tmp_path, "sparse keymasks", ["AP"])


def test_a_seeds_only_sweep_is_one_row_as_wide_as_its_header(tmp_path):
    """`s2d run -m seed=0,1,2`: nothing but the seed varies, so the table is one row of metrics (no empty cell)."""
    for seed, ap in ((0, 10.0), (1, 14.0), (2, 12.0)):
        _run(tmp_path, f"seed={seed}", [f"seed={seed}", "name=seeds"], {"AP": ap, "AP50": 30.0 + seed})
    md, tex = build(tmp_path, "sparse keymasks", ["AP", "AP50"])
    lines = md.splitlines()
    assert lines[:3] == ["| AP | AP50 |", "|---:|---:|", "| 12.0 ± 1.6 (3) | 31.0 ± 0.8 (3) |"]
    assert [line.count("|") for line in lines[:3]] == [3, 3, 3]
    assert r"12.0 $\pm$ 1.6 (3) & 31.0 $\pm$ 0.8 (3) \\" in tex


def test_the_table_names_the_compute_its_runs_came_from(tmp_path):
    """Runs of several machines are aggregated, and the table says so with how many runs each gave; one machine
    is named once; a run that recorded nothing (older code) is counted as 'not recorded'."""
    avx2 = {"torch": "2.4.1", "cpu_kernels": "AVX2", "threads": "2"}
    avx512 = {"torch": "2.4.1", "cpu": "Intel Xeon", "cpu_kernels": "AVX512", "threads": "2",
              "onednn_isa": "AVX512_CORE"}
    for seed, env in ((0, avx2), (1, avx2), (2, avx512)):
        d = tmp_path / f"seed={seed}"
        (d / ".hydra").mkdir(parents=True)
        (d / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump([f"seed={seed}"]))
        (d / "metrics.json").write_text(json.dumps({"complete": True, "code_version": code_version(),
                                                    "compute": env, "metrics": {"final model": {"AP": 1.0 + seed}}}))
    md, _ = build(tmp_path, "final model", ["AP"])
    assert ("Compute: runs from 2 environments" in md and "torch 2.4.1, CPU kernels AVX2, 2 threads (2 runs)" in md
            and "torch 2.4.1, Intel Xeon, CPU kernels AVX512, 2 threads, oneDNN ISA AVX512_CORE (1 run)" in md)
    assert "| 2.0 ± 0.8 (3) |" in md  # aggregated all the same
    (tmp_path / "seed=2" / "metrics.json").unlink()  # unfinished now: excluded, so one environment is left
    md, _ = build(tmp_path, "final model", ["AP"])
    assert "Compute: torch 2.4.1, CPU kernels AVX2, 2 threads (every run)." in md
    _run(tmp_path, "old", ["seed=3"], {"AP": 1.0})  # an older run's metrics.json has no compute
    md, _ = build(tmp_path, "sparse keymasks", ["AP"])
    assert "Compute: not recorded (every run)." in md


def test_a_baseline_row_gives_paired_gains_per_seed(tmp_path):
    """table.baseline: each run's row minus its own baseline row, then mean ± std over seeds and the count of seeds
    at or above it. Hand-computed: final - dense AP50 = +2, -4, +5 -> mean +1.0, std sqrt(14) = 3.7, 2 of 3."""
    rows = {0: ({"AP50": 98.0, "AP": -1}, {"AP50": 96.0, "AP": 10.0}),
            1: ({"AP50": 91.0, "AP": 20.0}, {"AP50": 95.0, "AP": 20.0}),
            2: ({"AP50": 100.0, "AP": 30.0}, {"AP50": 95.0, "AP": 25.0})}
    for seed, (final, dense) in rows.items():
        d = tmp_path / f"seed={seed}"
        (d / ".hydra").mkdir(parents=True)
        (d / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump([f"seed={seed}"]))
        (d / "metrics.json").write_text(json.dumps({"complete": True, "code_version": code_version(),
                                                    "metrics": {"final model": final, "dense": dense}}))
    md, tex = build(tmp_path, "final model", ["AP50", "AP"], baseline="dense")
    lines = md.splitlines()
    assert lines[2] == "| 96.3 ± 3.9 (3) | 25.0 ± 5.0 (2) |"                 # the row itself, as without one
    i = lines.index("| AP50 | AP |", 1)
    # AP: seed 0's final AP is undefined (-1), so that seed has no AP gain: +0 and +5 -> +2.5 ± 2.5, 2 of 2
    assert lines[i + 2] == "| +1.0 ± 3.7 (2 of 3 ≥ 0) | +2.5 ± 2.5 (2 of 2 ≥ 0) |"
    assert "final model minus dense" in md
    assert r"+1.0 $\pm$ 3.7 (2 of 3 $\geq$ 0)" in tex and tex.count(r"\begin{tabular}") == 2
    with pytest.raises(S2DError, match=r"table.baseline='dense labelset'.*\['dense', 'final model'\]"):
        build(tmp_path, "final model", ["AP50"], baseline="dense labelset")
    d = tmp_path / "seed=3"  # a run without the baseline row: in the row's table, named and left out of the gains
    (d / ".hydra").mkdir(parents=True)
    (d / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(["seed=3"]))
    (d / "metrics.json").write_text(json.dumps({"complete": True, "code_version": code_version(),
                                                "metrics": {"final model": {"AP50": 50.0}}}))
    md, _ = build(tmp_path, "final model", ["AP50"], baseline="dense")
    assert "| 84.8 ± 20.3 (4) |" in md and "| +1.0 ± 3.7 (2 of 3 ≥ 0) |" in md
    assert "Without a 'dense' row (left out of the gains): seed=3" in md
