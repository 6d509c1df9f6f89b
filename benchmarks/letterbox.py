"""Motion masks on letterboxed video: the DAVIS clips with black bars added above and below, the masks made with
the bars in the analysis (as before ``s2d.masks.picture_area``) and on the picture alone (today).

    python benchmarks/letterbox.py                 # bars of 12 % of the frame's height, both placements
    python benchmarks/letterbox.py --bar 0.2

Two placements: bars added to the 480p frames, then the whole read at a short side of 240 as a letterboxed file
is (the picture then has fewer rows than 240), and bars added after the clips are brought to 240p (the picture
is exactly the clip as the suite reads it, so the picture-alone column must equal the clip without bars).
Printed: mean J of the best mask of each frame against the annotated foreground, per clip and in the mean.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DAVIS = ROOT.parent / "shared" / "data" / "davis2016"

from masks_tracking_quality import mean_j  # noqa: E402  (this folder is on the path when run as a script)


def letterbox(frames: np.ndarray, fg: np.ndarray, bar: float) -> tuple[np.ndarray, np.ndarray]:
    """(T, H, W, 3), (T, H, W) -> the same with black bars of ``bar`` of the new height above and below."""
    T, H, W = fg.shape
    b = int(round(H * bar / (1 - 2 * bar)))
    F = np.zeros((T, H + 2 * b, W, 3), np.uint8)
    G = np.zeros((T, H + 2 * b, W), bool)
    F[:, b:b + H], G[:, b:b + H] = frames, fg
    return F, G


def to_short_side(frames: np.ndarray, fg: np.ndarray, short: int) -> tuple[np.ndarray, np.ndarray]:
    s = short / min(fg.shape[1:])
    size = (round(fg.shape[2] * s), round(fg.shape[1] * s))
    return (np.stack([cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in frames]),
            np.stack([cv2.resize(g.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST) > 0 for g in fg]))


def main() -> None:
    from s2d.data.sources import open_dataset
    from s2d.masks import motion

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--davis", type=Path, default=DAVIS)
    ap.add_argument("--bar", type=float, default=0.12, help="share of the frame's height each bar takes")
    args = ap.parse_args()
    p = motion.MotionParams()
    found = motion.picture_box
    whole = lambda gray: (0, gray[0].shape[0], 0, gray[0].shape[1])  # noqa: E731  (the bars kept in the analysis)
    rows: dict[str, list[list[float]]] = {"bars added at 480p, read at 240": [], "bars added at 240p": []}
    print("| clip | placement | bars kept | picture alone |\n|---|---|---:|---:|")
    for r in open_dataset("davis", args.davis):
        frames, fg = r.video.frames(), r.gt.masks().any(0)
        cases = {"bars added at 480p, read at 240": to_short_side(*letterbox(frames, fg, args.bar), 240),
                 "bars added at 240p": letterbox(*to_short_side(frames, fg, 240), args.bar)}
        for name, (F, G) in cases.items():
            js = []
            for box in (whole, found):
                motion.picture_box = box
                per, _ = motion.motion_masks(F, p)
                js.append(mean_j(per, G, list(range(len(F)))))
            motion.picture_box = found
            rows[name].append(js)
            print(f"| {r.name} | {name} | {js[0]:.3f} | {js[1]:.3f} |", flush=True)
    for name, js in rows.items():
        kept, alone = np.mean(js, 0)
        print(f"| mean | {name} | {kept:.3f} | {alone:.3f} |")


if __name__ == "__main__":
    main()
