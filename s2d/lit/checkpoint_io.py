"""Checkpoints that are never half-written, and a resolver that skips broken ones.

``AtomicCheckpointIO`` serialises the checkpoint in memory, writes it to a temp file in the target folder,
fsyncs and ``os.replace``s it over the target (through ``s2d.io.atomic``): a crash or a full disk leaves the
previous ``last.ckpt`` intact. ``newest_valid_checkpoint`` picks, among a stage's checkpoints, the one with the
highest step that loads with ``torch.load(weights_only=True)``, and says which broken ones it skipped.
"""
from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from s2d.io.atomic import atomic_write_bytes

log = logging.getLogger(__name__)


class AtomicCheckpointIO(TorchCheckpointIO):
    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        buf = io.BytesIO()
        torch.save(checkpoint, buf)
        atomic_write_bytes(Path(path), buf.getvalue())


def newest_valid_checkpoint(folder: Path) -> tuple[Path | None, int]:
    """-> (checkpoint path, its global step), or (None, 0) when the folder has no loadable checkpoint."""
    best: tuple[Path | None, int] = (None, -1)
    for p in sorted(folder.glob("*.ckpt")):
        try:
            step = int(torch.load(p, map_location="cpu", weights_only=True)["global_step"])
        except Exception as e:  # noqa: BLE001 - any unreadable file is skipped, and said so
            log.warning("checkpoint %s is unreadable (%s: %s); skipping it", p, type(e).__name__, str(e)[:120])
            continue
        if step > best[1] or (step == best[1] and p.name == "last.ckpt"):
            best = (p, step)
    return (best[0], max(best[1], 0))
