"""Where inference runs: ``predict.device`` (auto | cpu | cuda) for every stage that runs a trained model on whole
videos (the dense labelset, the final model's predictions, ``s2d demo``, ``s2d predict``)."""
from __future__ import annotations

import torch

from s2d.errors import ConfigError


def resolve_device(choice: str, key: str = "predict.device") -> str:
    """auto -> cuda when torch sees a GPU, else cpu; cuda without a GPU is a config error naming ``key``."""
    choice = str(choice)
    if choice == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if choice == "cuda" and not torch.cuda.is_available():
        raise ConfigError(key, "cuda was asked for but torch sees no GPU")
    return choice


def model_device(model) -> str:
    """Where the model's weights are (cpu for a stand-in model without any)."""
    p = next(model.parameters(), None)
    return "cpu" if p is None else str(p.device)
