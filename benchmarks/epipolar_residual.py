"""The camera model of the motion masks: a homography against a fundamental matrix, on clips with ground truth.

    python benchmarks/epipolar_residual.py                          # the five DAVIS clips in ../shared/data
    python benchmarks/epipolar_residual.py --root /data/davis15 --every 4

Step 2 of ``s2d/masks/motion.py`` explains the camera's motion with one homography, which is exact for a camera
that only turns, or one that moves over a flat scene. Over a scene with depth (parallax) the homography leaves
scenery residual motion, and the masks find scenery. A fundamental matrix explains any static scene under any
camera motion: the flow of a static point stays on its epipolar line. Its residual is the Sampson distance of
the pixel's flow to the epipolar geometry fitted (RANSAC, the same reliable samples and threshold as the
homography).

For each clip, on every ``--every``-th pair of neighbouring frames, each model's residual is thresholded at the
masks' floor (``masks.motion.min_residual``, 3 px at 240p); printed per clip and on average over clips:
- fg: the share of the ground-truth object's pixels above the floor (what can become a mask);
- bg: the share of the pixels more than 5 px away from the object that are above it (scenery taken for motion).
Ground truth only scores; nothing here feeds back into the masks.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DAVIS = ROOT.parent / "shared" / "data" / "davis2016"
MODELS = ("homography", "fundamental", "smaller of both")


def sampson(F, x1, x2):
    """F (3, 3), points x1 -> x2 (N, 2) -> (N,) px, the first-order distance of each match to the geometry."""
    import numpy as np

    h1 = np.concatenate([x1, np.ones_like(x1[:, :1])], 1)
    h2 = np.concatenate([x2, np.ones_like(x2[:, :1])], 1)
    fx1, ftx2 = h1 @ F.T, h2 @ F
    num = np.sum(h2 * fx1, 1) ** 2
    den = fx1[:, 0] ** 2 + fx1[:, 1] ** 2 + ftx2[:, 0] ** 2 + ftx2[:, 1] ** 2
    return np.sqrt(num / np.maximum(den, 1e-12))


def residuals(a, b, dis, p, scale):
    """Grey frames a, b (H, W) -> {model: residual (H, W) px} for the flow a -> b."""
    import cv2
    import numpy as np

    from s2d.masks import motion as M

    h, w = a.shape
    base = M._grid(h, w)
    fwd, bwd = dis.calc(a, b, None), dis.calc(b, a, None)
    homog, _ = M.camera_residual(fwd, bwd, base, p, scale)
    pts, f = M.reliable_samples(fwd, bwd, base, p, scale)  # the samples the homography was fitted to
    F = None
    if len(pts) >= 8:
        F, _ = cv2.findFundamentalMat(pts, pts + f, cv2.FM_RANSAC, p.ransac_px * scale, 0.99)
    if F is None or F.shape != (3, 3):  # no geometry found: the homography's residual stands
        fund = homog
    else:
        fund = sampson(F, base.reshape(-1, 2), (base + fwd).reshape(-1, 2)).reshape(h, w)
    return {"homography": homog, "fundamental": fund, "smaller of both": np.minimum(homog, fund)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", type=Path, default=DAVIS, help="a DAVIS-layout folder (JPEGImages, Annotations)")
    ap.add_argument("--every", type=int, default=4, help="every n-th pair of neighbouring frames")
    args = ap.parse_args()

    import cv2
    import numpy as np

    from s2d.data.sources import open_dataset
    from s2d.labelset.rle import decode
    from s2d.masks.motion import MotionParams
    from s2d.tracking.flow_cache import FINEST_SCALE, PRESET, dis_flow

    p = MotionParams()
    dis = dis_flow(PRESET, FINEST_SCALE)
    ds = open_dataset("davis", args.root, short_side=240)
    gt = ds.gt_labelset()
    per_clip = []
    for r in ds:
        frames = r.video.frames()
        scale = min(frames.shape[1:3]) / 240
        floor = p.min_residual * scale
        shares: dict[str, list] = {m: [] for m in MODELS}
        for t in range(0, len(frames) - 1, args.every):
            objs = [decode(i.segmentations[t]) for i in gt[r.name].instances if i.segmentations[t] is not None]
            if not objs:
                continue
            obj = np.any(objs, 0).astype(np.uint8)                                      # (H, W)
            far = cv2.dilate(obj, np.ones((11, 11), np.uint8)) == 0
            grey = [cv2.cvtColor(frames[k], cv2.COLOR_RGB2GRAY) for k in (t, t + 1)]
            for m, res in residuals(*grey, dis, p, scale).items():
                above = res > floor
                shares[m].append((above[obj > 0].mean() if obj.any() else np.nan, above[far].mean()))
        row = {m: np.nanmean(np.array(v), 0) for m, v in shares.items() if v}
        if row:
            per_clip.append(row)
            print(f"{r.name:20s} " + "   ".join(f"{m}: fg {v[0]:.2f} bg {v[1]:.3f}" for m, v in row.items()),
                  flush=True)
    mean = {m: np.mean([c[m] for c in per_clip], 0) for m in MODELS}
    print(f"{'mean of ' + str(len(per_clip)) + ' clips':20s} "
          + "   ".join(f"{m}: fg {v[0]:.2f} bg {v[1]:.3f}" for m, v in mean.items()))


if __name__ == "__main__":
    main()
