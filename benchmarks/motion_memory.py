"""Peak memory of the motion masks on a long video, against the same video's frames alone.

    python benchmarks/motion_memory.py                    # juggle, played forward-back-forward: 741 frames
    python benchmarks/motion_memory.py --frames 250 500 741 --short-side 360
    python benchmarks/motion_memory.py --video my_clip.mp4

Each measurement runs in a fresh process and reads its peak resident memory (``ru_maxrss``), which is what the
kernel's OOM killer and a scheduler's cgroup limit go by:
- baseline: the libraries imported and the video decoded and stacked, (T, H, W, 3) uint8;
- motion masks: the same, then ``motion_masks`` on it (DIS flow, the evidence maps, the smoothing, GrabCut).
Printed per length: both peaks, what the masks add per pixel of the video, the ratio of the two peaks, and the
estimate the masks stage warns with (``s2d.masks.motion.peak_bytes``, the default window of 256 frames). A
video longer than the file is played back and forth (no cut, so the masks see the motion they would on a
longer take).
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
JUGGLE = ROOT.parent / "shared" / "data" / "demo_videos" / "juggle" / "05_default_juggle.mp4"


def load(video: Path, frames: int, short_side: int):
    """(T, H, W, 3) uint8: the file at the working resolution, played forward and back up to ``frames``."""
    import numpy as np

    from s2d.data.video import ContainerSource, Resize

    src = ContainerSource(video.stem, video, Resize(short_side))
    one = [src.read(i) for i in range(len(src))]
    seq = []
    while len(seq) < frames:
        seq += one if (len(seq) // len(one)) % 2 == 0 else one[::-1]
    return np.stack(seq[:frames])


def child(mode: str, video: Path, frames: int, short_side: int) -> None:
    import importlib

    from s2d.masks.motion import MotionParams, motion_masks

    importlib.import_module("s2d.stages.masks")  # the libraries a masks stage has loaded, in both modes
    clip = load(video, frames, short_side)
    masks = 0
    if mode == "masks":
        per_frame, _ = motion_masks(clip, MotionParams())
        masks = sum(len(m) for m, _ in per_frame)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports kB
    print(json.dumps({"peak": peak, "shape": list(clip.shape), "masks": masks}))


def measure(mode: str, args, frames: int) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", mode, "--video", str(args.video), "--frames",
                          str(frames), "--short-side", str(args.short_side)], check=True, capture_output=True,
                         text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--video", type=Path, default=JUGGLE)
    ap.add_argument("--frames", type=int, nargs="+", default=[247, 741])
    ap.add_argument("--short-side", type=int, default=360)
    ap.add_argument("--child", choices=["video", "masks"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.video, args.frames[0], args.short_side)
        return
    if not args.video.is_file():
        sys.exit(f"no video at {args.video} (--video PATH)")
    from s2d.masks.motion import MotionParams, peak_bytes

    gb = 1e9
    print("| frames | H x W | video alone (GB) | motion masks (GB) | ratio | added per pixel (B) | estimate (GB) |")
    print("|---:|---|---:|---:|---:|---:|---:|")
    for n in args.frames:
        base, got = measure("video", args, n), measure("masks", args, n)
        T, H, W = got["shape"][:3]
        added = (got["peak"] - base["peak"]) / (T * H * W)
        print(f"| {T} | {H} x {W} | {base['peak'] / gb:.2f} | {got['peak'] / gb:.2f} | "
              f"{got['peak'] / base['peak']:.2f} | {added:.1f} | {peak_bytes(T, H, W, MotionParams()) / gb:.2f} |", flush=True)


if __name__ == "__main__":
    main()
