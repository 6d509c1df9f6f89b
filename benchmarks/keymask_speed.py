"""Keymask discovery with ONE batched tracker call per step vs. one call per mask (the authors' structure).

    python benchmarks/keymask_speed.py                 # 50-frame demo video, 10 masks per frame, DIS flow tracker
    python benchmarks/keymask_speed.py --tracker lk

The per-frame masks are the demo's ground-truth objects plus extra pieces of background, cut so that every
frame has exactly --masks masks (non-overlapping). Prints both timings, the ratio, the tracker calls of each
structure, and whether the keymasks are identical.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from s2d.data.demo import make_demo_video
from s2d.keymasks import KeymaskParams, discover_keymasks


def frame_masks_with_n(v, n: int, rng: np.random.Generator) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Objects first, then background split into vertical strips, until a frame has n disjoint masks."""
    T, H, W = v.labels.shape
    out_m, out_s = [], []
    for t in range(T):
        objs = [v.labels[t] == k for k in range(1, v.num_objects + 1) if (v.labels[t] == k).any()]
        bg = v.labels[t] == 0
        strips = np.array_split(np.arange(W), max(n - len(objs), 1))
        pieces = []
        for cols in strips[: n - len(objs)]:
            m = np.zeros((H, W), bool)
            m[:, cols] = True
            pieces.append(m & bg)
        masks = np.stack(objs + pieces)[:n]
        out_m.append(masks)
        out_s.append(rng.uniform(0.4, 1.0, len(masks)))
    return out_m, out_s


def make_tracker(kind: str):
    from s2d.tracking import FlowChainTracker, LucasKanadeTracker

    return FlowChainTracker() if kind == "flow" else LucasKanadeTracker()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=50)
    ap.add_argument("--masks", type=int, default=10)
    ap.add_argument("--height", type=int, default=120)
    ap.add_argument("--width", type=int, default=160)
    ap.add_argument("--tracker", choices=["flow", "lk"], default="flow")
    args = ap.parse_args()
    v = make_demo_video(0, args.frames, args.height, args.width, 4)
    fm, fs = frame_masks_with_n(v, args.masks, np.random.default_rng(0))
    n_masks = sum(len(m) for m in fm)
    print(f"video: {args.frames} frames {args.width}x{args.height}, {n_masks} masks "
          f"({n_masks / args.frames:.1f} per frame), tracker {args.tracker}")
    t0 = time.perf_counter()
    batched = discover_keymasks(v.frames, fm, fs, make_tracker(args.tracker), KeymaskParams(), batched=True)
    t_b = time.perf_counter() - t0
    t0 = time.perf_counter()
    per_mask = discover_keymasks(v.frames, fm, fs, make_tracker(args.tracker), KeymaskParams(), batched=False)
    t_p = time.perf_counter() - t0
    same = [i.members for i in batched.instances] == [i.members for i in per_mask.instances]
    print(f"one call per mask : {t_p:8.2f} s  ({per_mask.summary['tracker_calls']} tracker calls)")
    print(f"batched           : {t_b:8.2f} s  ({batched.summary['tracker_calls']} tracker calls)")
    print(f"speed-up          : {t_p / t_b:8.1f} x")
    print(f"identical keymasks: {same}  ({len(batched.instances)} instances, "
          f"{batched.summary['keymasks_out']} keymasks)")


if __name__ == "__main__":
    main()
