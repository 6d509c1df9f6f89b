"""Training clips per second from the clip dataset, as a learning stage reads them (frames, masks, augmentation).

    python benchmarks/data_speed.py                        # the embedded demo (4 videos x 24 frames, 160x120)
    python benchmarks/data_speed.py --davis ../shared/data/davis2016 --short-side 240

Baseline: every frame decoded again for every clip (``train.frame_cache_mb=0``). s2d: decoded frames kept in
memory. Both run here, in this process, over the same clips (a dense labelset, 3 epochs); prints the time of
each, the ratio, and whether every clip and every target is identical (must be). The augmentation alone:
``benchmarks/augment_speed.py``.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from s2d.data.clips import AugmentConfig, ClipDataset
from s2d.data.demo import DemoConfig, write_demo_dataset
from s2d.data.sources import open_dataset


def read_all(ds: ClipDataset, epochs: int) -> tuple[float, list]:
    t0 = time.perf_counter()
    out = []
    for e in range(epochs):
        ds.set_epoch(e)
        out += [(it["clip"], it["targets"]) for it in (ds[i] for i in range(len(ds)))]
    return time.perf_counter() - t0, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--davis", default=None, help="a DAVIS folder (default: the embedded demo, generated here)")
    ap.add_argument("--short-side", type=int, default=240)
    ap.add_argument("--epochs", type=int, default=3)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if a.davis:
            data = open_dataset("davis", a.davis, short_side=a.short_side)
        else:
            write_demo_dataset(Path(tmp), DemoConfig())
            data = open_dataset("ytvis", tmp)
        labels = data.gt_labelset()
        aug = AugmentConfig()

        base_s, base = read_all(ClipDataset(data, labels, 3, "dense", augment=aug, frame_cache_mb=0), a.epochs)
        ds = ClipDataset(data, labels, 3, "dense", augment=aug, frame_cache_mb=1024)
        new_s, new = read_all(ds, a.epochs)
    same = all(torch.equal(x[0], y[0]) and torch.equal(x[1], y[1]) for x, y in zip(base, new))
    n = len(base)
    print(f"{len(data.names)} videos, {n} clips ({a.epochs} epochs of {n // a.epochs}), crops {aug.size}")
    print(f"baseline (no frame cache) {base_s:7.2f} s  {n / base_s:7.1f} clips/s")
    print(f"s2d (frame cache)          {new_s:7.2f} s  {n / new_s:7.1f} clips/s")
    print(f"speed-up {base_s / new_s:.2f}x   identical clips and targets: {same}   "
          f"frames decoded {ds.frame_cache.misses} of {ds.frame_cache.hits + ds.frame_cache.misses} read")


if __name__ == "__main__":
    main()
