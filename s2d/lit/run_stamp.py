"""What a checkpoint says about the run that wrote it, and the checks made before resuming from one.

``RunStamp`` adds the resolved config and the code version to every checkpoint (plain types, so it loads with
``weights_only=True``). ``check_resume`` compares a checkpoint with the run about to continue it:
  * the model config differs (e.g. ``model.num_queries``): refused, naming the keys, unless
    ``resume.allow_config_change=true``;
  * state-dict keys are missing, unexpected or of another shape: refused, listing them (before Lightning's
    strict load would fail with a long traceback);
  * the checkpoint has trained further than ``train.max_steps``: refused, naming the key;
  * solver settings differ (e.g. ``optim.lr``): allowed with a warning: the optimizer and scheduler state of
    the checkpoint win, as in an uninterrupted run.
"""
from __future__ import annotations

import logging
from typing import Any

import lightning as L

from s2d.compute import compute_env
from s2d.errors import ConfigError, S2DError
from s2d.version import code_version

log = logging.getLogger(__name__)

STRUCTURAL = ("model",)           # a change here makes the weights mean something else
SOLVER = ("optim", "loss", "distill")  # a change here is overridden by the checkpoint's optimizer state or warned


class RunStamp(L.Callback):
    def __init__(self, config: dict[str, Any]):
        self.config = config

    def on_save_checkpoint(self, trainer, module, checkpoint: dict) -> None:
        checkpoint["s2d"] = {"config": self.config, "code_version": code_version(), "compute": compute_env()}


def _flat(d: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(d, dict):
        return {prefix: d}
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def config_differences(saved: dict, current: dict, sections: tuple[str, ...]) -> list[str]:
    """'key: saved -> current' for every leaf of the given sections that differs."""
    a = _flat({k: saved.get(k) for k in sections})
    b = _flat({k: current.get(k) for k in sections})
    return [f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


def check_resume(ckpt: dict, path: Any, config: dict, module_state: dict, max_steps: int,
                 allow_config_change: bool = False) -> None:
    step = int(ckpt.get("global_step", 0))
    if step > max_steps:
        raise ConfigError("train.max_steps", f"{path} has trained {step} steps, more than train.max_steps="
                          f"{max_steps}; raise train.max_steps or start a new run")
    saved = (ckpt.get("s2d") or {}).get("config")
    if saved is not None:
        changed = config_differences(saved, config, STRUCTURAL)
        if changed and not allow_config_change:
            raise ConfigError(changed[0].split(":")[0], f"{path} was written with another model config "
                              f"({'; '.join(changed[:8])}); resuming would load weights into a different model. "
                              "Start a new run, or set resume.allow_config_change=true if this is intended")
        solver = config_differences(saved, config, SOLVER)
        if solver:
            log.warning("resuming %s with changed settings (%s): the checkpoint's optimizer and scheduler "
                        "state are used", path, "; ".join(solver[:8]))
    sd = ckpt.get("state_dict", {})
    missing = sorted(k for k in module_state if k not in sd)
    unexpected = sorted(k for k in sd if k not in module_state)
    shape = sorted(k for k in sd if k in module_state and tuple(sd[k].shape) != tuple(module_state[k].shape))
    if missing or unexpected or shape:
        raise S2DError(f"{path} does not fit this model: {len(missing)} missing keys {missing[:6]}, "
                       f"{len(unexpected)} unexpected keys {unexpected[:6]}, {len(shape)} keys of another shape "
                       f"{shape[:6]}")
