"""The distillation settings as a plain dataclass (no Lightning import), so the config schema can use it."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class DistillParams:
    """Every distillation setting and its default, defined here once: the config's ``distill`` section is this
    dataclass. The defaults are the short CPU schedule's (``distill=paper`` sets the method's momentum 0.999)."""
    ema_momentum: float = 0.99         # per step; 0.999 (the method's, for 32k steps) leaves a random teacher
    teacher_score: float = 0.75        # teacher queries at least this confident become distillation targets
    distill_weight: float = 1.0
    distill_class_weight: float = 0.0
    distill_warmup: int = 0            # steps of keymask loss alone before the teacher's term starts
