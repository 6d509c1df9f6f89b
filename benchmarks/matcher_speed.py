"""Grouping the matcher's equal targets (``canonical_ties``): torch.unique over rows vs integer row keys.

    python benchmarks/matcher_speed.py                  # CPU
    python benchmarks/matcher_speed.py --device cuda    # where the difference is (see below)

The rows are point-sampled target tubes as the matcher sees them: (N targets, frames x points), most of each
row 0 (the frames where a sparse keymask tube has no label) and one duplicate. Both ways run in this process on
the same rows; prints the time of a call of each, their ratio, and whether the groups are the same (must be).
``equal_rows`` takes torch.unique on a CPU, where it is the faster, and the keys (``rows_by_key``) on a GPU: on an
H200, torch.unique(dim=0) took 75 ms a call on the paper model's rows (3 frames x 12544 points), because it
compares rows one GPU thread per pair and long runs of equal values make each comparison long.
"""
from __future__ import annotations

import argparse
import time

import torch

from s2d.losses.matcher import rows_by_key, rows_by_unique


def timed(fn, tm: torch.Tensor, repeats: int) -> tuple[float, list[int]]:
    out = fn(tm)  # warm-up
    if tm.is_cuda:
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(repeats):
        out = fn(tm)
    return (time.perf_counter() - t0) / repeats, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=20)
    args = ap.parse_args()
    g = torch.Generator().manual_seed(0)
    for n, points, frames in [(3, 2048, 3), (10, 2048, 3), (20, 12544, 3), (100, 12544, 3)]:
        width = points * frames
        tm = (torch.rand(n, width, generator=g) > 0.9).float()
        tm[:, : 2 * width // 3] = 0          # two of the three frames unlabelled (sparse keymasks)
        tm[-1] = tm[0]                        # one duplicate target
        tm = tm.to(args.device)
        t_old, old = timed(rows_by_unique, tm, args.repeats)
        t_new, new = timed(rows_by_key, tm, args.repeats)
        print(f"{n:4d} targets x {frames} frames x {points:5d} points on {args.device}: torch.unique "
              f"{1e3 * t_old:8.2f} ms, keys {1e3 * t_new:8.2f} ms, ratio {t_old / t_new:6.2f}x, "
              f"same groups: {old == new}")


if __name__ == "__main__":
    main()
