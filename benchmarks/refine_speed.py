"""GrabCut refinement of a tube's masks (``label.refine``, ``final.refine``) on threads vs one after another.

    python benchmarks/refine_speed.py                       # a DAVIS clip at 240p, its annotated object
    python benchmarks/refine_speed.py --frames 20 --workers 4

The masks are the clip's ground-truth object grown by a few pixels (a coarse model mask, as the refinement
receives it), refined with the stages' settings (``MODEL_MASK_REFINE``). ``grabcut_refine_many`` runs twice in
this process, with 1 worker and with ``--workers``; prints both times, the ratio, and whether the masks are
identical (must be: each cut seeds its thread's RNG).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2
import numpy as np

from s2d.data.sources import open_dataset
from s2d.masks.refine import grabcut_refine_many
from s2d.stages.label import MODEL_MASK_REFINE


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--davis", default=str(Path(__file__).resolve().parents[1] / ".." / "shared/data/davis2016"))
    ap.add_argument("--video", default=None, help="a clip of the data set (default: the first)")
    ap.add_argument("--frames", type=int, default=40)
    ap.add_argument("--workers", type=int, default=2)
    a = ap.parse_args()
    ds = open_dataset("davis", a.davis, short_side=240, videos=[a.video] if a.video else None, max_frames=a.frames)
    rec = next(iter(ds))
    frames = rec.video.frames()
    obj = ds.gt_labelset()[rec.name].masks()[0]  # (T, H, W)
    grow = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (9, 9))
    pairs = [(frames[t], cv2.dilate(obj[t].astype(np.uint8), grow) > 0) for t in range(len(frames)) if obj[t].any()]
    t0 = time.perf_counter()
    serial = grabcut_refine_many(pairs, 1, **MODEL_MASK_REFINE)
    t1 = time.perf_counter()
    threaded = grabcut_refine_many(pairs, a.workers, **MODEL_MASK_REFINE)
    t2 = time.perf_counter()
    same = all(np.array_equal(x, y) for x, y in zip(serial, threaded))
    print(f"{rec.name}: {len(pairs)} masks of {frames.shape[1]}x{frames.shape[2]}")
    print(f"1 worker  {t1 - t0:7.2f} s")
    print(f"{a.workers} workers {t2 - t1:7.2f} s   speed-up {(t1 - t0) / (t2 - t1):.2f}x   identical masks: {same}")


if __name__ == "__main__":
    main()
