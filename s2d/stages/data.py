"""Stage "data": open (and for the demo, generate) the configured data set."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from s2d.data.demo import DemoConfig, demo_fingerprint, write_demo_dataset
from s2d.data.shots import ShotParams, split_shots
from s2d.data.sources import Dataset, open_dataset

log = logging.getLogger(__name__)


def demo_config(cfg: Any) -> DemoConfig:
    return DemoConfig(**{k: cfg.data.demo[k] for k in DemoConfig.__dataclass_fields__})


PROJECT_ROOT = Path(__file__).resolve().parents[2]  # where conf/ lives in a source checkout


def data_root(cfg: Any) -> Path:
    """The data folder. A relative data.root is read from the working directory; when nothing is there but the
    path exists next to the installed project (the shipped examples name ../shared/data/...), that one is used,
    so example configs work from any working directory."""
    if cfg.data.kind == "demo" and cfg.data.root is None:
        dc = demo_config(cfg)
        return Path(cfg.paths.artifacts) / "data" / f"demo-{demo_fingerprint(dc)}"
    root = Path(cfg.data.root)
    if not root.is_absolute() and not root.exists() and (PROJECT_ROOT / root).exists():
        return (PROJECT_ROOT / root).resolve()
    return root


def decoded_frames_dir(cfg: Any) -> Path:
    """Where the frames of video files (data=mp4) are kept decoded, at the working resolution: read from disk
    (the page cache) rather than held in memory for the whole run. Safe to delete; made again when needed."""
    return Path(cfg.paths.artifacts) / "decoded-frames"


def load_data(cfg: Any) -> Dataset:
    root = data_root(cfg)
    if cfg.data.kind == "demo":
        write_demo_dataset(root, demo_config(cfg))
    from tqdm import tqdm

    ds = open_dataset(cfg.data.kind, root, cfg.data.ann_file, cfg.data.short_side, cfg.data.max_side,
                      cfg.data.max_videos, list(cfg.data.videos) if cfg.data.videos else None,
                      cfg.data.stride, cfg.data.max_frames, decoded_frames_dir(cfg),
                      lambda it: tqdm(it, desc="SA-V videos", unit="video", disable=not cfg.progress),
                      cfg.data.all_frames)
    log.info("data: %d videos from %s (%s)%s", len(ds), root, cfg.data.kind,
             ", with ground truth" if ds.has_gt else ", no ground truth")

    if cfg.data.kind == "mp4":
        # every video file is decoded once, here, where its length is first asked (a folder of long videos takes
        # minutes; a video found decoded in decoded_frames_dir costs nothing)
        for r in tqdm(ds.records, desc="decode", unit="video", disable=not cfg.progress):
            len(r.video)
    if cfg.data.shots.split:
        records = split_shots(ds.records, ShotParams(**cfg.data.shots), Path(cfg.paths.artifacts) / "shots",
                              lambda it: tqdm(it, desc="shot cuts", unit="video", disable=not cfg.progress))
        if len(records) != len(ds):
            ds = Dataset(records, ds.kind, ds.root)
            log.info("data: %d videos after cutting at shot cuts", len(ds))
    return ds


def data_fingerprint(cfg: Any, ds: Dataset) -> str:
    from s2d.fingerprint import fingerprint

    # the generated demo is identified by its content fingerprint, real data by where it lives
    where = f"demo-{demo_fingerprint(demo_config(cfg))}" if cfg.data.kind == "demo" and cfg.data.root is None \
        else str(data_root(cfg).resolve())
    # data.all_frames named only when set, so the fingerprints of data without it are those from before the key
    extra = [str(Path(cfg.data.all_frames).resolve())] if cfg.data.all_frames else []
    return fingerprint("data", cfg.data.kind, where, cfg.data.ann_file,
                       cfg.data.short_side, cfg.data.max_side, ds.names,
                       [len(r.video) for r in ds.records], cfg.data.stride, cfg.data.max_frames, *extra)


def run(cfg: Any, run_dir: Path) -> dict:
    ds = load_data(cfg)
    rows = []
    for r in ds:
        h, w = r.video.size
        full = r.video.full_rate
        rows.append({"video": r.name, "frames": len(r.video), "size": f"{w}x{h}",
                     "instances": None if r.gt is None else len(r.gt.instances),
                     "recording": None if full is None else full.length})
    for row in rows:
        gt = "" if row["instances"] is None else f"{row['instances']} gt instances"
        rec = "" if row["recording"] is None else f"  (motion and tracks through {row['recording']} frames)"
        print(f"{row['video']:<24} {row['frames']:>5} frames  {row['size']:>9}  {gt}{rec}")
    return {"videos": rows}
