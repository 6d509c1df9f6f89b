"""Exact mid-epoch resume and what a resume accepts or refuses (R1, R2, R6-R8 of ../shared/RELIABILITY.md)."""
from __future__ import annotations


import lightning as L
import numpy as np
import pytest
import torch

from test_training import TINY  # the tiny model and solver of the training tests
from _faults import Trace, _data, _fit  # noqa: F401


@pytest.mark.slow
@pytest.mark.parametrize("num_workers", [0, 2])
def test_resume_mid_epoch_continues_the_uninterrupted_sequence(sparse_data, tmp_path, num_workers):
    """An exception at step 5 (mid-epoch: 2 batches per epoch) -> on_exception.ckpt -> resume: the clips, losses,
    learning rates and epochs of steps 6.. equal those of an uninterrupted run."""
    from lightning.pytorch.callbacks import OnExceptionCheckpoint

    from s2d.lit.fault_injector import FaultInjector

    full = Trace()
    tr_full = _fit(tmp_path / "a", *_data(sparse_data, num_workers), 9, [full])
    assert full.rows[0][4] == 0 and full.rows[-1][4] == 4  # several epochs
    first, second = Trace(), Trace()
    with pytest.raises(RuntimeError, match="injected failure at step 5"):
        _fit(tmp_path / "b", *_data(sparse_data, num_workers), 9,
             [first, FaultInjector("raise", 5), OnExceptionCheckpoint(str(tmp_path / "ck"))])
    ckpt = tmp_path / "ck" / "on_exception.ckpt"
    assert torch.load(ckpt, weights_only=True)["global_step"] == 5
    tr = _fit(tmp_path / "c", *_data(sparse_data, num_workers), 9, [second], ckpt_path=str(ckpt))
    resumed = first.rows + second.rows
    assert [r[0] for r in resumed] == [r[0] for r in full.rows] == list(range(1, 10))
    assert [r[1] for r in resumed] == [r[1] for r in full.rows]   # the same clips, in the same order
    assert [r[3] for r in resumed] == [r[3] for r in full.rows]   # the same LR schedule
    assert [r[4] for r in resumed] == [r[4] for r in full.rows]   # the same epochs
    np.testing.assert_allclose([r[2] for r in resumed], [r[2] for r in full.rows], rtol=1e-6)
    assert tr.global_step == 9 and tr.current_epoch == tr_full.current_epoch


def test_resume_with_a_wrong_lr_keeps_the_checkpoint_optimizer_state(sparse_data, tmp_path, caplog):
    from s2d.lit.run_stamp import check_resume

    ref = Trace()
    _fit(tmp_path / "a", *_data(sparse_data), 5, [ref])
    _fit(tmp_path / "b", *_data(sparse_data), 2, [L.pytorch.callbacks.ModelCheckpoint(tmp_path / "ck", save_last=True)])
    ckpt = tmp_path / "ck" / "last.ckpt"
    module, data = _data(sparse_data, lr=0.5)  # deliberately wrong
    saved = {"optim": {"lr": 1e-3}, "model": TINY}
    sd = torch.load(ckpt, weights_only=True)
    sd["s2d"] = {"config": saved}
    with caplog.at_level("WARNING"):
        check_resume(sd, ckpt, {"optim": {"lr": 0.5}, "model": TINY}, module.state_dict(), 5)
    assert "optim.lr: 0.001 -> 0.5" in caplog.text
    after = Trace()
    _fit(tmp_path / "c", module, data, 5, [after], ckpt_path=str(ckpt))
    assert [r[3] for r in after.rows] == [r[3] for r in ref.rows[2:]]  # 1e-3, then 5e-4 after the milestone
    np.testing.assert_allclose([r[2] for r in after.rows], [r[2] for r in ref.rows[2:]], rtol=1e-6)


def test_resume_refusals_name_the_key_or_list_the_state_dict_keys():
    from s2d.errors import ConfigError, S2DError
    from s2d.lit.run_stamp import check_resume

    own = {"a.weight": torch.zeros(2, 3), "b.bias": torch.zeros(4)}
    ckpt = {"global_step": 7, "state_dict": {"a.weight": torch.zeros(2, 3), "b.bias": torch.zeros(4)},
            "s2d": {"config": {"model": {"num_queries": 10}}}}
    check_resume(ckpt, "x.ckpt", {"model": {"num_queries": 10}}, own, max_steps=7)  # fits: no error
    # R6: a structural change is refused, naming the key, unless explicitly allowed
    with pytest.raises(ConfigError, match=r"model.num_queries.*10 -> 20.*resume.allow_config_change"):
        check_resume(ckpt, "x.ckpt", {"model": {"num_queries": 20}}, own, max_steps=10)
    check_resume(ckpt, "x.ckpt", {"model": {"num_queries": 20}}, own, max_steps=10, allow_config_change=True)
    # R7: missing / unexpected / reshaped keys are listed
    other = {"a.weight": torch.zeros(3, 3), "c.weight": torch.zeros(1)}
    with pytest.raises(S2DError, match=r"1 missing keys \['c.weight'\], 1 unexpected keys \['b.bias'\], "
                                       r"1 keys of another shape \['a.weight'\]"):
        check_resume(ckpt, "x.ckpt", {"model": {"num_queries": 10}}, other, max_steps=10)
    # R8: a checkpoint that trained further than this run is allowed to
    with pytest.raises(ConfigError, match=r"train.max_steps.*trained 7 steps, more than train.max_steps=5"):
        check_resume(ckpt, "x.ckpt", {"model": {"num_queries": 10}}, own, max_steps=5)


def test_init_from_pretrained_accepts_only_allowlisted_missing_keys(tmp_path):
    from s2d.errors import ConfigError
    from s2d.models import VideoMask2Former

    model = VideoMask2Former(**TINY)
    sd = {k: v for k, v in model.state_dict().items() if not k.startswith("decoder.")}
    torch.save(sd, tmp_path / "backbone_only.pt")
    with pytest.raises(ConfigError, match=r"model.pretrained.*required tensors missing.*missing decoder\."):
        VideoMask2Former(**TINY).load_pretrained(tmp_path / "backbone_only.pt")
    report = VideoMask2Former(**TINY).load_pretrained(tmp_path / "backbone_only.pt", allow_missing=("decoder.",))
    assert len(report.loaded) == len(sd) and report.unexpected == []
