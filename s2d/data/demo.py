"""The embedded default data: small synthetic videos that show what S2D is about, made from a seed in seconds.

Each video has a textured background seen through a moving camera (pan, zoom, slight roll) and several
textured objects, each with its own motion: translation, rotation, scale change and a perspective tilt (a
projective homography, so shapes change the way real objects do when they turn toward the camera). Objects
are drawn back to front, so they occlude each other; some enter from outside the frame and some leave.

Because every pixel is drawn through a known homography, the generator also knows the true motion: where any
query point goes in every frame and whether it is visible there (``true_tracks``). The tracker benchmark uses
that to measure position error and visibility accuracy.

``make_demo_video`` is pure (arrays in memory). ``write_demo_dataset`` writes a YouTube-VIS set (PNG frames,
``annotations.json``) with atomic writes and a manifest written last.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np

from s2d.io.atomic import atomic_write_bytes, atomic_write_json, sha256_bytes

SHAPES = ("ellipse", "star", "blob", "rounded_rect")


@dataclass
class DemoConfig:
    num_videos: int = 4
    num_frames: int = 24
    height: int = 120
    width: int = 160
    min_objects: int = 2
    max_objects: int = 4
    seed: int = 0


@dataclass
class DemoVideo:
    name: str
    frames: np.ndarray        # (T, H, W, 3) uint8
    labels: np.ndarray        # (T, H, W) int16: 0 background, k = object k (visible part after occlusion)
    homographies: np.ndarray  # (K+1, T, 3, 3): [0] canvas->frame (camera), [k] sprite k->frame
    depth: list[int] = field(default_factory=list)  # object ids from back to front

    @property
    def num_objects(self) -> int:
        return self.homographies.shape[0] - 1

    def masks(self) -> np.ndarray:
        """(K, T, H, W) bool visible masks of objects 1..K."""
        return np.stack([self.labels == k for k in range(1, self.num_objects + 1)]) if self.num_objects else \
            np.zeros((0, *self.labels.shape), bool)


def _texture(rng: np.random.Generator, h: int, w: int, contrast: float) -> np.ndarray:
    """Smooth multi-scale colour noise plus oriented stripes: enough structure for a point tracker."""
    base = rng.uniform(40, 215, size=3)
    img = np.zeros((h, w, 3), np.float32) + base
    for scale, amp in ((8, 0.6), (3, 0.3)):
        noise = rng.normal(0, 1, size=(max(2, h // scale), max(2, w // scale), 3)).astype(np.float32)
        img += amp * contrast * cv2.resize(noise, (w, h), interpolation=cv2.INTER_CUBIC)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    theta, freq = rng.uniform(0, np.pi), rng.uniform(0.15, 0.5)
    stripes = np.sin(freq * (np.cos(theta) * xx + np.sin(theta) * yy))
    img += (0.35 * contrast * stripes)[..., None] * rng.uniform(-1, 1, size=3)
    return np.clip(img, 0, 255).astype(np.uint8)


def _shape_mask(rng: np.random.Generator, size: int, kind: str) -> np.ndarray:
    m = np.zeros((size, size), np.uint8)
    c = size / 2
    if kind == "ellipse":
        cv2.ellipse(m, (int(c), int(c)), (int(size * 0.48), int(size * rng.uniform(0.28, 0.45))), 0, 0, 360, 1, -1)
    elif kind == "rounded_rect":
        r = int(size * 0.15)
        a, b = int(size * 0.05), int(size * 0.95)
        cv2.rectangle(m, (a + r, a), (b - r, b), 1, -1)
        cv2.rectangle(m, (a, a + r), (b, b - r), 1, -1)
        for x, y in ((a + r, a + r), (b - r, a + r), (a + r, b - r), (b - r, b - r)):
            cv2.circle(m, (x, y), r, 1, -1)
    else:
        n = 10 if kind == "star" else 14
        ang = np.linspace(0, 2 * np.pi, n, endpoint=False) + rng.uniform(0, np.pi)
        if kind == "star":
            rad = np.where(np.arange(n) % 2 == 0, 0.48, 0.24) * size
        else:
            rad = rng.uniform(0.3, 0.48, size=n) * size
        pts = np.stack([c + rad * np.cos(ang), c + rad * np.sin(ang)], 1).astype(np.int32)
        cv2.fillPoly(m, [pts], 1)
        if kind == "blob":
            m = (cv2.GaussianBlur(m.astype(np.float32), (0, 0), size * 0.05) > 0.5).astype(np.uint8)
    return m


def _translate(tx: float, ty: float) -> np.ndarray:
    return np.array([[1, 0, tx], [0, 1, ty], [0, 0, 1]], np.float64)


def _rot_scale(theta: float, s: float) -> np.ndarray:
    c, si = np.cos(theta) * s, np.sin(theta) * s
    return np.array([[c, -si, 0], [si, c, 0], [0, 0, 1]], np.float64)


def _tilt(px: float, py: float) -> np.ndarray:
    # Projective terms: the sprite looks like a plane turning toward/away from the camera.
    return np.array([[1, 0, 0], [0, 1, 0], [px, py, 1]], np.float64)


def make_demo_video(seed: int, num_frames: int = 24, height: int = 120, width: int = 160, num_objects: int = 3,
                    name: str = "demo") -> DemoVideo:
    rng = np.random.default_rng(seed)
    T, H, W = num_frames, height, width
    # Camera: the frame is a window on a canvas twice its size; pan, zoom and roll change over time.
    ch, cw = 2 * H, 2 * W
    canvas = _texture(rng, ch, cw, contrast=30)
    pan = rng.uniform(-1.5, 1.5, size=2) * (W / 160)
    zoom_rate = rng.uniform(-0.006, 0.006)
    roll_rate = rng.uniform(-0.004, 0.004)
    cams = []
    for t in range(T):
        # canvas point -> frame point: move the canvas centre to the frame centre, then pan/zoom/roll.
        m = _translate(W / 2, H / 2) @ _rot_scale(roll_rate * t, 1 + zoom_rate * t) @ \
            _translate(-cw / 2 - pan[0] * t, -ch / 2 - pan[1] * t)
        cams.append(m)
    cams = np.stack(cams)  # (T, 3, 3)

    K = num_objects
    sprites, sprite_masks, obj_h = [], [], []
    for k in range(K):
        size = int(rng.uniform(0.3, 0.5) * min(H, W) * 2)  # drawn at 2x and scaled down: crisp edges
        sprites.append(_texture(rng, size, size, contrast=70))
        sprite_masks.append(_shape_mask(rng, size, SHAPES[(seed + k) % len(SHAPES)]))
        # Object path in canvas coordinates. Every third object enters from outside the frame; the object
        # after it leaves. The others wander through the middle, crossing each other (occlusions).
        dur = T - 1
        centre = np.array([cw / 2, ch / 2])
        if k % 3 == 1:
            side = rng.choice([-1, 1])
            start = centre + np.array([side * (W * 0.75), rng.uniform(-0.2, 0.2) * H])
            end = centre + np.array([-side * W * 0.05, rng.uniform(-0.2, 0.2) * H])
        elif k % 3 == 2:
            side = rng.choice([-1, 1])
            start = centre + np.array([rng.uniform(-0.15, 0.15) * W, side * H * 0.05])
            end = centre + np.array([rng.uniform(-0.3, 0.3) * W, side * H * 0.8])
        else:
            start = centre + rng.uniform(-0.3, 0.3, size=2) * np.array([W, H])
            end = centre + rng.uniform(-0.3, 0.3, size=2) * np.array([W, H])
        theta0, omega = rng.uniform(0, 2 * np.pi), rng.uniform(-0.05, 0.05)
        s0, s1 = rng.uniform(0.45, 0.6), rng.uniform(0.4, 0.7)
        tilt_amp, tilt_freq, tilt_dir = rng.uniform(0.0008, 0.002), rng.uniform(0.1, 0.3), rng.uniform(0, 2 * np.pi)
        wobble = rng.uniform(2, 6) * (W / 160)
        hs = []
        for t in range(T):
            a = t / max(dur, 1)
            p = (1 - a) * start + a * end + wobble * np.array([np.sin(0.4 * t + k), np.cos(0.3 * t + 2 * k)])
            tilt = tilt_amp * np.sin(tilt_freq * t) / (size / 200)
            m = cams[t] @ _translate(*p) @ _rot_scale(theta0 + omega * t, (1 - a) * s0 + a * s1) @ \
                _tilt(tilt * np.cos(tilt_dir), tilt * np.sin(tilt_dir)) @ _translate(-size / 2, -size / 2)
            hs.append(m)
        obj_h.append(np.stack(hs))
    homographies = np.concatenate([cams[None], np.stack(obj_h)]) if K else cams[None]  # (K+1, T, 3, 3)

    depth = [int(k) + 1 for k in rng.permutation(K)]  # back to front
    frames = np.zeros((T, H, W, 3), np.uint8)
    labels = np.zeros((T, H, W), np.int16)
    for t in range(T):
        img = cv2.warpPerspective(canvas, cams[t], (W, H), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        lab = np.zeros((H, W), np.int16)
        for k in depth:
            hk = homographies[k, t]
            alpha = cv2.warpPerspective(sprite_masks[k - 1].astype(np.float32), hk, (W, H), flags=cv2.INTER_LINEAR)
            tex = cv2.warpPerspective(sprites[k - 1], hk, (W, H), flags=cv2.INTER_LINEAR)
            a = alpha[..., None]
            img = (img * (1 - a) + tex * a).astype(np.uint8)  # anti-aliased edges
            lab[alpha > 0.5] = k
        frames[t] = img
        labels[t] = lab
    return DemoVideo(name, frames, labels, homographies, depth)


def true_tracks(demo: DemoVideo, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ground-truth motion of query points.

    queries: (N, 3) rows (t, x, y) in pixel coordinates (pixel centres at integers).
    Returns tracks (T, N, 2) float and visibility (T, N) bool. A point belongs to whatever is drawn on top at
    its query pixel (an object, or the background canvas); it is visible in frame s if that same surface is
    on top at its position there and the position is inside the frame.
    """
    T, H, W = demo.labels.shape
    n = len(queries)
    tracks = np.zeros((T, n, 2), np.float64)
    vis = np.zeros((T, n), bool)
    for i, (t, x, y) in enumerate(queries):
        t = int(t)
        xi, yi = int(round(x)), int(round(y))
        k = int(demo.labels[t, min(max(yi, 0), H - 1), min(max(xi, 0), W - 1)])
        hs = demo.homographies[k]  # (T, 3, 3) surface -> frame
        u = np.linalg.solve(hs[t], np.array([x, y, 1.0]))  # surface coordinates
        p = hs @ u  # (T, 3)
        xy = p[:, :2] / p[:, 2:3]
        tracks[:, i] = xy
        inside = (xy[:, 0] >= -0.5) & (xy[:, 0] < W - 0.5) & (xy[:, 1] >= -0.5) & (xy[:, 1] < H - 0.5)
        xs = np.clip(np.round(xy[:, 0]).astype(int), 0, W - 1)
        ys = np.clip(np.round(xy[:, 1]).astype(int), 0, H - 1)
        vis[:, i] = inside & (demo.labels[np.arange(T), ys, xs] == k)
    return tracks, vis


def demo_video_names(cfg: DemoConfig) -> list[str]:
    return [f"demo_{i:02d}" for i in range(cfg.num_videos)]


def make_demo_videos(cfg: DemoConfig) -> list[DemoVideo]:
    rng = np.random.default_rng(cfg.seed)
    counts = rng.integers(cfg.min_objects, cfg.max_objects + 1, size=cfg.num_videos)
    return [make_demo_video(cfg.seed * 1000 + i, cfg.num_frames, cfg.height, cfg.width, int(counts[i]), name)
            for i, name in enumerate(demo_video_names(cfg))]


def demo_fingerprint(cfg: DemoConfig) -> str:
    return sha256_bytes(json.dumps({"generator": 2, **asdict(cfg)}, sort_keys=True).encode())[:12]


def write_demo_dataset(root: str | Path, cfg: DemoConfig = DemoConfig()) -> Path:
    """Write the demo set as a YouTube-VIS data set under ``root``; a no-op when a complete one is there."""
    from s2d.labelset.types import Labelset, VideoLabels
    from s2d.labelset.ytvis import labelset_to_json

    root = Path(root)
    fp = demo_fingerprint(cfg)
    manifest = root / "MANIFEST.json"
    if manifest.exists():
        try:
            if json.loads(manifest.read_text()).get("fingerprint") == fp:
                return root
        except json.JSONDecodeError:
            pass
        manifest.unlink()  # a different config or a corrupt manifest: regenerate everything
    videos = []
    for v in make_demo_videos(cfg):
        names = []
        for t, frame in enumerate(v.frames):
            # PNG, not JPEG: lossless, so the frames on disk are exactly the frames whose motion we know.
            ok, buf = cv2.imencode(".png", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
            assert ok
            rel = f"{v.name}/{t:05d}.png"
            atomic_write_bytes(root / "JPEGImages" / rel, buf.tobytes())
            names.append(rel)
        vl = VideoLabels.from_masks(v.name, v.masks(), file_names=names)
        vl.id = len(videos) + 1
        # Objects that never become visible are not ground truth anyone could find.
        vl.instances = [inst for inst in vl.instances if inst.frames_with_mask]
        videos.append(vl)
    atomic_write_json(root / "annotations.json", labelset_to_json(Labelset(videos, info={"demo": asdict(cfg)})))
    atomic_write_json(manifest, {"fingerprint": fp, "config": asdict(cfg), "videos": [v.name for v in videos]})
    return root

