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
