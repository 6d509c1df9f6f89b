"""Stage "masks": single-frame unsupervised masks on every frame, stored as a labelset where each mask is an
instance with a segmentation on its own frame only (``extra.frame``)."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable

import numpy as np

from s2d.data.full_rate import numbered_step, reading, with_full_rate
from s2d.data.sources import Dataset, VideoRecord
from s2d.fingerprint import fingerprint
from s2d.io.atomic import atomic_write_json
from s2d.labelset.frames import frames_to_labels, per_frame_to_json
from s2d.labelset.types import VideoLabels
from s2d.stages.common import StageOutput, artifact_dir, flow_cache_dir, listed, run_per_video, section

log = logging.getLogger(__name__)
VERSION = 4  # bump when the stage's output for the same config changes (4: the motion flow at the frames' resolution)


def recording_path(folder: Path, name: str) -> Path:
    """Where a stage's artifact ``folder`` keeps a video's labels on every frame of its recording
    (s2d.data.full_rate): the masks stage's masks, which keymask discovery runs over, and the keymasks stage's
    keymasks, which the learned stages learn from (s2d.stages.keymasks)."""
    return folder / "recording" / f"{name}.json"


def keeps_recording(cfg: Any) -> bool:
    """Whether the masks stage keeps the recording's masks of videos with frames between theirs: motion masks
    alone (merged with MaskCut, the recording's frames would need MaskCut too, at 4 times its cost)."""
    return cfg.masks.source == "motion" and bool(cfg.masks.full_rate)


def make_producer(cfg: Any, ds: Dataset, folder: Path | None = None):
    """``folder``: the stage's artifact folder, where the recording's masks are kept (``recording_path``)."""
    m = cfg.masks
    progress = bool(cfg.progress)
    if m.source == "import":
        from s2d.masks.imported import ImportedMasks, check_coverage
        from s2d.masks.paint import paint_non_overlapping

        imported = ImportedMasks(m.import_path, m.import_format)
        check_coverage(imported, {r.name: [Path(n).stem for n in r.video.frame_names()] for r in ds})

        def produce(r: VideoRecord) -> VideoLabels:
            per_frame = []
            for t, stem in enumerate(Path(n).stem for n in r.video.frame_names()):
                got = imported.frame(r.name, stem, r.video.size)
                assert got is not None
                masks, scores = got
                per_frame.append(paint_non_overlapping(masks, scores, m.max_masks, m.min_score,
                                                       max(1, int(m.min_area * masks.shape[1] * masks.shape[2]))))
            return frames_to_labels(ds.skeleton(r.name), per_frame)

        return produce

    maskcut_fn = maskcut_producer(m) if m.source in ("maskcut", "motion_maskcut") else None

    if m.source == "maskcut":
        def produce(r: VideoRecord) -> VideoLabels:
            with frame_bar(r, progress) as bar:
                per_frame = []
                for t in range(len(r.video)):
                    per_frame.append(maskcut_fn(r.video[t]))
                    bar.update(1)
            return frames_to_labels(ds.skeleton(r.name), per_frame)

        return produce

    from s2d.masks.motion import MotionParams, merge_with_maskcut, motion_masks, peak_bytes
    from s2d.tracking.flow_cache import FlowCache

    params = MotionParams(**m.motion)
    cache = FlowCache(flow_cache_dir(cfg), finest_scale=cfg.flow.finest_scale)

    def produce(r: VideoRecord) -> VideoLabels:
        # where the recording's frames between the video's exist, motion is measured between those neighbours and
        # the masks of the video's own frames kept (s2d.data.full_rate)
        full = r.video.full_rate if m.full_rate else None
        video = r.video if full is None else full.video
        warn_memory(r, peak_bytes(len(video), *r.video.size, params), frames=len(video))
        with frame_bar(r, progress, len(video)) as bar, reading(full, "masks.full_rate"):
            per_frame, ev = motion_masks(FrameWindows(video), params, m.max_masks, m.min_area, cache.flows,
                                         bar.update, cache.far)
        if full is not None:
            if folder is not None and keeps_recording(cfg):  # written before the shard, the commit point
                atomic_write_json(recording_path(folder, r.name),
                                  {"video": r.name, "at": list(full.at), **per_frame_to_json(per_frame, r.video.size)})
            per_frame = [per_frame[i] for i in full.at]
        if max(ev.gaps) > 1:
            # why (s2d.masks.motion, step 8): few frames show motion between neighbours, or a slower body shows
            why = (f"under {100 * params.min_moving_frames:.0f} % of the frames show motion between neighbours"
                   + (", or over twice the moving area shows over the longer gap (masks.motion.slow_body)"
                      if params.slow_body else ""))
            if len(ev.gaps) == 1:
                log.info("masks: %s moves slowly (%s): frames %d apart compared (masks.motion.max_gap)", r.name,
                         why, ev.gaps[0])
            else:
                log.info("masks: %s moves slowly in %d of its %d windows of %d frames (masks.motion.window; %s): "
                         "frames compared %s apart, window by window (masks.motion.max_gap)", r.name,
                         sum(g > 1 for g in ev.gaps), len(ev.gaps), params.window, why, ", ".join(map(str, ev.gaps)))
        h, w = r.video.size
        if ev.box != (0, h, 0, w):
            y0, y1, x0, x1 = ev.box
            log.info("masks: %s has black bars at its edges: its motion masks are made on the picture, rows %d-%d "
                     "and columns %d-%d of %dx%d", r.name, y0, y1 - 1, x0, x1 - 1, w, h)
        if maskcut_fn is not None:
            per_frame = [merge_with_maskcut(mm, maskcut_fn(r.video[t]), m.max_masks, m.min_area,
                                            m.maskcut_outside)
                         for t, mm in enumerate(per_frame)]
        return frames_to_labels(ds.skeleton(r.name), per_frame)

    return produce


class FrameWindows:
    """A video's frames as the motion masks read them, a window at a time: ``len`` and ``[a:b]`` -> (b-a, H, W,
    3) uint8, decoded (or read from the decoded-frames file) when asked, never the whole video at once."""

    def __init__(self, video):
        self.video = video

    def __len__(self) -> int:
        return len(self.video)

    def __getitem__(self, s: slice) -> np.ndarray:
        return self.video.frames(range(*s.indices(len(self.video))))


def warn_memory(r: VideoRecord, need: int, available: int | None = None, frames: int | None = None) -> None:
    """Say, before the work starts, that a video will not fit in memory: the kernel ends a process that runs out
    with SIGKILL and no message. Not an error, since the estimate is rough and swap may carry it; a killed run
    resumes with the videos already done (``available``: bytes free, measured when not given; ``frames``: the
    frames the masks work on, the video's own when not given)."""
    from s2d.io.memory import available_memory, gib

    available = available_memory() if available is None else available
    if available is not None and need > available:
        T, (H, W) = frames or len(r.video), r.video.size
        log.warning("masks: %s has %d frames at %dx%d, and its motion masks need about %s, with %s free here. "
                    "If the run is killed, make them in shorter windows (masks.motion.window), cap the video "
                    "(data.max_frames=N or data.stride=K) or lower data.short_side (now %d px), or give the job "
                    "more memory.", r.name, T, W, H, gib(need), gib(available), min(H, W))


def maskcut_producer(m: Any) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """MaskCut on colour features or on a local DINO checkpoint: frame -> (masks (K, H, W), scores (K,))."""
    from s2d.masks.frame_masks import color_feature_fn, frame_masks

    if m.features == "dino":
        from s2d.models.dino import dino_feature_fn, load_dino

        model, report = load_dino(m.dino_checkpoint, m.dino_arch)
        log.info("masks: DINO %s/%d loaded from %s (%d tensors, %d unexpected)", report["arch"], report["patch"],
                 m.dino_checkpoint, report["loaded"], len(report["unexpected"]))
        feats = dino_feature_fn(model)
    else:
        feats = color_feature_fn(m.patch)
    return lambda frame: frame_masks(frame, feats, m.cuts, m.tau, m.max_masks, m.min_score, m.min_area, m.refine)


def frame_bar(r: VideoRecord, progress: bool, frames: int | None = None):
    """A per-frame progress bar under the per-video one (long videos otherwise look stuck); ``frames``: those the
    stage works on, the video's own when not given."""
    from tqdm import tqdm

    return tqdm(total=frames or len(r.video), desc=f"  {r.name}", unit="frame", leave=False, disable=not progress)


def masks_fingerprint(cfg: Any, data_fp: str, ds: Dataset | None = None) -> str:
    m = section(cfg, "masks")
    # named only where it acts (MaskCut joining motion) and differs from the rule before the key (0.5), so
    # motion-only masks and the default demo masks keep their folders
    if m["source"] != "motion_maskcut" or m.get("maskcut_outside") == 0.5:
        m.pop("maskcut_outside", None)
    # named only where it acts (motion masks on data with frames between its videos' frames): other masks keep
    # the folders of before the key
    if m["source"] not in ("motion", "motion_maskcut") or not m.get("full_rate") or not with_full_rate(ds):
        m.pop("full_rate", None)
    elif keeps_recording(cfg):  # the folder also holds the recording's masks
        m["full_rate"] = "recording kept"
    if m["source"] in ("motion", "motion_maskcut"):  # the flow the motion masks read
        m["flow"] = section(cfg, "flow")
        if m["motion"].get("keep_weak"):  # the rule as it now acts: only over still scenery (s2d/masks/motion.py)
            from s2d.masks.motion import STILL_SCENERY

            m["motion"]["keep_weak"] = {"still_scenery": STILL_SCENERY}
    return fingerprint("masks", VERSION, data_fp, m)


def compute(cfg: Any, ds: Dataset, data_fp: str) -> StageOutput:
    fp = masks_fingerprint(cfg, data_fp, ds)
    root = artifact_dir(cfg, "masks", fp)
    n_full = len(with_full_rate(ds))
    if n_full and cfg.masks.full_rate and "motion" in cfg.masks.source:
        log.info("masks: %d of %d video(s) have the recording's frames between their own: motion is measured "
                 "between neighbours of the recording, %s (masks.full_rate)", n_full, len(ds), full_rate_words(ds))
    elif cfg.data.kind == "ytvis" and not cfg.data.all_frames and "motion" in cfg.masks.source:
        steps = [st for r in ds if (st := numbered_step(r.video.frame_names()))]
        if steps and len(steps) >= len(ds) / 2:
            log.info("masks: the json lists 1 frame in %d of the recording for %d of its %d videos; with the "
                     "frames between (YouTube-VIS's all-frames release: data.all_frames=.../JPEGImages) motion and "
                     "tracks go through them, which measured better (docs/RESULTS.md, \"SA-V's layout\")",
                     max(set(steps), key=steps.count), len(steps), len(ds))
    ls = run_per_video("masks", root, fp, ds, make_producer(cfg, ds, root), cfg.progress,
                       info={"stage": "masks", "config": section(cfg, "masks")})
    warn_empty(cfg, ls)
    return StageOutput(ls, root, fp)


def full_rate_words(ds: Dataset) -> str:
    """How many frames the videos with a full rate bring, for the log (``FullRate.length``: no container is
    decoded for it)."""
    rs = with_full_rate(ds)
    own = sum(len(r.video.full_rate.at) for r in rs)
    full = sum(r.video.full_rate.length for r in rs)
    return f"{full} frames for their {own} ({full / max(own, 1):.1f} times the work)"


def warn_empty(cfg: Any, ls) -> None:
    """Name the videos without a single mask: nothing downstream can learn an object from them. From motion that
    is an object slower than masks.motion.min_residual (3 px at 240p) even masks.motion.max_gap frames apart, or
    a still one (a slow video is compared over longer gaps by itself: the demo mp4 of an apple at 10 fps had no
    mask on its 50 frames between neighbours, 39 frames with a mask 2 frames apart, docs/RESULTS.md)."""
    empty = [v for v in ls if not v.instances]
    if cfg.masks.source == "motion":
        # a single frame has no motion to see: saying "nothing moved" would send the user after the wrong setting
        single = [v.name for v in empty if v.length < 2]
        if single:
            log.warning("masks: %d of %d video(s) have a single frame, where masks from motion see nothing: %s; "
                        "for still images use masks=motion_maskcut or masks=imported", len(single), len(ls.videos),
                        listed(single))
        empty = [v for v in empty if v.length >= 2]
    if not empty:
        return
    hint = (f"nothing moved against the camera by more than masks.motion.min_residual, even "
            f"{cfg.masks.motion.max_gap} frames apart (a very slow mover: a larger masks.motion.max_gap or "
            "data.stride; a still object: masks=motion_maskcut or masks=imported)" if "motion" in cfg.masks.source else
            "try other masks (masks=motion, masks=imported)")
    log.warning("masks: %d of %d video(s) have no mask on any frame: %s; %s", len(empty), len(ls.videos),
                listed([v.name for v in empty]), hint)
