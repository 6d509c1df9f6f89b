"""``SpeedMonitor``: training throughput and peak accelerator memory, as a researcher sizing a cluster job asks.

Logs ``speed/clips_per_s`` (clips of the global batch per second of wall time, over the steps since the last
log, so data loading counts) and on CUDA ``speed/peak_mem_gib`` (the most memory PyTorch held on this process's
GPU since the fit began), and ends the fit with one line: steps, clips/s and peak memory. The first step is left
out of the rate: it builds kernels, autotunes convolutions and fills the data loader's queue.
"""
from __future__ import annotations

import logging
import time

import lightning as L
import torch

log = logging.getLogger(__name__)


def peak_memory_gib(device: torch.device) -> float | None:
    """The peak memory PyTorch's allocator held on a CUDA device, in GiB; None elsewhere."""
    if device.type != "cuda":
        return None
    return torch.cuda.max_memory_allocated(device) / 2 ** 30


class SpeedMonitor(L.Callback):
    def __init__(self, stage: str = "train", every_n_steps: int = 50):
        self.stage = stage
        self.every = max(1, int(every_n_steps))
        self.clips = 0          # clips since the first timed step (global batch)
        self.seconds = 0.0
        self.window = [0, 0.0]  # clips, seconds since the last log
        self._t0: float | None = None
        self._first = True

    def on_train_start(self, trainer, module) -> None:
        if module.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(module.device)

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        if self._t0 is None:
            self._t0 = time.perf_counter()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        now = time.perf_counter()
        dt, self._t0 = now - self._t0, now  # from the end of the last step: loading the batch counts
        if self._first:  # warm-up
            self._first = False
            return
        n = int(batch["clips"].shape[0]) * trainer.world_size
        self.clips += n
        self.seconds += dt
        self.window[0] += n
        self.window[1] += dt
        if trainer.global_step % self.every == 0 and self.window[1] > 0:
            module.log("speed/clips_per_s", self.window[0] / self.window[1], batch_size=1, rank_zero_only=True)
            peak = peak_memory_gib(module.device)
            if peak is not None:
                module.log("speed/peak_mem_gib", peak, batch_size=1, reduce_fx="max")
            self.window = [0, 0.0]

    def on_validation_end(self, trainer, module) -> None:
        self._t0 = None  # validation time is not training time

    def rate(self) -> float | None:
        return self.clips / self.seconds if self.seconds > 0 else None

    def on_train_end(self, trainer, module) -> None:
        # on_train_end, not on_fit_end: the module is still on its device (Lightning's teardown moves it)
        rate = self.rate()
        if rate is None or not trainer.is_global_zero:
            return
        peak = peak_memory_gib(module.device)
        log.info("%s: %.2f clips/s over %d clips (global batch, first step left out)%s", self.stage, rate,
                 self.clips, "" if peak is None else f", peak GPU memory {peak:.2f} GiB on rank 0")
