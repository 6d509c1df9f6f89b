"""``s2d demo VIDEO.mp4``: the final model's instances drawn on a video, written as an mp4 (and a gif preview).

    s2d demo ../shared/data/demo_videos/apple/apple.mp4                 # model of the default run
    s2d demo my.mp4 demo.checkpoint=outputs/runs/x-seed0/checkpoints/final-<fp>/last.ckpt demo.score_thr=0.3
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import cv2
import numpy as np

from s2d.errors import S2DError

if TYPE_CHECKING:
    from s2d.inference.video_predict import Tube

log = logging.getLogger(__name__)


def write_mp4(path: Path, frames: list[np.ndarray], fps: float) -> Path:
    """RGB frames -> mp4 (OpenCV's mp4v encoder), written to a temp name and moved into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{path.name}.partial.mp4")
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    if not writer.isOpened():
        raise S2DError(f"cannot open an mp4 writer for {path}")
    try:
        for f in frames:
            writer.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    finally:
        writer.release()
    tmp.replace(path)
    return path


def trained_runs_hint(runs: Path) -> str:
    """What to do when this run has no final model: the runs that have one (s2d demo uses the run named by
    name= and seed=), or how to make one."""
    found = sorted({p.parents[2].name for p in runs.glob("*/checkpoints/final-*/last.ckpt")})
    if not found:
        return "run `s2d run` first (with the same name=... as here) or give demo.checkpoint=PATH"
    pick = ", ".join(found[:8]) + (" ..." if len(found) > 8 else "")
    return (f"runs with a final model in {runs}: {pick}. Name one with name=<name> seed=<seed> (the run folder is "
            "<name>-seed<seed>), or give demo.checkpoint=PATH")


def source_kind(path: Path) -> str:
    """How ``s2d demo`` reads PATH: a video file, or a folder holding video files (at any depth), as videos
    (``mp4``); any other folder as folders of image frames (``frames``)."""
    from s2d.data.video import VIDEO_EXTS

    if path.is_file() or any(p.suffix.lower() in VIDEO_EXTS for p in path.rglob("*")):
        return "mp4"
    return "frames"


def tubes_by_shot(frames: np.ndarray, bounds: list[tuple[int, int]],
                  predict: Callable[[np.ndarray], list[Tube]]) -> list[Tube]:
    """frames (T, H, W, 3), each shot's [start, stop) -> the tubes ``predict`` finds in each shot alone, their
    frames numbered in the whole video: no tube links across a cut."""
    from s2d.inference.video_predict import Tube

    tubes = []
    for a, b in bounds:
        for tb in predict(frames[a:b]):
            tubes.append(Tube({a + t: m for t, m in tb.masks.items()}, tb.scores, tb.mask_scores))
    return tubes


def run(cfg: Any, run_dir: Path) -> dict:
    from s2d.data.shots import ShotParams, find_cuts, frame_changes, shot_bounds
    from s2d.data.sources import open_dataset
    from s2d.inference.scale import input_scale
    from s2d.inference.video_predict import predict_video
    from s2d.stages.label import load_model
    from s2d.viz import overlay, palette, save_gif

    d = cfg.demo
    if d.video is None:
        raise S2DError("usage: s2d demo VIDEO.mp4 [overrides]  (or demo.video=PATH)")
    video_path = Path(d.video)
    if d.checkpoint:
        ckpt = Path(d.checkpoint)
    else:  # the most recent final model of this run
        found = sorted((run_dir / "checkpoints").glob("final-*/last.ckpt"), key=lambda p: p.stat().st_mtime)
        ckpt = found[-1] if found else run_dir / "checkpoints" / "final-*" / "last.ckpt"
    if not ckpt.exists():
        raise S2DError(f"no trained model at {ckpt}: " + trained_runs_hint(Path(cfg.paths.runs)))
    kind = source_kind(video_path)
    ds = open_dataset(kind, video_path, short_side=d.short_side)
    model, crop = load_model(cfg, ckpt, "teacher")
    outputs = []
    for r in ds:
        frames = r.video.frames(range(min(len(r.video), d.max_frames)) if d.max_frames else None)
        scale = input_scale(frames.shape[1:3], crop, cfg.label.input_scale)
        # an object is followed within its shot: no tube links across a cut (s2d/data/shots.py)
        cuts = find_cuts(frame_changes(frames), ShotParams(**cfg.data.shots)) if d.shots else []
        tubes = tubes_by_shot(frames, shot_bounds(len(frames), cuts), lambda f: predict_video(
            model, f, d.score_thr, cfg.label.window, cfg.label.overlap, cfg.label.link_iou, cfg.label.nms_iou,
            scale=scale, flip=cfg.label.flip))
        colors = palette(max(len(tubes), 1))
        drawn = []
        for t, f in enumerate(frames):
            present = [(i, tb.masks[t]) for i, tb in enumerate(tubes) if t in tb.masks]
            masks = np.stack([m for _, m in present]) if present else np.zeros((0, *f.shape[:2]), bool)
            drawn.append(overlay(f, masks, colors[[i for i, _ in present]] if present else None,
                                 labels=[str(i) for i, _ in present]))
        out = Path(d.out) if d.out else run_dir / "demo" / f"{r.name.replace('/', '_')}_s2d.mp4"
        write_mp4(out, drawn, d.fps)
        save_gif(out.with_suffix(".gif"), drawn[:: max(1, len(drawn) // 40)])
        shots = f" in {len(cuts) + 1} shots" if cuts else ""
        print(f"{r.name}: {len(tubes)} instances on {len(frames)} frames{shots} -> {out}")
        outputs.append(str(out))
    return {"videos": outputs}
