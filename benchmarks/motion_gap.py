"""Masks from motion over longer gaps (``masks.motion.max_gap``): what a gap costs where motion is fast, and
whether a slow video finds its gap by itself.

    python benchmarks/motion_gap.py                       # ../shared/data/davis2016
    python benchmarks/motion_gap.py --repeat 2 4 --gaps 1 2 4
    python benchmarks/motion_gap.py --strides 2 4 5       # the clips at 12, 6 and 4.8 fps
    python benchmarks/motion_gap.py --videos ../shared/data/demo_videos   # the gap each video gets, no scores

1. Forced gap: the motion evidence of every DAVIS clip computed with frames 1, 2, 4 apart; mean J of the best
   mask of each frame against the annotated foreground. The clips' objects clear the floor between neighbours,
   so this is the price of a longer gap where none is needed.
2. Slowed clips: each frame shown ``r`` times (r = 2, 4), the annotation with it. Every frame then has a
   neighbour identical to it, so between neighbours nothing moves. Reported: mean J with the neighbouring
   frames only (``max_gap=1``), the gap the default rule picks and mean J with it, against the original clip.
3. Lower frame rates (``--strides``): each clip kept at every s-th frame, 24/s fps (YouTube-VIS ships its frames
   at 6 fps, SA-V annotates every 4th of 24), masks made by the default rule; mean J over the kept frames. Beside
   it the masks made from the recording, every frame up to the last kept one, and kept on the kept frames: what
   ``masks.full_rate`` does where the frames in between are on disk (s2d/data/full_rate.py).
4. ``--videos``: the gap each video of a folder of video files gets, and its frames with a mask.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DAVIS = ROOT.parent / "shared" / "data" / "davis2016"

from masks_tracking_quality import mean_j  # noqa: E402  (this folder is on the path when run as a script)


def forced_gap(frames: np.ndarray, gap: int, p) -> list[tuple[np.ndarray, np.ndarray]]:
    """Motion masks with the evidence taken ``gap`` frames apart, whatever the video's motion."""
    from s2d.masks import motion as M
    from s2d.tracking.flow_cache import FlowCache, compute_flows

    gray = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames]
    fwd, bwd = FlowCache(None).flows(gray)
    far, back = (fwd, bwd) if gap == 1 else compute_flows(gray, gap=gap)
    residual, prior, rel = M.frame_priors(frames, far, back, gap, p)
    smoothed = M.smooth_along_flow(prior, rel, fwd, bwd, p.smooth_beta)
    ev = M.MotionEvidence(residual, prior, rel, smoothed, gap, *((None, None) if gap == 1 else (far, back)))
    return [M.instances(frames[t], smoothed[t], p, p.max_movers, 0.002, ev.motion_of(t, fwd, bwd))
            for t in range(len(frames))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--davis", type=Path, default=DAVIS)
    ap.add_argument("--gaps", type=int, nargs="*", default=[1, 2, 4])
    ap.add_argument("--repeat", type=int, nargs="*", default=[2, 4])
    ap.add_argument("--strides", type=int, nargs="*", default=[4], help="keep every s-th frame (24/s fps)")
    ap.add_argument("--videos", type=Path, help="a folder of video files: report the gap each one gets")
    args = ap.parse_args()

    from s2d.data.sources import open_dataset
    from s2d.masks.motion import MotionParams, motion_masks

    p = MotionParams()
    if args.videos is not None:
        for r in open_dataset("mp4", args.videos, short_side=360):
            t0 = time.perf_counter()
            per, ev = motion_masks(r.video.frames(), p)
            print(f"{r.name:<20} {len(per)} frames: gap {ev.gap}, frames with a mask "
                  f"{sum(len(m) > 0 for m, _ in per)} ({time.perf_counter() - t0:.0f} s)", flush=True)
        return
    if not args.davis.is_dir():
        sys.exit(f"no DAVIS clips at {args.davis} (--davis PATH)")
    ds = open_dataset("davis", args.davis, short_side=240)
    forced = {g: [] for g in args.gaps}
    slowed = {r: [] for r in args.repeat}
    sparse = {s: [] for s in args.strides}
    full = {s: [] for s in args.strides}
    for rec in ds:
        frames, fg = rec.video.frames(), rec.gt.masks().any(0)
        same = list(range(len(frames)))
        row = []
        for g in args.gaps:
            forced[g].append(mean_j(forced_gap(frames, g, p), fg, same))
            row.append(f"gap {g} J {forced[g][-1]:.3f}")
        for k in args.repeat:
            slow = np.repeat(frames, k, 0)
            of = [i // k for i in range(len(slow))]
            near, _ = motion_masks(slow, MotionParams(max_gap=1))
            per, ev = motion_masks(slow, p)
            slowed[k].append((mean_j(near, fg, of), ev.gap, mean_j(per, fg, of)))
            row.append(f"x{k}: neighbours J {slowed[k][-1][0]:.3f}, gap {ev.gap} J {slowed[k][-1][2]:.3f}")
        for s in args.strides:
            kept = list(range(0, len(frames), s))
            per, _ = motion_masks(frames[kept], p)
            sparse[s].append(mean_j(per, fg, kept))
            per, _ = motion_masks(frames[:kept[-1] + 1], p)
            full[s].append(mean_j([per[t] for t in kept], fg, kept))
            row.append(f"stride {s} J {sparse[s][-1]:.3f}, from the recording {full[s][-1]:.3f}")
        print(f"{rec.name:<15} " + " | ".join(row), flush=True)
    print("mean            " + " | ".join(
        [f"gap {g} J {np.mean(v):.3f}" for g, v in forced.items()]
        + [f"x{k}: neighbours J {np.mean([a for a, _, _ in v]):.3f}, gaps {sorted({g for _, g, _ in v})} "
           f"J {np.mean([c for _, _, c in v]):.3f}" for k, v in slowed.items()]
        + [f"stride {s} J {np.mean(v):.3f}, from the recording {np.mean(full[s]):.3f}" for s, v in sparse.items()]))


if __name__ == "__main__":
    main()
