"""Stage "keymasks": keymask discovery on every video -> the SPARSE labelset (masks on keymask frames, null
elsewhere), the IoU-linker baseline for comparison, a per-video summary and an overlay gif per video. A video
with the recording's frames between its own (s2d.data.full_rate) is discovered over the recording where the
masks stage kept its masks there, else tracked through it (``tracker.full_rate``)."""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from s2d.data.full_rate import reading, with_full_rate
from s2d.data.sources import Dataset, VideoRecord
from s2d.errors import IncompleteSetError
from s2d.fingerprint import fingerprint
from s2d.io.atomic import atomic_write_json, atomic_write_text
from s2d.io.job_ranks import job_rank_world
from s2d.keymasks import KeymaskParams, discover_keymasks
from s2d.keymasks.discover import KeymaskResult, first_window, shortens, sparse_instances
from s2d.keymasks.iou_linker import link_by_iou
from s2d.labelset import rle as rle_utils
from s2d.labelset.frames import per_frame_from_json
from s2d.labelset.types import Instance, Labelset, VideoLabels
from s2d.labelset.ytvis import labelset_to_json, read_labelset_json
from s2d.stages.common import StageOutput, artifact_dir, flow_cache_dir, listed, run_per_video, section
from s2d.stages.masks import keeps_recording, recording_path

log = logging.getLogger(__name__)
VERSION = 2  # bump when the stage's output for the same config changes (2: the flow tracker at the frames' resolution)


def params_of(cfg: Any) -> KeymaskParams:
    k = section(cfg, "keymasks")
    return KeymaskParams(**{f: k[f] for f in KeymaskParams.__dataclass_fields__})


def keymask_settings(cfg: Any, longest: int) -> dict:
    """The ``keymasks`` section as it enters the fingerprint, where discovery's longest run has ``longest`` frames
    (a video's, or its recording's where discovery runs over the recording).
    ``overlays`` only draws pictures, so it enters at one fixed value: a run with overlays off (a sweep saving
    time) finds the keymasks of a run with them on and trains on the same labels, and fingerprints made before
    this rule (all with the default, on) stay valid. ``window`` enters only where it acts, on data with a video
    longer than it: every video in one window is discovered as before the key existed, under the same name.
    ``min_window`` enters only where windows can be shortened to it, on data with a video of twice its frames."""
    k = section(cfg, "keymasks")
    k["overlays"] = True
    if k["window"] <= 0 or longest <= k["window"]:
        k.pop("window")
    if not shortens(first_window(longest, cfg.keymasks.window), k["min_window"]):
        k.pop("min_window")
    return k


def recording_labels(out: StageOutput, ds: Dataset) -> Labelset | None:
    """The sparse labelset of the keymasks stage's ``out`` on the recordings (``s2d.data.recordings``):
    each video with a recording by the keymasks of its every frame, the others by the set's own. None when no
    video's were kept (discovery did not run over a recording)."""
    folder, kept = out.folder, out.labels
    if not with_full_rate(ds) or not (folder / "recording").is_dir():
        return None
    vids = []
    for r in ds:
        f = recording_path(folder, r.name)
        if r.video.full_rate is None:
            vids.append(kept[r.name])
        elif f.is_file():
            vids.append(read_labelset_json(f).videos[0])
        else:
            raise IncompleteSetError(f"the keymasks set {folder} lacks {f}, the keymasks of video '{r.name}' on "
                                     f"every frame of its recording; delete {folder} to make it again")
    return Labelset(vids)


def _instance(per: list, inst, ranges: list, frames: list) -> Instance:
    """A keymask instance of the sparse labelset: keymasks on its frames, null elsewhere."""
    return Instance(rle_utils.encode_tube(per), inst.score, extra={
        "one_to_many": inst.one_to_many, "visible_ranges": ranges, "keymask_frames": frames})


def _overlay_gif(path: Path, frames: np.ndarray, tubes: list[list[np.ndarray | None]]) -> None:
    from s2d.viz import overlay, palette, save_gif

    colors = palette(max(len(tubes), 1))
    out = []
    for t in range(len(frames)):
        ms = [(tb[t], colors[i]) for i, tb in enumerate(tubes) if tb[t] is not None]
        out.append(overlay(frames[t], np.stack([m for m, _ in ms]) if ms else np.zeros((0, *frames.shape[1:3]), bool),
                           np.stack([c for _, c in ms]) if ms else None,
                           labels=[str(i) for i, tb in enumerate(tubes) if tb[t] is not None]))
    save_gif(path, out)


def _missing_overlays(ds: Dataset, ls: Labelset, folder: Path) -> None:
    """Draw the gifs a finished set lacks (it was made by a run with overlays off)."""
    for r in ds:
        gif = folder / f"{r.name}.gif"
        if gif.exists():
            continue
        v = ls[r.name]
        tubes = [[None if s is None else rle_utils.decode(s) for s in inst.segmentations] for inst in v.instances]
        _overlay_gif(gif, r.video.frames(), tubes)


def compute(cfg: Any, ds: Dataset, masks: Labelset, masks_fp: str, masks_folder: Path | None = None) -> StageOutput:
    """The sparse keymask labelset, with the IoU-linker baseline as ``baseline``; ``masks_folder``: the masks
    stage's folder, where it keeps the recording's masks of videos with frames between theirs (discovery then runs
    over the recording)."""
    from s2d.labelset.frames import frame_masks_of
    from s2d.tracking.factory import make_tracker
    from s2d.tracking.full_rate import FullRateTracker

    # discovery runs over the recording of a video that has one: the masks stage kept the recording's masks and
    # the tracker goes through its frames
    over_recording = masks_folder is not None and keeps_recording(cfg) and bool(cfg.tracker.full_rate)
    # the frames discovery runs over, which window and min_window act on: a recording's where it runs over one
    longest = max((r.video.full_rate.length if over_recording and r.video.full_rate is not None else len(r.video)
                   for r in ds), default=0)
    tracking = section(cfg, "tracker")
    if tracking["kind"] == "flow":  # the flow the tracker chains
        tracking["flow"] = section(cfg, "flow")
    if not tracking.get("full_rate") or not with_full_rate(ds):  # named only where it acts: older folders hold
        tracking.pop("full_rate", None)
    elif over_recording:  # what it does there: discovery over the recording
        # (the folder also keeps the keymasks of the recording's every frame: a folder of before, which did not,
        # is not taken for one)
        tracking["full_rate"] = "discovery over the recording, its keymasks kept"
    fp = fingerprint("keymasks", VERSION, masks_fp, keymask_settings(cfg, longest), tracking)
    root = artifact_dir(cfg, "keymasks", fp)
    params = params_of(cfg)
    tracker = make_tracker(cfg.tracker, flow_cache_dir(cfg), cfg.flow)
    (root / "summaries").mkdir(parents=True, exist_ok=True)
    (root / "overlays").mkdir(parents=True, exist_ok=True)

    def produce(r: VideoRecord) -> VideoLabels:
        per_frame = frame_masks_of(masks[r.name])
        fm = [m for m, _ in per_frame]
        fs = [s for _, s in per_frame]
        frames = r.video.frames()
        full = r.video.full_rate if cfg.tracker.full_rate else None
        rec = None if full is None or not over_recording else recording_path(masks_folder, r.name)
        if rec is not None and not rec.is_file():
            raise IncompleteSetError(f"the masks set lacks {rec}, the masks of the frames between this video's own; "
                                     f"delete {masks_folder} to make it again")
        # through the recording's frames between the video's, where the data has them (s2d.data.full_rate)
        with reading(full, "tracker.full_rate"):
            full_frames = None if full is None else full.video.frames()
        if rec is not None:
            # over the recording: its masks on every frame, tracked frame to frame, the keymasks of the video's own
            # frames kept (an instance with none of them is dropped); every instance on every frame of the
            # recording kept beside the set, for the learned stages (train.full_rate)
            res, found, everywhere = discover_over_recording(
                full_frames, per_frame_from_json(json.loads(rec.read_text())), full.at, tracker, params)
            whole = VideoLabels(r.name, *r.video.size, len(full_frames), full.video.frame_names(), [], r.id)
            whole.instances = [_instance(*x) for x in everywhere]
            atomic_write_json(recording_path(root, r.name), labelset_to_json(Labelset([whole])))
        else:
            res = discover_keymasks(frames, fm, fs, tracker if full is None else
                                    FullRateTracker(tracker, full_frames, full.at), params)
            found = [(per, inst, [list(x) for x in inst.visible_ranges], sorted(set(inst.frames)))
                     for per, inst in sparse_instances(res, fm)]
        out = ds.skeleton(r.name)
        out.instances = [_instance(*x) for x in found]
        tubes = [per for per, *_ in found]
        # the baseline and the summary are written before the shard: the shard is the commit point
        base = ds.skeleton(r.name)
        for per, score in link_by_iou(fm, fs, cfg.keymasks.baseline_iou):
            base.instances.append(Instance(rle_utils.encode_tube(per), score))
        atomic_write_json(root / "baseline" / f"{r.name}.json", labelset_to_json(Labelset([base])))
        atomic_write_json(root / "summaries" / f"{r.name}.json", {"video": r.name, **res.summary})
        if cfg.keymasks.overlays:
            _overlay_gif(root / "overlays" / f"{r.name}.gif", frames, tubes)
        return out

    ls = run_per_video("keymasks", root, fp, ds, produce, cfg.progress,
                       info={"stage": "keymasks", "config": section(cfg, "keymasks"),
                             "tracker": section(cfg, "tracker")})
    if cfg.keymasks.overlays and job_rank_world()[0] == 0:
        _missing_overlays(ds, ls, root / "overlays")
    baseline = Labelset([read_labelset_json(root / "baseline" / f"{n}.json").videos[0] for n in ds.names])
    rows = [json.loads((root / "summaries" / f"{n}.json").read_text()) for n in ds.names]
    keys = ["video", "frames", "masks_in", "visibility_clusters", "candidates", "keymasks_out", "instances"]
    if any("windows" in r for r in rows):  # keymasks.window acted on a video: say in how many windows each ran
        keys.insert(2, "windows")
    if any("windows_shortened_from" in r for r in rows):  # keymasks.min_window acted: and in windows of how many
        keys.insert(keys.index("windows") + 1, "window")
    if any("recording" in r for r in rows):  # discovered over the recording: masks_in ... keymasks_out count there
        keys.insert(2, "recording")
    table = "| " + " | ".join(keys) + " |\n|" + "---|" * len(keys) + "\n" + "".join(
        "| " + " | ".join(str(r.get(k, 1 if k == "windows" else r["frames"] if k in ("recording", "window") else ""))
                          for k in keys) + " |\n" for r in rows)
    atomic_write_text(root / "summary.md", table)
    lost = without_instances(rows, params)
    if lost:
        log.warning("keymasks: %d of %d video(s) have masks but no keymask instance, so nothing downstream learns "
                    "from them: %s", len(lost), len(rows), listed(lost, "; "))
    return StageOutput(ls, root, fp, baseline)


def discover_over_recording(frames: np.ndarray, per_frame: list[tuple[np.ndarray, np.ndarray]], at: tuple[int, ...],
                            tracker, p: KeymaskParams) -> tuple[KeymaskResult, list, list]:
    """Keymask discovery on every frame of a recording (frames (F, H, W, 3), its masks per frame), kept on the
    video's frames ``at``. -> (the discovery's result, its summary counted over the recording with ``frames`` and
    ``instances`` the video's; per instance kept: (per-frame keymask or None over the video's frames, the instance,
    its visible ranges and keymask frames as the video's frame indices); the same for every instance over the
    recording's frames, what the learned stages learn from with ``train.full_rate``). The method's frame-based
    numbers (the visibility clustering, ``stitch_gap``, ``window``) then count frames of the recording, the rate
    they were chosen for: at 6 fps a video of 10-13 frames gave DBSCAN too few masks to cluster
    (docs/RESULTS.md)."""
    fm = [m for m, _ in per_frame]
    res = discover_keymasks(frames, fm, [s for _, s in per_frame], tracker, p)
    found, everywhere = [], []
    for per, inst in sparse_instances(res, fm):
        everywhere.append((per, inst, [list(x) for x in inst.visible_ranges], sorted(set(inst.frames))))
        kept = [per[a] for a in at]
        frames_kept = [k for k, m in enumerate(kept) if m is not None]
        if not frames_kept:
            continue
        ranges = []
        for a, b in inst.visible_ranges:
            ks = [k for k, x in enumerate(at) if a <= x <= b]
            if ks:
                ranges.append([ks[0], ks[-1]])
        found.append((kept, inst, ranges, frames_kept))
    res.summary.update(recording=len(frames), frames=len(at), instances=len(found))
    return res, found, everywhere


def without_instances(rows: list[dict], p: KeymaskParams) -> list[str]:
    """The videos whose masks gave no keymask instance, each with the step that lost them (rows: the per-video
    summaries). The masks stage names videos with no mask at all; these had masks, and the user's question is which
    setting stopped them: a visibility cluster needs ``vis_min_samples`` masks (a video of 2 frames has 2 or 3),
    over ``member_frac`` of them visible on a frame (not where the tracker loses every mask's points within a few
    frames), a candidate must be visible on over ``range_frac`` of its cluster's frames, and a keymask must match its
    propagated points above ``lambda_j``."""
    out = []
    for r in rows:
        n = r.get("masks_in", 0)
        if not n or r.get("instances", 0):
            continue
        if n < p.vis_min_samples:
            why = f"{n} mask(s), fewer than a visibility cluster needs (keymasks.vis_min_samples={p.vis_min_samples})"
        elif not r.get("visibility_clusters", 0):
            why = (f"{n} masks in no visibility cluster (keymasks.vis_eps={p.vis_eps}, "
                   f"keymasks.vis_min_samples={p.vis_min_samples})")
        elif not r.get("candidates", 0) and r.get("visible_clusters", 1) == 0:
            shorter = (f", in windows of {r['window']} frames too (keymasks.min_window={p.min_window})"
                       if "windows_shortened_from" in r else "")
            why = (f"the tracker loses its masks' points within a few frames: no visibility cluster has over "
                   f"keymasks.member_frac={p.member_frac} of its masks visible on one frame{shorter} (fast or "
                   "articulated motion; a tracker that follows points through it: tracker=cotracker)")
        elif not r.get("candidates", 0):
            why = f"no mask visible on enough of its cluster's frames (keymasks.range_frac={p.range_frac})"
        else:
            why = f"no candidate matched its propagated points (keymasks.lambda_j={p.lambda_j})"
        out.append(f"{r['video']} ({why})")
    return out
