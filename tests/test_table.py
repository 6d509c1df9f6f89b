"""s2d table: one row per finished setting; unfinished runs excluded and listed; duplicates refused."""
from __future__ import annotations

import json

import pytest
import yaml

from s2d.errors import S2DError
from s2d.stages.table import build


def _run(root, name, overrides, metrics=None, complete=True):
    d = root / name
    (d / ".hydra").mkdir(parents=True)
    (d / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    if metrics is not None:
        (d / "metrics.json").write_text(json.dumps({"complete": complete, "metrics": {"sparse keymasks": metrics}}))


def test_rows_per_setting_and_unfinished_listed(tmp_path):
    _run(tmp_path, "a", ["keymasks.gamma_thr=0.2", "stage=keymasks"], {"AP": 10.0, "AP50": 30.0, "AP75": -1, "AR10": 5})
    _run(tmp_path, "b", ["keymasks.gamma_thr=0.4", "stage=keymasks"], {"AP": 12.5, "AP50": 31.0, "AP75": 2, "AR10": 6})
    _run(tmp_path, "c", ["keymasks.gamma_thr=0.3"], None)                                  # crashed: no metrics
    _run(tmp_path, "d", ["keymasks.gamma_thr=0.5"], {"AP": 1.0}, complete=False)          # not finished
    text = build(tmp_path, "sparse keymasks", ["AP", "AP50", "AP75", "AR10"])
    lines = text.splitlines()
    assert lines[0] == "| keymasks.gamma_thr | AP | AP50 | AP75 | AR10 |"
    assert lines[2] == "| 0.2 | 10.0 | 30.0 | — | 5.0 |"     # -1 (undefined) renders as a dash
    assert lines[3] == "| 0.4 | 12.5 | 31.0 | 2.0 | 6.0 |"
    assert "Excluded (unfinished): c, d" in text


def test_two_runs_for_one_setting_is_an_error(tmp_path):
    _run(tmp_path, "a", ["keymasks.gamma_thr=0.2", "seed=1"], {"AP": 1.0})
    _run(tmp_path, "b", ["keymasks.gamma_thr=0.2", "seed=1"], {"AP": 2.0})
    _run(tmp_path, "c", ["keymasks.gamma_thr=0.3", "seed=1"], {"AP": 2.0})
    with pytest.raises(S2DError, match="two finished runs for the same setting"):
        build(tmp_path, "sparse keymasks", ["AP"])
