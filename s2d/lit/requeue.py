"""``RequeueOnSignal``: SLURM's pre-timeout signal -> a consistent checkpoint and a requeue of the same job.

SLURM sends SIGUSR1 (``#SBATCH --signal=USR1@120``) some time before the job's limit. Lightning's own SLURM
handler saves inside the signal handler, i.e. at whatever point of a step the signal lands (after the
optimizer step but before the EMA update, say), and into ``default_root_dir``. Here the handler only raises a
flag; at the end of the current training batch (the state a periodic checkpoint has) the flag is agreed on by
all ranks, ``hpc_ckpt_<n>.ckpt`` is written into the stage's own checkpoint folder, and rank 0 runs
``scontrol requeue <job id>``. Training goes on until SLURM stops the job; the relaunched job resumes from the
newest valid checkpoint of that folder (``newest_valid_checkpoint``), in the same run folder, with the same
W&B run id.

Only the process that installed the handler acts on it: data-loader workers ignore the signal
(``s2d.data.datamodules``) and a forked child that inherited the handler does nothing.
"""
from __future__ import annotations

import logging
import os
import re
import signal
from pathlib import Path
from subprocess import call

import lightning as L
import torch
import torch.distributed as dist

log = logging.getLogger(__name__)


def slurm_job_id() -> str | None:
    array_job = os.environ.get("SLURM_ARRAY_JOB_ID")
    if array_job is not None:
        return f"{array_job}_{os.environ['SLURM_ARRAY_TASK_ID']}"
    return os.environ.get("SLURM_JOB_ID")


class RequeueOnSignal(L.Callback):
    def __init__(self, ckpt_dir: Path, signum: int = signal.SIGUSR1):
        self.ckpt_dir, self.signum = Path(ckpt_dir), signum
        self.pending = False
        self._owner = None
        self._previous = None

    def _handler(self, signum, frame) -> None:
        if os.getpid() == self._owner:  # not in a forked child that inherited this handler
            self.pending = True

    def on_train_start(self, trainer, module) -> None:
        self._owner = os.getpid()
        self._previous = signal.signal(self.signum, self._handler)

    def on_train_end(self, trainer, module) -> None:
        self._restore()

    def on_exception(self, trainer, module, exception) -> None:
        self._restore()

    def _restore(self) -> None:
        if self._previous is not None:
            signal.signal(self.signum, self._previous)
            self._previous = None

    def _agreed(self, module) -> bool:
        if not (dist.is_available() and dist.is_initialized()):
            return self.pending
        flag = torch.tensor([1.0 if self.pending else 0.0], device=module.device)
        dist.all_reduce(flag)  # SLURM may signal only some tasks: all ranks must save together or none
        return flag.item() > 0

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        if not self._agreed(module):
            return
        self.pending = False
        n = 1 + max((int(m.group(1)) for p in self.ckpt_dir.glob("hpc_ckpt_*.ckpt")
                     if (m := re.fullmatch(r"hpc_ckpt_(\d+)\.ckpt", p.name))), default=0)
        path = self.ckpt_dir / f"hpc_ckpt_{n}.ckpt"
        trainer.save_checkpoint(path)  # every rank calls it (collectives); rank 0 writes, atomically
        job = slurm_job_id()
        if not trainer.is_global_zero:
            return
        if job is None or not re.fullmatch(r"[0-9_]+", job):
            log.warning("signal %d: checkpoint %s written at step %d; not a SLURM job, so nothing is requeued",
                        self.signum, path, trainer.global_step)
            return
        log.info("signal %d: checkpoint %s written at step %d; requeueing SLURM job %s", self.signum, path,
                 trainer.global_step, job)
        try:
            result = call(["scontrol", "requeue", job])
        except OSError as e:  # no scontrol on this node's PATH
            log.warning("cannot run scontrol (%s); the checkpoint is kept, resubmit job %s by hand", e, job)
            return
        if result != 0:
            log.warning("scontrol requeue %s failed with exit code %s; the checkpoint is kept, resubmit by hand",
                        job, result)
