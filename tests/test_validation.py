"""Validation during training: val/AP of the teacher's predictions, a NaN metric never becomes the best checkpoint."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from test_training import LOSS, OPTIM, TINY  # the tiny model and solver of the training tests
from _faults import NaNAtSecondValidation, ValTrace, _data, _oracle_expected, _oracle_module, _val_data, _val_fit  # noqa: F401


def test_validation_logs_the_video_ap_of_the_teacher_predictions(sparse_data, tmp_path):
    """val/AP during training = evaluate_ap of what the validation predicted (here: a known oracle), at every
    validation step; a real teacher's validation runs too (whole-video inference)."""
    expected = _oracle_expected(sparse_data)
    assert 0.2 < expected < 0.9  # one of two videos found: neither 0 nor 1
    trace = ValTrace()
    _val_fit(tmp_path / "a", _oracle_module(), _val_data(sparse_data), 4, [trace])
    assert trace.values == [(2, pytest.approx(expected, abs=1e-7)), (4, pytest.approx(expected, abs=1e-7))]
    real = ValTrace()
    _val_fit(tmp_path / "b", _data(sparse_data)[0], _val_data(sparse_data), 2, [real])
    assert len(real.values) == 1 and 0.0 <= real.values[0][1] <= 1.0


def test_a_nan_validation_metric_never_becomes_the_best_checkpoint(sparse_data, tmp_path):
    """N7: val/AP is finite at step 2 and NaN at step 4: the best checkpoint stays the one of step 2."""
    from s2d.stages.distill import best_checkpoint

    torch.manual_seed(0)
    module = NaNAtSecondValidation(TINY, LOSS, OPTIM, ema_momentum=0.9, teacher_score=0.5, distill_warmup=0, seed=0)
    best = best_checkpoint(tmp_path / "ck", "val/AP")
    trace = ValTrace()
    _val_fit(tmp_path, module, _val_data(sparse_data), 4, [trace, best])
    assert np.isfinite(trace.values[0][1]) and np.isnan(trace.values[1][1])
    assert [p.name for p in (tmp_path / "ck").iterdir()] == ["best-step000002.ckpt"]
    assert Path(best.best_model_path).name == "best-step000002.ckpt"
