"""Mixed precision, determinism and throughput of the learning stages (RELIABILITY D5, N6).

The float16 overflow test runs on the CPU here (PyTorch's CPU GradScaler follows the same rules as its CUDA one)
and again on CUDA where a GPU is present (marker ``gpu``): ``pytest -m gpu`` on a GPU machine.
"""
from __future__ import annotations

import logging

import lightning as L
import pytest
import torch

from test_training import LOSS, OPTIM, TINY

CUDA = pytest.param("cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(),
                                                                         reason="needs a CUDA GPU")])


def _module_and_data(sparse_data, seed=0):
    from s2d.data.clips import AugmentConfig
    from s2d.data.datamodules import ClipDataModule
    from s2d.lit.distillation import DistillationModule

    ds, gt = sparse_data
    torch.manual_seed(seed)
    module = DistillationModule(TINY, LOSS, OPTIM, ema_momentum=0.9, teacher_score=0.5, distill_warmup=0, seed=seed)
    data = ClipDataModule(ds, gt, "sparse", batch_size=2, seed=seed, augment=AugmentConfig(size=(48, 64)))
    return module, data


class StudentSnapshots(L.Callback):
    """The student's weights after every step (global step -> flat copy)."""

    def __init__(self):
        self.after: dict[int, torch.Tensor] = {}

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        flat = torch.cat([p.detach().flatten().float().cpu() for p in module.student.parameters()])
        self.after[trainer.global_step - 1] = flat


def _fit_fp16(sparse_data, tmp_path, device, fault_step=None, steps=5):
    from lightning.pytorch.plugins import MixedPrecision

    from s2d.lit.amp_skips import AmpSkipCounter
    from s2d.lit.fault_injector import FaultInjector

    module, data = _module_and_data(sparse_data)
    counter, snaps = AmpSkipCounter(), StudentSnapshots()
    callbacks = [counter, snaps] + ([FaultInjector("overflow", step=fault_step)] if fault_step is not None else [])
    # a start scale of 2^8, not the default 2^16: the clean run must not be calibrating its scale (skipping
    # steps) during the 5 steps the test looks at
    scaler = torch.amp.GradScaler(device, init_scale=2.0 ** 8)
    tr = L.Trainer(max_steps=steps, accelerator=device, devices=1, plugins=[MixedPrecision("16-mixed", device, scaler)],
                   logger=False, enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
                   default_root_dir=str(tmp_path), gradient_clip_val=0.01, callbacks=callbacks)
    tr.fit(module, data)
    return tr, counter, snaps


@pytest.mark.parametrize("device", ["cpu", CUDA])
def test_fp16_overflow_skips_the_step_counts_it_and_the_run_goes_on(sparse_data, tmp_path, device, caplog):
    """N6: gradients that overflow float16 at step 2 -> the GradScaler skips that update (the student's weights
    after step 2 equal those after step 1), halves its scale, amp/skipped_steps counts it, and the run finishes."""
    caplog.set_level(logging.INFO, logger="s2d.lit.amp_skips")
    clean_tr, clean, _ = _fit_fp16(sparse_data, tmp_path / "clean", device)
    tr, counter, snaps = _fit_fp16(sparse_data, tmp_path / "fault", device, fault_step=2)
    assert tr.global_step == 5                                  # the run went on to its last step
    assert 2 in counter.skipped and 2 not in clean.skipped
    assert torch.equal(snaps.after[2], snaps.after[1])          # the skipped step changed nothing
    assert not torch.equal(snaps.after[3], snaps.after[2])      # the next one trains again
    assert float(tr.callback_metrics["amp/skipped_steps"]) == len(counter.skipped)
    assert any("step 2: float16 gradients overflowed" in r.getMessage() for r in caplog.records)
    scaler = tr.precision_plugin.scaler
    assert scaler.get_scale() < clean_tr.precision_plugin.scaler.get_scale()


def test_bf16_and_float32_have_no_scaler_and_count_nothing(sparse_data, tmp_path):
    from s2d.lit.amp_skips import AmpSkipCounter

    module, data = _module_and_data(sparse_data)
    counter = AmpSkipCounter()
    tr = L.Trainer(max_steps=2, accelerator="cpu", precision="bf16-mixed", logger=False, enable_progress_bar=False,
                   enable_model_summary=False, enable_checkpointing=False, default_root_dir=str(tmp_path),
                   callbacks=[counter])
    tr.fit(module, data)
    assert counter.skipped == [] and "amp/skipped_steps" not in tr.callback_metrics


def test_deterministic_modes():
    from s2d.lit.determinism import parse, trainer_mode

    assert [parse(v) for v in (False, True, "warn", "true", "False", None)] == [False, True, "warn", True, False, False]
    with pytest.raises(ValueError, match="false, true or warn"):
        parse("sometimes")
    assert trainer_mode(True, on_cuda=False) == (True, None)
    mode, note = trainer_mode("true", on_cuda=True)
    assert mode == "warn" and "grid_sample" in note
    assert trainer_mode("warn", on_cuda=True) == ("warn", None)
    assert trainer_mode(False, on_cuda=True) == (False, None)


def test_deterministic_config_key_is_validated(compose):
    from s2d.config import validate_config
    from s2d.errors import ConfigError

    validate_config(compose("train.deterministic=warn"))
    with pytest.raises(ConfigError, match="train.deterministic"):
        validate_config(compose("train.deterministic=sometimes"))


def _stage_trainer(compose, tmp_path, *overrides):
    from s2d.stages.distill import trainer

    cfg = compose("train.max_steps=2", *overrides)
    return trainer(cfg, tmp_path / "run", "distill", tmp_path / "ck")


def test_stage_trainer_keeps_true_on_cpu_and_makes_it_warn_on_cuda(compose, tmp_path, monkeypatch, caplog):
    """D5's rule, decided where the Trainer is built: a CUDA run asked for true gets warn, with the reason logged
    and cuBLAS's workspace set; a CPU run keeps true (torch's deterministic switch is on after it)."""
    from s2d.lit import determinism

    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    _stage_trainer(compose, tmp_path, "train.deterministic=true", "train.accelerator=cpu")
    assert torch.are_deterministic_algorithms_enabled() and not torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(False)
    monkeypatch.setattr(determinism, "uses_cuda", lambda accelerator: True)  # as on a GPU machine
    caplog.set_level(logging.WARNING, logger="s2d.stages.distill")
    _stage_trainer(compose, tmp_path, "train.deterministic=true", "train.accelerator=cpu")
    assert torch.are_deterministic_algorithms_enabled() and torch.is_deterministic_algorithms_warn_only_enabled()
    assert any("grid_sample" in r.getMessage() for r in caplog.records)
    import os

    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_strict_determinism_fails_on_cuda_point_sampling_and_warn_trains(compose, sparse_data, tmp_path):
    """D5 on a GPU: the failure the rule avoids is real (strict mode stops in grid_sample's backward), and a stage
    Trainer built with train.deterministic=true trains the point-sampled loss on CUDA."""
    from s2d.losses.point_sample import point_sample

    logits = torch.randn(2, 1, 16, 16, device="cuda", requires_grad=True)
    coords = torch.rand(2, 8, 2, device="cuda")
    torch.use_deterministic_algorithms(True)
    try:
        with pytest.raises(RuntimeError, match="grid_sampler"):
            point_sample(logits, coords).sum().backward()
    finally:
        torch.use_deterministic_algorithms(False)
    tr = _stage_trainer(compose, tmp_path, "train.deterministic=true", "train.accelerator=gpu")
    assert torch.is_deterministic_algorithms_warn_only_enabled()
    module, data = _module_and_data(sparse_data)
    tr.fit(module, data)
    assert tr.global_step == 2 and torch.isfinite(tr.callback_metrics["train/loss"])


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_point_sampling_on_cuda_is_a_function_of_the_seed():
    """The sampled points and the loss value on CUDA repeat exactly for the same (seed, step, clip) generators,
    and change with the seed."""
    from s2d.losses import VideoSetCriterion
    from s2d.seeds import step_seed

    torch.manual_seed(0)
    out = {"pred_logits": torch.randn(1, 6, 2, device="cuda"), "pred_masks": torch.randn(1, 6, 3, 24, 32, device="cuda")}
    tgt = [torch.zeros(2, 3, 48, 64, device="cuda")]
    tgt[0][0, :, :20, :30] = 1
    tgt[0][1, :, 25:, 30:] = 1
    crit = VideoSetCriterion(num_points=64)

    def loss(seed):
        gens = [torch.Generator(device="cuda").manual_seed(step_seed(seed, 5, 0))]
        return {k: float(v) for k, v in crit(out, tgt, gens).items()}

    assert loss(0) == loss(0)
    assert loss(0) != loss(1)


@pytest.mark.parametrize("device", ["cpu", CUDA])
def test_speed_monitor_counts_clips_after_the_first_step_and_logs_a_rate(sparse_data, tmp_path, caplog, device):
    from s2d.lit.speed import SpeedMonitor

    module, data = _module_and_data(sparse_data)
    speed = SpeedMonitor("distill", every_n_steps=2)
    caplog.set_level(logging.INFO, logger="s2d.lit.speed")
    tr = L.Trainer(max_steps=5, accelerator=device, logger=False, enable_progress_bar=False, enable_model_summary=False,
                   enable_checkpointing=False, default_root_dir=str(tmp_path), callbacks=[speed])
    tr.fit(module, data)
    assert speed.clips == 4 * 2                      # steps 1..4 of batch 2 (step 0 warms up)
    assert speed.rate() > 0 and float(tr.callback_metrics["speed/clips_per_s"]) > 0
    line = [r.getMessage() for r in caplog.records if r.getMessage().startswith("distill: ")]
    assert len(line) == 1 and "clips/s over 8 clips" in line[0]
    # peak memory where there is a GPU allocator to ask, read while the model is still on it
    assert ("peak GPU memory" in line[0]) == (device == "cuda")
    if device == "cuda":
        assert float(tr.callback_metrics["speed/peak_mem_gib"]) > 0


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_whole_video_inference_runs_on_cuda():
    """The dense labelset's inference on the GPU: frames go to the model's device, masks come back as numpy at
    frame size, and the tubes match the CPU's (a random model, so only the count and shapes are compared)."""
    import numpy as np

    from s2d.inference.video_predict import predict_video
    from s2d.models import VideoMask2Former

    torch.manual_seed(0)
    model = VideoMask2Former.from_config(TINY).eval()
    frames = np.random.default_rng(0).integers(0, 255, (6, 48, 64, 3), dtype=np.uint8)
    cpu = predict_video(model, frames, 0.0, window=4, overlap=1, nms_iou=None, device="cpu")
    gpu = predict_video(model.to("cuda"), frames, 0.0, window=4, overlap=1, nms_iou=None, device="cuda")
    assert len(gpu) > 0 and all(m.shape == (48, 64) and m.dtype == bool for tb in gpu for m in tb.masks.values())
    assert abs(len(gpu) - len(cpu)) <= max(1, len(cpu) // 10)
