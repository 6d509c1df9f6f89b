"""Speed of the class-agnostic video AP evaluator against the reference structure, same process, same input.

    python benchmarks/eval_speed.py                     # 500 videos x 30 frames x 10 predictions
    python benchmarks/eval_speed.py --videos 50         # quicker
    python benchmarks/eval_speed.py --workers 4         # processes for s2d.evaluation (default: automatic)

Each side is timed ``--repeat`` times and the best run counts (the usual way to take the noise of a shared
machine out). Prints the timings of the reference structure, of s2d.evaluation in one process and with its
worker processes, the ratios, and the largest difference between the sets of metrics (must be 0).
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from s2d.evaluation.reference import reference_evaluate_ap
from s2d.evaluation.video_pool import available_cpus, resolve_workers
from s2d.evaluation.ytvis_ap import evaluate_ap
from s2d.labelset import rle
from s2d.labelset.types import Instance, Labelset, VideoLabels


def synthetic_case(videos: int, frames: int, preds: int, gts: int, h: int, w: int, seed: int = 0):
    """Moving discs as ground truth; predictions are shifted copies (some frames dropped) plus false positives."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w]
    gt_videos, pred_videos = [], []
    for v in range(videos):
        g = VideoLabels(f"v{v:04d}", h, w, frames, [], [], v + 1)
        d = VideoLabels(f"v{v:04d}", h, w, frames, [], [], v + 1)
        tubes = []
        for _ in range(gts):
            c = rng.uniform([0, 0], [w, h])
            vel = rng.uniform(-2, 2, size=2)
            r = rng.uniform(4, min(h, w) / 3)
            m = np.stack([((xx - c[0] - vel[0] * t) ** 2 + (yy - c[1] - vel[1] * t) ** 2) < r * r
                          for t in range(frames)])
            tubes.append(m)
            g.instances.append(Instance([rle.encode(f) if f.any() else None for f in m]))
        for k in range(preds):
            if k < len(tubes):
                m = np.roll(tubes[k], rng.integers(-3, 4, size=2), axis=(1, 2))
            else:  # a false positive: a drifting blob where there is no object
                c = rng.uniform([0, 0], [w, h])
                r = rng.uniform(3, min(h, w) / 4)
                m = np.stack([((xx - c[0] - t) ** 2 + (yy - c[1]) ** 2) < r * r for t in range(frames)])
            segs = [rle.encode(f) if f.any() and rng.random() > 0.05 else None for f in m]
            d.instances.append(Instance(segs, score=float(rng.random())))
        gt_videos.append(g)
        pred_videos.append(d)
    return Labelset(gt_videos), Labelset(pred_videos)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--videos", type=int, default=500)
    ap.add_argument("--frames", type=int, default=30)
    ap.add_argument("--preds", type=int, default=10)
    ap.add_argument("--gts", type=int, default=3)
    ap.add_argument("--height", type=int, default=180)
    ap.add_argument("--width", type=int, default=320)
    ap.add_argument("--workers", type=int, default=None, help="processes for s2d.evaluation (default: automatic)")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    t0 = time.perf_counter()
    gt, pred = synthetic_case(args.videos, args.frames, args.preds, args.gts, args.height, args.width)
    print(f"case: {args.videos} videos x {args.frames} frames x {args.preds} predictions, {args.gts} gt each, "
          f"{args.width}x{args.height} (built in {time.perf_counter() - t0:.1f} s)")

    def best_of(fn):
        times, out = [], None
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            out = fn()
            times.append(time.perf_counter() - t0)
        return min(times), out

    workers = resolve_workers(args.workers, args.videos)
    t_serial, serial = best_of(lambda: evaluate_ap(gt, pred, workers=1))
    t_par, par = best_of(lambda: evaluate_ap(gt, pred, workers=workers))
    t_ref, ref = best_of(lambda: reference_evaluate_ap(gt, pred))
    diff = max(max(abs(serial[k] - ref[k]), abs(par[k] - ref[k])) for k in ref)
    print(f"best of {args.repeat} runs each; {available_cpus()} CPUs available")
    print(f"reference structure            : {t_ref:8.2f} s")
    print(f"s2d.evaluation, 1 process      : {t_serial:8.2f} s   speed-up {t_ref / t_serial:5.1f} x")
    print(f"{'s2d.evaluation, ' + str(workers) + ' processes':31s}: {t_par:8.2f} s   speed-up {t_ref / t_par:5.1f} x")
    print(f"max |metric diff|              : {diff:.3g}")
    print("metrics:", ", ".join(f"{k}={v:.4f}" for k, v in par.items()))

if __name__ == "__main__":
    main()
