"""``AmpSkipCounter``: counts the optimizer steps that float16 mixed precision skipped.

With ``train.precision=16-mixed`` Lightning scales the loss by a GradScaler; a step whose gradients overflow
float16 (inf/NaN after unscaling) is not applied, and the scaler halves its scale. That is the designed
behaviour, not an error (the first steps of a run often calibrate the scale this way), but a run that skips
many steps trains on fewer than it says. The scaler only reports a skip through its scale, which drops on a skip
and nothing else (it grows after ``growth_interval`` good steps), so the scale before and after each batch tells.
Logged as ``amp/skipped_steps`` (the running count); bf16 and float32 have no scaler and log nothing.
"""
from __future__ import annotations

import logging

import lightning as L

log = logging.getLogger(__name__)

_ANNOUNCED = 5  # skips named one by one in the log; after that only the end-of-fit count


def grad_scaler(trainer: L.Trainer):
    """The GradScaler of a 16-mixed run, or None (bf16, float32, or a precision plugin without one)."""
    return getattr(trainer.precision_plugin, "scaler", None)


class AmpSkipCounter(L.Callback):
    def __init__(self):
        self.skipped: list[int] = []   # the global steps whose update the scaler skipped (this launch)
        self._scale: float | None = None

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        scaler = grad_scaler(trainer)
        self._scale = None if scaler is None or not scaler.is_enabled() else float(scaler.get_scale())

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        if self._scale is None:
            return
        now = float(grad_scaler(trainer).get_scale())
        if now < self._scale:
            step = trainer.global_step - 1  # the step just taken (global_step counts it already)
            self.skipped.append(step)
            if len(self.skipped) <= _ANNOUNCED:
                log.info("step %d: float16 gradients overflowed; the GradScaler skipped the update and lowered its "
                         "scale %g -> %g%s", step, self._scale, now,
                         "" if len(self.skipped) < _ANNOUNCED else " (further skips only counted)")
        module.log("amp/skipped_steps", float(len(self.skipped)), reduce_fx="max", batch_size=1)

    def on_fit_end(self, trainer, module) -> None:
        if self.skipped and trainer.is_global_zero:
            log.info("float16 mixed precision skipped %d update(s) on overflow in this launch (first at step %d; "
                     "a few at the start are the GradScaler finding its scale)", len(self.skipped), self.skipped[0])
