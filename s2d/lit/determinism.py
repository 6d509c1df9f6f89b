"""``train.deterministic`` for the Lightning Trainer: false, true, or "warn".

``true`` makes PyTorch raise on any operation without a deterministic implementation. On CUDA the mask loss
hits one on every step: point sampling (``s2d/losses/point_sample.py``, as in Mask2Former) reads the mask logits
with ``grid_sample``, whose CUDA backward adds into the gradient with atomics and has no deterministic version,
so a strict run stops at the first backward. On CUDA ``true`` therefore becomes "warn": every deterministic
kernel that exists is used and the remaining ones warn once instead of stopping the run. The sampled points
themselves are deterministic everywhere (seeded generators, s2d/lit/distillation.py); only the summation order of
those gradients varies. On the CPU every operation used here has a deterministic kernel and ``true`` stays true.

Deterministic cuBLAS also needs ``CUBLAS_WORKSPACE_CONFIG`` set before the first CUDA matrix product; it is set to
":4096:8" when a deterministic run on CUDA finds it unset.
"""
from __future__ import annotations

import os

WHY_WARN = ("train.deterministic=true on CUDA: point-sampled mask losses call grid_sample, whose CUDA backward has "
            "no deterministic implementation and would stop the run at the first step; using \"warn\" (every other "
            "operation deterministic, that one warns)")


def parse(value) -> bool | str:
    """A config value -> False, True or "warn" (YAML and the command line give bools or the strings
    true/false/warn)."""
    if isinstance(value, str):
        v = value.strip().lower()
        if v in ("true", "false"):
            return v == "true"
        if v == "warn":
            return "warn"
    elif isinstance(value, bool) or value is None:
        return bool(value)
    raise ValueError(f"must be false, true or warn, got {value!r}")


def trainer_mode(value, on_cuda: bool) -> tuple[bool | str, str | None]:
    """-> (the Trainer's ``deterministic`` argument, a note to log when the request was changed, else None)."""
    mode = parse(value)
    if mode is True and on_cuda:
        return "warn", WHY_WARN
    return mode, None


def uses_cuda(accelerator: str) -> bool:
    """Whether a Trainer with this accelerator setting trains on CUDA here."""
    import torch

    if accelerator in ("gpu", "cuda"):
        return True
    return accelerator == "auto" and torch.cuda.is_available()


def prepare_cuda(mode: bool | str) -> None:
    """Deterministic cuBLAS needs its workspace setting before the first CUDA matrix product."""
    if mode:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
