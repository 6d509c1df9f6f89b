"""Augmentation time per training clip: one composed warp against a chain of per-step warps.

    python benchmarks/augment_speed.py                 # demo-sized clips: 3 frames of 120x160, 3 masks -> 96x128
    python benchmarks/augment_speed.py --hw 240 427    # DAVIS at 240p

Baseline: kornia's augmentation modules chained as the training clips used them before (RandomResizedCrop, then
RandomHorizontalFlip, then RandomRotation, each resampling images and masks, then ColorJitter), seeded through
torch's global generator. s2d: ``s2d.data.augment.augment_clip`` (parameters from a numpy generator, the
geometry composed into one matrix, images and masks warped in one call). Both run here on the same clips; prints
ms per clip and the ratio. The two draw different random parameters, so their outputs differ; what they share
is the distribution (see s2d/data/augment.py).
"""
from __future__ import annotations

import argparse
import time

import torch

from s2d.data.augment import AugmentConfig, augment_clip


def kornia_chain(cfg: AugmentConfig):
    import kornia.augmentation as K

    geo = K.AugmentationSequential(
        K.RandomResizedCrop(cfg.size, scale=cfg.crop_scale, ratio=(0.75, 1.333), p=1.0),
        K.RandomHorizontalFlip(p=cfg.flip),
        K.RandomRotation(degrees=cfg.rotation, p=1.0),
        data_keys=["input", "mask"], same_on_batch=True)
    color = K.ColorJitter(brightness=cfg.brightness, contrast=cfg.contrast, p=1.0, same_on_batch=True)

    def run(imgs: torch.Tensor, masks: torch.Tensor, seed: int):
        torch.manual_seed(seed)
        out_img, out_mask = geo(imgs, masks.permute(1, 0, 2, 3))
        return color(out_img).clamp(0, 1), (out_mask.permute(1, 0, 2, 3) > 0.5).float()
    return run


def timed(fn, clips, masks, repeats: int) -> float:
    for i in range(3):                                    # warm-up
        fn(clips[i % len(clips)], masks, i)
    t0 = time.perf_counter()
    for i in range(repeats):
        fn(clips[i % len(clips)], masks, i)
    return (time.perf_counter() - t0) / repeats * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hw", type=int, nargs=2, default=[120, 160], help="source frame height and width")
    ap.add_argument("--frames", type=int, default=3)
    ap.add_argument("--masks", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=200)
    a = ap.parse_args()
    g = torch.Generator().manual_seed(0)
    H, W = a.hw
    clips = [torch.rand(a.frames, 3, H, W, generator=g) for _ in range(8)]
    masks = (torch.rand(a.masks, a.frames, H, W, generator=g) > 0.5).float()
    cfg = AugmentConfig()
    base = timed(kornia_chain(cfg), clips, masks, a.repeats)
    new = timed(lambda c, m, s: augment_clip(c, m, cfg, s), clips, masks, a.repeats)
    print(f"{a.frames} frames {H}x{W}, {a.masks} masks -> {cfg.size[0]}x{cfg.size[1]}, "
          f"{torch.get_num_threads()} threads")
    print(f"baseline (kornia modules, one warp per step) {base:7.2f} ms/clip")
    print(f"s2d (one composed warp)                      {new:7.2f} ms/clip")
    print(f"speed-up {base / new:.2f}x")


if __name__ == "__main__":
    main()
