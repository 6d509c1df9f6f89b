"""The distillation settings as a plain dataclass (no Lightning import), so the config schema can use it."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class DistillParams:
    """Every distillation setting and its default, defined here once: the config's ``distill`` section is this
    dataclass. The defaults are the short CPU schedule's from scratch (``distill=paper``: the method's momentum 0.999, no
    warm-up)."""
    ema_momentum: float = 0.99         # per step; 0.999 (the method's, for 32k steps) leaves a random teacher
    teacher_score: float = 0.75        # teacher queries at least this confident become distillation targets
    distill_weight: float = 1.0
    distill_class_weight: float = 0.0
    # steps trained on the labels alone before the teacher's term starts (half of the CPU schedule's 1200): a
    # teacher trained from scratch is random at first, and its confident blobs, distilled, are learned as objects
    # (docs/RESULTS.md); the method starts from a trained checkpoint (distill=paper: 0). In steps, not a share
    # of train.max_steps, so that resuming with more steps keeps the schedule the first launch had.
    distill_warmup: int = 600
