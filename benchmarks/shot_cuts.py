"""Shot cuts (``data.shots``): where the detector finds cuts, how close the other frame pairs come, and what
finding them costs.

    python benchmarks/shot_cuts.py                                  # the 12 development videos
    python benchmarks/shot_cuts.py --videos /tmp/clips              # a folder of video files (or one file)
    python benchmarks/shot_cuts.py --glue-davis /tmp/montage        # write the DAVIS clips as one sequence, then
    s2d run experiment=davis2016 data.root=/tmp/montage [data.shots.split=true]   # whole, or cut into shots

Per video: its frames at 360p (as ``data=mp4`` reads them), the cuts found, the largest change between
neighbouring frames (and how many times the mean of the pairs around it that change is), the largest such ratio
(and its change), and milliseconds per frame of the change measure with and without the decoding. A pair is a
cut when both its change and its ratio clear the thresholds (``data.shots.min_change``, ``ratio``), so the two
maxima say how far from a false cut each video is.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared" / "data"


def ratios(change: np.ndarray, window: int) -> np.ndarray:
    """(P,) changes -> (P,) each change over the mean change of the ``window`` pairs on either side (the rule's
    ``around_means``); inf where there is none."""
    from s2d.data.shots import around_means

    around = around_means(change, window)
    return np.where(np.isnan(around), np.inf, change / np.maximum(np.nan_to_num(around), 1e-9))


def development_sets() -> list[tuple[str, Path]]:
    from s2d.data.demo import DemoConfig, write_demo_dataset

    demo = ROOT / "outputs" / "benchmarks" / "shot-cuts-demo"
    write_demo_dataset(demo, DemoConfig())
    return [("demo", demo), ("davis", SHARED / "davis2016"), ("mp4", SHARED / "demo_videos")]


def glue_davis(davis: Path, out: Path) -> list[tuple[int, int]]:
    """The DAVIS-2016 clips of ``davis`` written one after the other as one sequence ``out/montage`` (DAVIS
    layout): frames renumbered, each clip's foreground its own object id (a palette PNG, empty on the other
    clips' frames). -> each clip's [start, stop) in it."""
    import shutil

    from PIL import Image

    jpg, ann = out / "montage" / "JPEGImages", out / "montage" / "Annotations"
    jpg.mkdir(parents=True, exist_ok=True)
    ann.mkdir(parents=True, exist_ok=True)
    palette = [0, 0, 0] + [v for k in range(1, 256) for v in ((k * 67) % 256, (k * 151) % 256, (k * 89) % 256)]
    t, bounds = 0, []
    clips = sorted(d for d in davis.iterdir() if (d / "JPEGImages").is_dir())
    for k, clip in enumerate(clips, start=1):
        start = t
        for f in sorted((clip / "JPEGImages").glob("*.jpg")):
            shutil.copy(f, jpg / f"{t:05d}.jpg")
            fg = np.asarray(Image.open(clip / "Annotations" / f"{f.stem}.png").convert("L")) > 127
            png = Image.fromarray((fg * k).astype(np.uint8), "P")
            png.putpalette(palette)
            png.save(ann / f"{t:05d}.png")
            t += 1
        bounds.append((start, t))
    return bounds


def main() -> None:
    from s2d.data.shots import ShotParams, find_cuts, frame_changes
    from s2d.data.sources import open_dataset

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--videos", type=Path, help="a folder of video files, or one (default: the development videos)")
    ap.add_argument("--short-side", type=int, default=360)
    ap.add_argument("--glue-davis", type=Path, help="write the DAVIS clips as one sequence here, and stop")
    args = ap.parse_args()
    if args.glue_davis:
        bounds = glue_davis(SHARED / "davis2016", args.glue_davis)
        print(f"{args.glue_davis / 'montage'}: {bounds[-1][1]} frames, the clips at {bounds}")
        return
    p = ShotParams()
    sets = [("mp4", args.videos)] if args.videos else development_sets()
    print(f"cut: change >= {p.min_change} and >= {p.ratio}x the {p.window} pairs on either side, "
          f">= {p.min_len} frames apart\n")
    print("| video | frames | cuts before frames | largest change (x around) | largest ratio (change) "
          "| ms/frame | ms/frame with decoding |")
    print("|---|---:|---|---:|---:|---:|---:|")
    for kind, root in sets:
        for r in open_dataset(kind, root, short_side=args.short_side):
            t0 = time.perf_counter()
            frames = [r.video[t] for t in range(len(r.video))]
            t1 = time.perf_counter()
            change = frame_changes(frames)
            t2 = time.perf_counter()
            cuts = find_cuts(change, p)
            ratio = ratios(change, p.window)
            big, odd = int(np.argmax(change)), int(np.argmax(ratio))
            n = len(frames)
            print(f"| {r.name} | {n} | {', '.join(map(str, cuts)) or '—'} | {change[big]:.1f} ({ratio[big]:.1f}) "
                  f"| {ratio[odd]:.1f} ({change[odd]:.1f}) | {1000 * (t2 - t1) / n:.1f} | {1000 * (t2 - t0) / n:.1f} |")


if __name__ == "__main__":
    main()
