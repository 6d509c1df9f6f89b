"""What every per-video stage shares: a fingerprinted artifact folder, a progress bar over videos, failure
isolation (one bad video is named and the others' finished shards are kept), resuming, and splitting the
videos over the ranks of a multi-process job."""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Callable, NamedTuple

from omegaconf import OmegaConf
from tqdm.auto import tqdm

from s2d.data.sources import Dataset, VideoRecord
from s2d.errors import S2DError
from s2d.io.atomic import atomic_write_json
from s2d.io.job_ranks import failure_file, job_rank_world, wait_for
from s2d.io.locks import exclusive
from s2d.labelset.store import LabelsetStore, read_labelset
from s2d.labelset.types import Labelset, VideoLabels

log = logging.getLogger(__name__)


class StageOutput(NamedTuple):
    labels: Labelset               # the stage's labelset
    folder: Path                   # its artifact folder
    fingerprint: str               # identifies it; downstream fingerprints include it
    baseline: Labelset | None = None  # the keymask stage's IoU-linker baseline, reported beside it


def section(cfg: Any, key: str) -> dict:
    """A config section as plain types (for fingerprints and manifests)."""
    return OmegaConf.to_container(cfg[key], resolve=True, enum_to_str=True) if OmegaConf.is_config(cfg) \
        else dict(cfg[key])


def listed(items: list[str], sep: str = ", ", most: int = 10) -> str:
    """The first ``most`` of ``items`` for a log line, " ..." after them when there are more (a stage's warning
    names videos, and a data set of thousands must not fill the log)."""
    return sep.join(items[:most]) + (" ..." if len(items) > most else "")


def artifact_dir(cfg: Any, stage: str, fp: str) -> Path:
    return Path(cfg.paths.artifacts) / f"{stage}-{fp}"


def flow_cache_dir(cfg: Any) -> Path:
    """Dense flows of the videos, keyed by frame content: computed by whichever stage needs them first (motion
    masks, the flow tracker) and read by the other."""
    return Path(cfg.paths.artifacts) / "flow-cache"


def run_per_video(stage: str, root: Path, fp: str, ds: Dataset, fn: Callable[[VideoRecord], VideoLabels],
                  progress: bool = True, info: dict | None = None) -> Labelset:
    """Apply ``fn`` to every video whose shard is missing or corrupt, then finalise the store. When the job runs
    several copies of the command (srun tasks, DDP ranks), each takes its share of the videos
    (``s2d.io.job_ranks``)."""
    rank, world = job_rank_world()
    if world == 1:
        # another job of a sweep may be generating the same artifact (same fingerprint, same folder): the first
        # computes, the others wait and read it, instead of both writing one folder (and each clearing the
        # other's temp files as stale). The ranks of one job coordinate through their ledgers instead.
        with exclusive(root.with_name(root.name + ".lock"), f"{stage} at {root}"):
            return _run_per_video(stage, root, fp, ds, fn, progress, info, rank, world)
    return _run_per_video(stage, root, fp, ds, fn, progress, info, rank, world)


def _run_per_video(stage: str, root: Path, fp: str, ds: Dataset, fn: Callable[[VideoRecord], VideoLabels],
                   progress: bool, info: dict | None, rank: int, world: int) -> Labelset:
    started = time.time()
    if world == 1 and LabelsetStore.complete_at(root, fp):
        # finished, maybe by another job just now: read it without opening a store, whose clean-up of stale temp
        # files would remove the files that job may still be writing next to the set (e.g. a summary)
        log.info("%s: finished set found at %s, skipping", stage, root)
        return read_labelset(root, fp)
    store = LabelsetStore(root, fp, rank, world)
    if store.is_complete():
        log.info("%s: finished set found at %s, skipping", stage, root)
        return read_labelset(root, fp)
    mine = list(ds) if world == 1 else [r for i, r in enumerate(ds) if i % world == rank]
    todo = [r for r in mine if not store.done(r.name)]
    if len(todo) < len(mine):
        log.info("%s: resuming, %d of %d videos already done", stage, len(mine) - len(todo), len(mine))
    if world > 1:
        log.info("%s: rank %d of %d, %d of %d videos are this rank's", stage, rank, world, len(mine), len(ds))
        failure_file(root, rank).unlink(missing_ok=True)
    failures: dict[str, str] = {}
    for r in tqdm(todo, desc=stage, unit="video", disable=not progress):
        try:
            out = fn(r)
        except S2DError as e:
            log.error("%s: video '%s' failed: %s", stage, r.name, e)
            failures[r.name] = str(e)
            continue
        if out.name != r.name:
            raise RuntimeError(f"{stage}: produced labels for '{out.name}' while processing '{r.name}'")
        store.write_video(out)
    if failures:
        if world > 1:
            atomic_write_json(failure_file(root, rank), failures)
        lines = "\n".join(f"  {k}: {v}" for k, v in failures.items())
        raise S2DError(f"stage {stage}: {len(failures)} of {len(ds)} video(s) failed; the other videos' results are "
                       f"kept in {root} and a rerun only redoes what is missing:\n{lines}")
    if world > 1 and rank != 0:
        wait_for(store.is_complete, root, lambda: "the manifest (rank 0)", started)
        return read_labelset(root, fp)
    if world > 1:
        def missing() -> list[str]:  # committed by some rank; finalize() checks every shard's hash
            store.refresh()
            return [n for n in ds.names if not store.committed(n)]

        wait_for(lambda: not missing(), root, lambda: str(missing()[:10]), started)
    return store.finalize(ds.names, info)


DATA_IDENTITY = "data_identity.json"


def claim_run_folder(cfg: Any, run_dir: Path) -> bool:
    """A run folder holds the results of one data set. The first command records which (kind, root, annotation
    file, resolution, frame selection); a later command in the same folder on other data is refused with the
    way out, instead of mixing two data sets' reports and checkpoints. True when this command made the record
    (``release_run_folder`` takes it back if the command then fails before leaving anything)."""
    import json

    from s2d.stages.data import data_root

    d = cfg.data
    ident = {"kind": d.kind, "root": str(data_root(cfg).resolve()) if (d.root or d.kind != "demo") else None,
             "ann_file": d.ann_file, "short_side": d.short_side, "max_side": d.max_side,
             "videos": list(d.videos) if d.videos else None, "max_videos": d.max_videos, "stride": d.stride,
             "max_frames": d.max_frames,
             "demo": {k: d.demo[k] for k in d.demo} if d.kind == "demo" and d.root is None else None}
    path = run_dir / DATA_IDENTITY
    made = not path.is_file()
    if not made and ident["root"] is not None and not Path(ident["root"]).exists():
        return False  # a mistyped data.root: loading the data names it, more use than "other data" here
    if not made:
        try:
            before = json.loads(path.read_text())
        except (OSError, ValueError):
            before = None
        if before is not None and before != ident:
            changed = sorted(k for k in ident if before.get(k) != ident[k])
            raise S2DError(f"run folder {run_dir} holds results for other data ({', '.join(f'data.{k}' for k in changed)}"
                           f" differ: {', '.join(f'{before.get(k)!r} there' for k in changed[:2])}); give this run "
                           f"its own name=... (the folder is <name>-seed<seed>)")
    atomic_write_json(path, ident, indent=1)
    return made


# what a run folder holds before any stage has written a result: Hydra's config, the data record and the
# verb's log (<verb>.log)
_BOOKKEEPING = {".hydra", DATA_IDENTITY}


def release_run_folder(run_dir: Path) -> None:
    """Take back the data record of a command that failed before writing any result (a mistyped data.root, a
    folder with no videos): otherwise the corrected command, same name, would be refused as "other data"."""
    try:
        if all(p.name in _BOOKKEEPING or (p.suffix == ".log" and p.is_file()) for p in run_dir.iterdir()):
            (run_dir / DATA_IDENTITY).unlink(missing_ok=True)
    except OSError:
        pass
