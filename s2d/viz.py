"""Pictures for people: coloured mask overlays, frame grids and gifs."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from s2d.io.atomic import atomic_write_bytes


def palette(n: int, seed: int = 7) -> np.ndarray:
    """n distinct saturated RGB colours, (n, 3) uint8, stable for a given n."""
    if n == 0:
        return np.zeros((0, 3), np.uint8)
    hues = (np.arange(n) * 0.618033988749895 + seed * 0.1) % 1.0
    hsv = np.stack([hues * 179, np.full(n, 220), np.full(n, 255)], 1).astype(np.uint8)[None]
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0]


def overlay(frame: np.ndarray, masks: np.ndarray, colors: np.ndarray | None = None, alpha: float = 0.5,
            labels: list[str] | None = None) -> np.ndarray:
    """frame (H, W, 3) uint8, masks (N, H, W) bool -> (H, W, 3) uint8 with filled, outlined masks."""
    out = frame.astype(np.float32).copy()
    colors = palette(len(masks)) if colors is None else colors
    for m, c in zip(masks, colors):
        out[m] = (1 - alpha) * out[m] + alpha * c.astype(np.float32)
    out = out.astype(np.uint8)
    for i, (m, c) in enumerate(zip(masks, colors)):
        if not m.any():
            continue
        contours, _ = cv2.findContours(m.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(out, contours, -1, tuple(int(v) for v in c), 1)
        if labels is not None:
            ys, xs = np.nonzero(m)
            cv2.putText(out, labels[i], (int(xs.mean()), int(ys.mean())), cv2.FONT_HERSHEY_SIMPLEX, 0.35,
                        (255, 255, 255), 1, cv2.LINE_AA)
    return out


def grid(rows: list[list[np.ndarray]], pad: int = 2) -> np.ndarray:
    """Rows of equally sized (H, W, 3) images -> one image."""
    h, w = rows[0][0].shape[:2]
    n = max(len(r) for r in rows)
    out = np.full((len(rows) * (h + pad) - pad, n * (w + pad) - pad, 3), 255, np.uint8)
    for i, r in enumerate(rows):
        for j, im in enumerate(r):
            out[i * (h + pad):i * (h + pad) + h, j * (w + pad):j * (w + pad) + w] = im
    return out


def save_png(path: str | Path, image: np.ndarray) -> Path:
    ok, buf = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    assert ok
    return atomic_write_bytes(path, buf.tobytes())


def save_gif(path: str | Path, frames: list[np.ndarray], fps: int = 6) -> Path:
    from PIL import Image
    import io

    # fast-octree palettes instead of Pillow's default median cut: a demo video's 24 frames in 0.02 s instead of
    # 1 s (8 GIFs per report), mean colour error 6.6 instead of 6.2 of 255
    ims = [Image.fromarray(f).quantize(256, method=Image.Quantize.FASTOCTREE) for f in frames]
    buf = io.BytesIO()
    ims[0].save(buf, format="GIF", save_all=True, append_images=ims[1:], duration=int(1000 / fps), loop=0)
    return atomic_write_bytes(path, buf.getvalue())
