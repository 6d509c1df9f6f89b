"""``FaultInjector``: trigger a failure at a chosen step and rank, to check by hand (or in tests) that a run
survives it: ``s2d distill debug=fault fault.kind=raise|nan|overflow|sigusr1|sigterm fault.step=k fault.rank=r``.

  raise    an exception in the training loop at step k (the run stops; a rerun resumes)
  nan      the loss of step k becomes NaN on rank r: every rank stops at that step with an error naming it
  nan_weights  one weight of rank r's student becomes NaN at step k, so its predictions are NaN: the loss's
           collective tells every rank, all stop at that step, rank r naming its outputs
  overflow the loss of step k is multiplied by 2^100: finite in float32, but its gradients overflow float16, so
           with precision=16-mixed the GradScaler skips that step (counted as amp/skipped_steps) and the run goes on
  sigusr1  SIGUSR1 to this process at step k (SLURM's pre-timeout signal: Lightning checkpoints and requeues)
  sigterm  SIGTERM to this process at step k (SLURM's time limit, scancel: stop after the step, checkpoint)
  sigkill  SIGKILL to this process at step k (a node failure: nothing runs, the last periodic checkpoint counts)
"""
from __future__ import annotations

import os
import signal

import lightning as L

from s2d.choices import FaultKind

KINDS = FaultKind.values()


class FaultInjector(L.Callback):
    def __init__(self, kind: str, step: int, rank: int = 0):
        if kind not in KINDS:
            raise ValueError(f"fault.kind '{kind}' is not {FaultKind.names()}")
        self.kind, self.step, self.rank = kind, step, rank

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        if trainer.global_step != self.step or trainer.global_rank != self.rank:
            return
        if self.kind == "raise":
            raise RuntimeError(f"FaultInjector: injected failure at step {self.step} on rank {self.rank}")
        if self.kind == "nan":
            module.inject_nan_at = self.step
        elif self.kind == "overflow":
            module.inject_overflow_at = self.step
        elif self.kind == "nan_weights":  # a blown-up weight: NaN reaches the predictions and the loss
            import torch

            with torch.no_grad():
                module.student.decoder.mask_embed.layers[-1].bias.fill_(float("nan"))
        elif self.kind == "sigusr1":
            os.kill(os.getpid(), signal.SIGUSR1)
        elif self.kind == "sigterm":
            os.kill(os.getpid(), signal.SIGTERM)
        elif self.kind == "sigkill":
            os.kill(os.getpid(), signal.SIGKILL)
