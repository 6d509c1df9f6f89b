"""Which share of a generation stage this process does when a job starts several copies of the command.

``srun`` with several tasks (SLURM_PROCID / SLURM_NTASKS), ``torchrun`` (RANK / WORLD_SIZE) and Lightning's DDP
launcher (LOCAL_RANK / WORLD_SIZE) run the whole command on every rank, so every rank reaches the masks,
keymasks and label stages. Rather than all of them doing all the work (and racing on the same files), each
rank takes the videos with index % world == rank and commits them to its own ledger; rank 0 writes the
manifest once every video has a valid shard, and the other ranks wait for it. A rank whose videos fail leaves
``failed.rank<r>.json`` so the others stop with an error instead of waiting; a rank that never delivers is
reported after ``S2D_RANK_WAIT_S`` seconds (default one day).
"""
from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Callable

from s2d.errors import S2DError

POLL_S = 2.0

log = logging.getLogger(__name__)


def job_rank_world() -> tuple[int, int]:
    env = os.environ
    if "WORLD_SIZE" in env:
        world = int(env["WORLD_SIZE"])
        rank = int(env.get("RANK", env.get("SLURM_PROCID", env.get("LOCAL_RANK", 0))))
    elif int(env.get("SLURM_STEP_NUM_TASKS", env.get("SLURM_NTASKS", "1"))) > 1 and "SLURM_PROCID" in env:
        # the tasks of this srun step (an allocation's NTASKS also counts tasks no step started)
        world = int(env.get("SLURM_STEP_NUM_TASKS", env["SLURM_NTASKS"]))
        rank = int(env["SLURM_PROCID"])
    else:
        return 0, 1
    if not 0 <= rank < world:
        raise S2DError(f"rank {rank} is outside a world of {world} processes (RANK/WORLD_SIZE/SLURM_* variables)")
    return rank, world


def failure_file(root: Path, rank: int) -> Path:
    return root / f"failed.rank{rank}.json"


def wait_for(ready: Callable[[], bool], root: Path, what: Callable[[], str], since: float,
             poll: float = POLL_S) -> None:
    """Poll ``ready`` until it is true. Raises if another rank recorded a failure after ``since`` (files from an
    earlier attempt are older) or when S2D_RANK_WAIT_S runs out; ``what`` says what is still missing."""
    timeout = float(os.environ.get("S2D_RANK_WAIT_S", 86400))
    t0 = time.monotonic()
    if not ready():
        log.info("%s: waiting for the other ranks (%s); if this process was started alone inside a multi-task "
                 "allocation, unset WORLD_SIZE/SLURM_NTASKS or start it with srun", root, what())
    while not ready():
        for f in sorted(root.glob("failed.rank*.json")):
            if f.stat().st_mtime >= since - 5:
                raise S2DError(f"{f.name}: another rank failed on {sorted(json.loads(f.read_text()))}; see its "
                               "log. A rerun redoes only what is missing")
        if time.monotonic() - t0 > timeout:
            raise S2DError(f"{root}: waited {timeout:.0f} s (S2D_RANK_WAIT_S) for the other ranks; still "
                           f"missing: {what()}")
        time.sleep(poll)
