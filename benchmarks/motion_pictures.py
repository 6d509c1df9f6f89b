"""Pictures of masks from motion on the real videos in ../shared/data/demo_videos (no ground truth), for
docs/RESULTS.md, and the time they take.

    python benchmarks/motion_pictures.py                 # -> docs/img/motion_<video>.jpg
    python benchmarks/motion_pictures.py --frames 60 --stride 2 --out /tmp/pics

Each video is read at short side 240 (every ``--stride``-th frame, at most ``--frames``), masked with
``masks=motion`` defaults, and four frames spread over it are drawn with their masks (one colour per mask).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2
import numpy as np

from s2d.data.sources import open_dataset
from s2d.io.atomic import atomic_write_bytes
from s2d.masks.motion import MotionParams, motion_masks
from s2d.viz import grid, overlay

VIDEOS = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "demo_videos"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=48)
    ap.add_argument("--stride", type=int, default=2)
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent.parent / "docs" / "img"))
    args = ap.parse_args()
    ds = open_dataset("mp4", VIDEOS, short_side=240, stride=args.stride, max_frames=args.frames)
    for r in ds:
        frames = r.video.frames()
        t0 = time.perf_counter()
        per, _ = motion_masks(frames, MotionParams())
        sec = (time.perf_counter() - t0) / len(frames)
        picks = np.linspace(2, len(frames) - 3, 4).round().astype(int)
        row = [overlay(frames[t], per[t][0]) for t in picks]
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(grid([row]), cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 80])
        path = atomic_write_bytes(Path(args.out) / f"motion_{r.name}.jpg", buf.tobytes())
        counts = [len(m) for m, _ in per]
        print(f"{r.name:<20} {len(frames)} frames, {np.mean(counts):.2f} masks/frame, frames without masks "
              f"{sum(c == 0 for c in counts)}, {sec:.2f} s/frame -> {path}")


if __name__ == "__main__":
    main()
