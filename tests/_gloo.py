"""Two processes joined by a gloo process group, for tests of what ranks agree on (spawned: module-level
functions only)."""
from __future__ import annotations

import os
import socket


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _entry(rank: int, world: int, port: int, q, fn, args: tuple) -> None:
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        q.put((rank, fn(rank, world, *args)))
    except BaseException as e:  # report instead of leaving the parent waiting for the queue
        q.put((rank, repr(e)))
        raise
    finally:
        dist.destroy_process_group()


def on_two_ranks(fn, *args, timeout: float = 100) -> dict:
    """{rank: fn(rank, world, *args)} from 2 spawned gloo processes (an error's repr where one raised); both
    processes must exit cleanly."""
    import torch.multiprocessing as mp

    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    port = free_port()
    procs = [ctx.Process(target=_entry, args=(r, 2, port, q, fn, args)) for r in range(2)]
    for p in procs:
        p.start()
    out = dict(q.get(timeout=timeout) for _ in procs)
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0, out
    return out
