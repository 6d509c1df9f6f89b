"""Per-video work spread over forked worker processes.

Videos are independent until precision/recall are accumulated, and almost all of an evaluation's time is the
per-video part (tube IoU inside pycocotools' C code, which holds the GIL, then matching), so threads cannot
help but processes can. Fork is used because the children then read the labelsets from the parent's memory
instead of receiving a pickled copy; the parent works on the first share itself. Where fork is not available
the work stays in the calling process. Results come back in input order, so the outcome is identical to the
serial loop whatever the number of workers.
"""
from __future__ import annotations

import gc
import multiprocessing as mp
import os
import warnings
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from typing import Any, Callable, Sequence

# Below this many items per process the fork and the result transfer cost more than they save.
MIN_ITEMS_PER_WORKER = 64
MAX_AUTO_WORKERS = 8

_JOB: tuple[Callable[..., Any], Sequence[tuple]] | None = None  # what forked children read


def available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))  # respects SLURM / taskset CPU masks
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def resolve_workers(workers: int | None, n_items: int) -> int:
    """None -> as many as the CPUs allow (at most MAX_AUTO_WORKERS) while each gets MIN_ITEMS_PER_WORKER."""
    if workers is not None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1 (or None for automatic), got {workers}")
        return workers
    return max(1, min(available_cpus(), MAX_AUTO_WORKERS, n_items // MIN_ITEMS_PER_WORKER))


@contextmanager
def gc_paused():
    """Pause the cyclic garbage collector: evaluation allocates hundreds of thousands of small acyclic dicts
    and lists, and each automatic full collection would walk every object of the labelsets held in memory."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _run_share(bounds: tuple[int, int]) -> list:
    fn, items = _JOB
    with gc_paused():
        return [fn(*items[i]) for i in range(*bounds)]


def map_items(fn: Callable[..., Any], items: Sequence[tuple], workers: int | None = None) -> list:
    """[fn(*item) for item in items], split into contiguous shares over ``workers`` processes."""
    global _JOB
    n = len(items)
    workers = min(resolve_workers(workers, n), max(n, 1))
    if workers <= 1 or "fork" not in mp.get_all_start_methods():
        with gc_paused():
            return [fn(*it) for it in items]
    edges = [round(k * n / workers) for k in range(workers + 1)]
    shares = list(zip(edges[:-1], edges[1:]))
    _JOB = (fn, items)
    try:
        with warnings.catch_warnings():
            # Python >= 3.12 warns about fork in a threaded process; the children only run numpy/pycocotools
            # code on data they already hold and take no lock another thread could own.
            warnings.simplefilter("ignore", DeprecationWarning)
            with ProcessPoolExecutor(workers - 1, mp_context=mp.get_context("fork")) as pool:
                futures = [pool.submit(_run_share, s) for s in shares[1:]]
                out = _run_share(shares[0])
                for f in futures:
                    out.extend(f.result())
        return out
    except BrokenProcessPool:
        warnings.warn("an evaluation worker process died (out of memory?); evaluating in this process instead")
        with gc_paused():
            return [fn(*it) for it in items]
    finally:
        _JOB = None
