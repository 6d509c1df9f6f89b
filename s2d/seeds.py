"""Every seed a run derives, in one place. Each random stream is a pure function of the run's seed and of where
it is used (step, clip, epoch), never of the global RNG's history, so a resumed run, another rank or another
data-loader worker draws the same numbers. The three derivations predate this module and are kept as they are:
changing one would change every result of the suite."""
from __future__ import annotations

import numpy as np


def step_seed(*parts: int) -> int:
    """Training-step randomness (point sampling per clip, dropout per rank): FNV-1a-style mix of
    (seed, global step, clip or rank, ...), < 2**63."""
    h = 1469598103934665603
    for p in parts:
        h = ((h ^ int(p)) * 1099511628211) % (2 ** 63)
    return h


def item_seed(seed: int, epoch: int, index: int) -> int:
    """A training clip's randomness (fallback frames, augmentation): numpy's SeedSequence of (seed, epoch, item)."""
    return int(np.random.SeedSequence([seed, epoch, index]).generate_state(1)[0])


def epoch_seed(seed: int, epoch: int) -> int:
    """The order of an epoch's clips (the same on every rank, which then take their share)."""
    return seed * 100_003 + epoch


def seed_torch(seed: int) -> None:
    """Seed torch's global generators: the CPU one, CUDA's when CUDA is in use in this process, and MPS's.

    ``torch.manual_seed`` gives the same CPU stream, but in a process that has not initialised CUDA (a CPU run)
    it also queues a deferred seeding call for CUDA, XPU and MTIA, each with a formatted copy of the Python
    stack: about 5 ms per call, paid once per training step, and a queue that grows for the whole run. Seeding
    CUDA only once it is initialised loses nothing: its generator is seeded afresh before every use that matters
    here (each training step), and then it is initialised."""
    import torch

    torch.default_generator.manual_seed(int(seed))
    if torch.cuda.is_initialized():
        torch.cuda.manual_seed_all(int(seed))
    if torch.backends.mps.is_available():  # Apple GPUs: seeded directly, nothing is queued
        torch.mps.manual_seed(int(seed))
