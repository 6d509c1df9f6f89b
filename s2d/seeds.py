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
