"""Quality of the stage-0 masks and of the point trackers, measured against ground truth.

    python benchmarks/masks_tracking_quality.py            # demo data + ../shared/data/davis2016
    python benchmarks/masks_tracking_quality.py --no-davis
    python benchmarks/masks_tracking_quality.py --davis-only --sources motion   # the real-video numbers only
    python benchmarks/masks_tracking_quality.py --trackers-only
    python benchmarks/masks_tracking_quality.py --strides 2 4 5    # the flow tracker on the clips at lower rates

Masks: frame-level class-agnostic AP (every frame scored on its own) of each mask source (MaskCut on colour
features, masks from motion, both merged) on the demo videos and on the DAVIS clips (DAVIS-2016 has one
foreground object per clip, masks at short side 240), plus, per DAVIS clip, the mean J of the best mask of each
frame, and the seconds per frame.
Trackers: on the demo videos, whose true motion is known, random query points on every frame are tracked;
reported are the median and mean position error where both the tracker and the truth say visible, the
fraction within 1 and 4 px, and visibility accuracy / precision / recall. The DAVIS clips have no true
motion, so there the proxy is mask consistency: points sampled inside the annotated object on one frame and
tracked to the others should land inside the object wherever the tracker calls them visible.
``--strides``: that proxy for the flow tracker on the DAVIS clips kept at every s-th frame (24/s fps; SA-V
annotates every 4th frame, YouTube-VIS ships every 5th), tracking between the kept frames and through the
recording's frames between them (``tracker.full_rate``, s2d/tracking/full_rate.py).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from s2d.data.demo import DemoConfig, make_demo_videos, true_tracks
from s2d.evaluation.frame_ap import frame_ap
from s2d.labelset.types import Labelset, VideoLabels
from s2d.masks.frame_masks import color_feature_fn, frame_masks
from s2d.labelset.frames import frames_to_labels
from s2d.tracking import FlowChainTracker, LucasKanadeTracker

DAVIS = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "davis2016"


def mean_j(per_frame: list[tuple[np.ndarray, np.ndarray]], fg: np.ndarray, frame_of: list[int]) -> float:
    """Mean over frames of the best mask's IoU with the foreground: ``per_frame[i]`` (masks, scores) of the i-th
    scored frame, ``frame_of[i]`` its annotated frame (fg (T, H, W) bool)."""
    return float(np.mean([max([(m & fg[t]).sum() / max((m | fg[t]).sum(), 1) for m in per_frame[i][0]],
                              default=0.0) for i, t in enumerate(frame_of)]))


def masks_ap(videos: list[tuple[str, np.ndarray, np.ndarray]], source: str, every: int = 1
             ) -> tuple[dict, dict[str, float], float]:
    """videos: (name, frames (T, H, W, 3), gt masks (N, T, H, W)). -> frame AP, mean J of the best mask per
    frame for each video, seconds per frame. Motion needs the whole video; MaskCut runs on every ``every``-th
    frame only (scoring uses those frames for every source)."""
    from s2d.masks.motion import MotionParams, merge_with_maskcut, motion_masks

    feats = color_feature_fn(8)
    gts, preds, j_per_video = [], [], {}
    t0, n = time.perf_counter(), 0
    for name, frames, gt in videos:
        ts = list(range(0, len(frames), every))
        per: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        if source in ("motion", "motion_maskcut"):
            # max_masks / min_area as the masks configs set them (motion 3, merged 10)
            k = 3 if source == "motion" else 10
            mo, _ = motion_masks(frames, MotionParams(), max_masks=k)
            per = {t: mo[t] for t in ts}
            n += len(frames)
        if source in ("maskcut", "motion_maskcut"):
            for t in ts:
                mc = frame_masks(frames[t], feats)
                per[t] = merge_with_maskcut(per[t], mc, 10, 0.002) if t in per else mc
            n += len(ts) if source == "maskcut" else 0
        g = VideoLabels.from_masks(name, gt[:, ts])
        g.instances = [i for i in g.instances if i.frames_with_mask]
        skel = VideoLabels(name, g.height, g.width, len(ts), [], [])
        preds.append(frames_to_labels(skel, [per[t] for t in ts]))
        gts.append(g)
        j_per_video[name] = mean_j([per[t] for t in ts], gt.any(0), ts)
    return frame_ap(Labelset(gts), Labelset(preds)), j_per_video, (time.perf_counter() - t0) / max(n, 1)


def tracker_quality(tracker, videos, n: int = 400) -> dict:
    errs, vis_pred, vis_true = [], [], []
    t0 = time.perf_counter()
    for v in videos:
        T, H, W = v.labels.shape
        rng = np.random.default_rng(0)
        q = np.stack([rng.integers(0, T, n), rng.uniform(0, W - 1, n), rng.uniform(0, H - 1, n)], 1)
        tr = tracker.track(v.frames, q)
        gt, gv = true_tracks(v, q)
        errs.append(np.linalg.norm(tr.points - gt, axis=2))
        vis_pred.append(tr.visible)
        vis_true.append(gv)
    err, vp, vt = np.concatenate(errs, 1), np.concatenate(vis_pred, 1), np.concatenate(vis_true, 1)
    both = vp & vt
    return {"median_px": float(np.median(err[both])), "mean_px": float(err[both].mean()),
            "within_1px": float((err[both] < 1).mean()), "within_4px_of_truly_visible": float((err[vt] < 4).mean()),
            "vis_accuracy": float((vp == vt).mean()), "vis_precision": float(vt[vp].mean()),
            "vis_recall": float(vp[vt].mean()), "seconds": time.perf_counter() - t0}


def mask_consistency(tracker, records, n: int = 300) -> tuple[float, float]:
    """-> (fraction of visible tracked points inside the object's mask, fraction of point-frames visible)."""
    inside, vis_frac = [], []
    for r in records:
        frames, m = r.video.frames(), r.gt.masks()[0]  # (T, H, W): DAVIS-2016 has one object
        T, H, W = m.shape
        rng = np.random.default_rng(0)
        qs = []
        for t in rng.integers(0, T, n):
            ys, xs = np.nonzero(m[t])
            k = rng.integers(len(xs))
            qs.append((t, xs[k], ys[k]))
        tr = tracker.track(frames, np.asarray(qs, float))
        xy = np.round(tr.points).astype(int)
        ok = tr.visible & (xy[..., 0] >= 0) & (xy[..., 0] < W) & (xy[..., 1] >= 0) & (xy[..., 1] < H)
        t_idx, n_idx = np.nonzero(ok)
        inside.append(m[t_idx, xy[t_idx, n_idx, 1], xy[t_idx, n_idx, 0]])
        vis_frac.append(tr.visible.mean())
    return float(np.concatenate(inside).mean()), float(np.mean(vis_frac))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--no-davis", action="store_true")
    ap.add_argument("--davis-every", type=int, default=5, help="evaluate masks on every k-th DAVIS frame")
    ap.add_argument("--davis-only", action="store_true", help="skip the demo and the trackers")
    ap.add_argument("--sources", default="maskcut,motion,motion_maskcut")
    ap.add_argument("--trackers-only", action="store_true", help="skip the masks")
    ap.add_argument("--strides", type=int, nargs="+", help="only the flow tracker on the clips at 24/s fps")
    args = ap.parse_args()
    if args.strides:
        return lower_rates(args.strides)
    sources = [] if args.trackers_only else args.sources.split(",")
    demo = make_demo_videos(DemoConfig(num_videos=4, num_frames=24))
    if not args.davis_only:
        for src in sources:
            s, _, sec = masks_ap([(v.name, v.frames, v.masks()) for v in demo], src)
            print(f"masks {src:<15} demo (4 videos x 24 frames): AP {100 * s['AP']:.1f}  AP50 {100 * s['AP50']:.1f}  "
                  f"AR10 {100 * s['AR10']:.1f}   ({sec:.2f} s/frame)")
    ds = None
    if not args.no_davis and DAVIS.is_dir():
        from s2d.data.sources import open_dataset

        ds = open_dataset("davis", DAVIS, short_side=240)
        vids = [(r.name, r.video.frames(), r.gt.masks()) for r in ds]
        for src in sources:
            every = args.davis_every if src == "maskcut" else 1
            s, mj, sec = masks_ap(vids, src, every)
            print(f"masks {src:<15} DAVIS-2016 clips (240p{'' if every == 1 else f', every {every}th frame'}): "
                  f"AP {100 * s['AP']:.1f}  AP50 {100 * s['AP50']:.1f}  AR10 {100 * s['AR10']:.1f}  "
                  f"mean J {np.mean(list(mj.values())):.3f}   ({sec:.2f} s/frame)")
            print("    mean J per clip: " + "  ".join(f"{k} {v:.3f}" for k, v in mj.items()))
    if args.davis_only:
        return
    # the flow tracker with its default forward-backward check (allowed error grows with the motion) and with the
    # fixed 1 px check it had before
    for name, tr in (("flow (DIS)", FlowChainTracker()), ("flow, fixed 1px", FlowChainTracker(fb_relative=0.0)),
                     ("Lucas-Kanade", LucasKanadeTracker())):
        q = tracker_quality(tr, demo)
        print(f"tracker {name:<13} demo: median {q['median_px']:.2f} px, mean {q['mean_px']:.2f} px, "
              f"<1px {100 * q['within_1px']:.0f}%, <4px of truly visible {100 * q['within_4px_of_truly_visible']:.0f}%, "
              f"visibility acc {100 * q['vis_accuracy']:.0f}% (precision {100 * q['vis_precision']:.0f}%, "
              f"recall {100 * q['vis_recall']:.0f}%)   ({q['seconds']:.1f} s)")
        if ds is not None:
            inside, vis = mask_consistency(tr, list(ds))
            print(f"tracker {name:<13} DAVIS: {100 * inside:.1f}% of visible tracked points inside the object, "
                  f"{100 * vis:.0f}% of point-frames visible")


def lower_rates(strides: list[int]) -> None:
    """Mask consistency of the flow tracker on the DAVIS clips kept at every s-th frame, tracked between the kept
    frames and through the recording (the frames between them)."""
    from s2d.data.sources import open_dataset
    from s2d.tracking.full_rate import FullRateTracker

    flow = FlowChainTracker()
    for s in strides:
        ds = open_dataset("davis", DAVIS, short_side=240, stride=s)
        for name, make in (("between kept frames", lambda r: flow),
                           ("through the recording", lambda r: flow if r.video.full_rate is None else
                            FullRateTracker(flow, r.video.full_rate.video.frames(), r.video.full_rate.at))):
            per = [mask_consistency(make(r), [r]) for r in ds]
            print(f"1 frame in {s}, {name:<22}: {100 * np.mean([i for i, _ in per]):.1f}% of visible tracked "
                  f"points inside the object, {100 * np.mean([v for _, v in per]):.0f}% of point-frames visible  "
                  f"(per clip: " + ", ".join(f"{r.name} {100 * i:.0f}/{100 * v:.0f}" for r, (i, v) in zip(ds, per))
                  + ")", flush=True)


if __name__ == "__main__":
    main()
