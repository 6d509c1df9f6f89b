"""Whole-video inference with many queries: link and NMS IoUs for all pairs at once vs the pairwise loops.

    python benchmarks/inference_speed.py                   # 36 frames of 360x640, 100 queries kept per window
    python benchmarks/inference_speed.py --frames 24 --height 120 --width 160

A stand-in model (no weights, no network time) returns Q blob-shaped queries per window, every one above the
score threshold, as a 100-query model does at ``label.eval_score_thr=0.05``. The same ``predict_video`` runs
twice in this process: with the pairwise definitions (``link_iou_pairwise``, ``tube_iou``) swapped in, then as
shipped. Prints both times, the ratio, and whether the tubes are identical (must be).
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

import s2d.inference.video_predict as vp


class BlobModel(torch.nn.Module):
    """Q queries, each a disc that drifts over the clip; scores spread over [0.1, 0.9]."""

    def __init__(self, queries: int, seed: int = 0):
        super().__init__()
        g = np.random.default_rng(seed)
        self.q = queries
        self.centre = g.uniform(0.15, 0.85, (queries, 2))
        self.radius = g.uniform(0.05, 0.2, queries)
        self.drift = g.normal(0, 0.004, (queries, 2))
        self.logits = torch.from_numpy(np.stack([g.uniform(-2, 2, queries), np.zeros(queries)], 1)).float()

    def forward(self, clips):
        B, T, _, H, W = clips.shape
        h, w = H // 4, W // 4
        t0 = float(clips[0, 0, 0, 0, 0]) * 255  # the frame index, written into pixel (0, 0)
        yy, xx = np.mgrid[0:h, 0:w]
        masks = np.empty((B, self.q, T, h, w), np.float32)
        for j in range(T):
            c = self.centre + (t0 + j) * self.drift
            d = (yy[None] / h - c[:, 0, None, None]) ** 2 + (xx[None] / w - c[:, 1, None, None]) ** 2
            masks[:, :, j] = np.where(d < self.radius[:, None, None] ** 2, 8.0, -8.0)
        return {"pred_logits": self.logits[None].expand(B, -1, -1), "pred_masks": torch.from_numpy(masks)}


def pairwise_link(prev, masks, frames, offset):
    return np.array([[vp.link_iou_pairwise(p, masks[k], frames, offset) for k in range(len(masks))] for p in prev])


def pairwise_nms(tubes, iou_thr):
    kept = []
    for t in sorted(tubes, key=lambda t: -t.score):
        if all(vp.tube_iou(t, k) < iou_thr for k in kept):
            kept.append(t)
    return kept


def run(model, frames, pairwise: bool):
    saved = vp.link_iou_matrix, vp.tube_nms
    if pairwise:
        vp.link_iou_matrix, vp.tube_nms = pairwise_link, pairwise_nms
    try:
        t0 = time.perf_counter()
        tubes = vp.predict_video(model, frames, score_thr=0.05, window=12, overlap=2, link_iou=0.5, nms_iou=0.75)
        return tubes, time.perf_counter() - t0
    finally:
        vp.link_iou_matrix, vp.tube_nms = saved


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=36)
    ap.add_argument("--height", type=int, default=360)
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--queries", type=int, default=100)
    args = ap.parse_args()
    frames = np.zeros((args.frames, args.height, args.width, 3), np.uint8)
    frames[:, 0, 0, 0] = np.arange(args.frames)
    model = BlobModel(args.queries)
    ref, t_ref = run(model, frames, pairwise=True)
    new, t_new = run(model, frames, pairwise=False)
    same = len(ref) == len(new) and all(
        a.scores == b.scores and sorted(a.masks) == sorted(b.masks) and all(np.array_equal(a.masks[f], b.masks[f])
                                                                         for f in a.masks) for a, b in zip(ref, new))
    print(f"{args.frames} frames {args.width}x{args.height}, {args.queries} queries per window, {len(new)} tubes "
          f"after NMS")
    print(f"pairwise loops {t_ref:8.2f} s   all pairs at once {t_new:8.2f} s   ratio {t_ref / t_new:6.1f}x   "
          f"identical tubes: {same}")


if __name__ == "__main__":
    main()
