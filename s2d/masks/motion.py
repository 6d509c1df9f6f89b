"""Weight-free, training-free object masks from motion (``masks=motion``), in the family of FST (Papazoglou &
Ferrari, ICCV 2013) and TIS (WACV 2019): what moves differently from the camera is an object.

Per video (frames (T, H, W, 3) uint8):
  0. Letterbox and pillarbox bars (``s2d.masks.picture_area``): where the video has black bars at its edges,
     every step below works on the picture between them, and the masks are placed back in the whole frame.
  1. Dense DIS flow to the next and to the previous frame (``s2d.tracking.flow_cache``, shared with the point
     tracker), with a forward-backward check marking reliable pixels.
  2. The camera's motion in each direction: a RANSAC homography fitted to reliable flow on a grid. What the
     homography does not explain is residual motion; the evidence of a pixel is the SMALLER residual of the two
     directions, because flow bleeds into background that the object (dis)occludes in one direction only.
  3. A soft prior p = sigmoid((r - th) / (th / 2)) with th = max(min_residual, residual_factor * median r): an
     absolute floor against flow noise and a relative one against small parallax spread over the whole scene.
  4. Frame reliability: the share of a border band the homography explains. A frame where the residual covers
     more than ``max_moving`` of the image (the homography locked onto the object, strong parallax, a cut) gets
     reliability 0. The prior is averaged over time along the flow (two-sided recursive average, weight
     ``smooth_beta`` per step, frames weighted by reliability), so unreliable frames are filled from their
     neighbours and single-frame noise fades.
  5. GrabCut in the bounding box of a band around the candidate region (definite foreground: smoothed prior
     above 0.8, eroded; probable foreground above 0.5), to snap to image edges. It also removes weak motion
     regions whose colours are the scenery's; the price: an object coloured exactly like its background is lost.
     With ``keep_weak``, a frame whose motion is all weak (no definite foreground) and whose GrabCut keeps under
     half of the candidate keeps the candidate instead: without a definite seed GrabCut's colour models are free
     to settle on "all background", and that says the colours do not separate, not that nothing moves. A mover
     just above the floor (3-5 px a frame: a trotting dog, a car far off) has no pixel above 0.8, and GrabCut
     removed it on whole runs of frames of DAVIS clips (dog, drift-chicane) where the candidate covered it. Only
     over still scenery (``still_scenery``, the test of step 8): over parallax a region just above the floor is
     as likely scenery, and kept it gave a goat filmed over uneven ground false masks on 96 % of its frames
     instead of 63 %. Off by default (docs/RESULTS.md, "Weak motion is kept where GrabCut finds no colours").
  6. Connected components above ``min_area`` become instances (independently moving objects that do not touch
     are separate), scored by contrast: mean prior inside minus mean prior in a ring around. Up to
     ``max_movers`` per frame (and never more than ``masks.max_masks``); they never overlap.
  7. Motion layers (``split_px``, ``split_min``, ``split_fit``): objects that touch or overlap join one
     component. A component whose flow two affine motions explain (together over ``split_fit`` of it, each over
     ``split_min``), differing by ``split_px`` or more, is split between them (each pixel to the motion that
     explains its flow best), so a pair that moves differently gets one mask each. One object stays whole: a
     rigid one follows one affine motion, and an articulated or non-rigid one is not explained by two.
  8. The temporal baseline (``max_gap``, ``min_moving_frames``): the floor is in pixels per frame pair, so an
     object slower than 3 px per frame at 240p (a walker filmed at 30 fps) never clears it between neighbouring
     frames. Where fewer than ``min_moving_frames`` of a video's frames show a moving region (at least
     ``min_area`` of the frame, at most ``max_moving``, with a camera model that explains the border), steps
     1-3 compare frames 2, then 4 ... up to ``max_gap`` apart instead, and the smallest gap that reaches the
     share is kept (none reaching it: the neighbouring frames). One gap per video: a video whose movers clear
     the floor keeps the neighbouring frames, whose flow is the most reliable (on the DAVIS clips frames 2 apart
     lower the masks' mean J from 0.58 to 0.46). The smoothing (step 4) still follows the neighbouring flow.
     A video whose movers do clear the floor may hold a slower body: a walking camel's legs clear it between
     neighbours and its body does not, so the share is reached and the body never gets a mask. With
     ``slow_body``, the gap is also doubled where the longer gap shows more than twice the moving area (on frames
     whose camera is sure at both gaps: most of what moves there was under the floor before) while the scenery
     stays explained (the border's residual under half the floor: what the longer gap adds is not parallax or
     failing flow, which grow with the gap too). A mover above the floor grows by its occlusion band and flow
     errors (0.8-1.7 times at twice the gap on DAVIS clips); the walking camel and cows by 6-7 times. A dog
     running past bushes grows 3 times with the bushes moving over the longer gap (border residual 4 px), and
     keeps the neighbouring frames.
  9. Long videos (``window``): every step above holds its maps for all frames at once, 24 bytes a pixel of video
     (``peak_bytes``). A video longer than ``window`` frames is made a window at a time, each window with the
     frames the smoothing reaches on either side (``smoothing_reach``: 31 frames at beta 0.8, where a frame's
     weight falls under 1/1000), so memory is bounded by the window. Step 8 chooses the gap per window. A video
     within one window is made exactly as a whole.
Deliberate behaviour: where nothing moves against the camera (a static scene, a static camera, pure camera
motion over a planar scene, a shaky camera over a static scene) the residual stays under the threshold and the
frame gets NO masks rather than scenery masks; an object that stops fades out over a few frames. Camera motion
over a scene with depth (parallax): mild parallax spread over the scene raises the median residual and with it
the relative threshold; a frame where more than ``max_moving`` of the image still looks moving is treated as
unreliable (weight 0) and filled from its neighbours, or left without masks when none is reliable. Known limits:
static objects get no mask (``masks=motion_maskcut`` adds MaskCut's), objects moving together merge (touching
objects with different motions are split, step 7), what moves with an object stays with it (shadow, reflection,
spray), strong parallax can make false movers.

Pixel quantities are given for a short side of 240 px and scaled with the frame size.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable

import cv2
import numpy as np

from s2d.masks.picture_area import picture_box

REF_SHORT_SIDE = 240


@dataclass
class MotionParams:  # also the schema of the config node masks.motion (one definition of every default)
    min_residual: float = 3.0      # px: residual motion below this is flow noise or camera motion
    residual_factor: float = 3.0   # ... or below this many times the frame's median residual
    fb_threshold: float = 1.0      # px: forward-backward error of reliable flow
    ransac_px: float = 1.0         # px: RANSAC reprojection threshold of the camera homography
    grid: int = 6                  # px: step of the flow samples the homography is fitted to
    smooth_beta: float = 0.8       # weight of the previous (next) frame in the temporal average
    border: float = 0.08           # width of the border band that measures frame reliability (fraction)
    max_moving: float = 0.5        # a frame whose residual covers more than this is unreliable
    band: int = 12                 # px: GrabCut works within this band around the candidate region
    grabcut_iters: int = 3
    ring: int = 10                 # px: ring around an instance for its contrast score
    min_score: float = 0.1         # contrast below this is not an object
    max_movers: int = 3            # motion instances per frame at most (more components are mostly noise)
    split_px: float = 3.0          # px: two motions in one component this far apart split it (0: never split)
    split_min: float = 0.2         # ... if each explains at least this share of the component
    split_fit: float = 0.8         # ... and both together this share (a body whose parts move apart is not 2 layers)
    max_gap: int = 4               # frames: compare frames up to this far apart for a slow video (1: neighbours only)
    min_moving_frames: float = 0.5  # ... when fewer of its frames than this share show motion between neighbours
    slow_body: bool = True         # ... or where the longer gap shows over twice the moving area, over still scenery
    keep_weak: bool = False        # all-weak motion that GrabCut mostly removes is kept, over still scenery (step 5)
    window: int = 256              # frames: a longer video is made in windows of this many (step 9)


@dataclass
class MotionEvidence:
    """Intermediate maps of a video, kept for pictures and tests."""

    residual: np.ndarray     # (T, H, W) float32 px, the smaller of the two directions
    prior: np.ndarray        # (T, H, W) float32 in [0, 1]
    reliability: np.ndarray  # (T,) float
    smoothed: np.ndarray     # (T, H, W) float32 in [0, 1]
    gap: int = 1             # frames between the compared frames (step 8)
    far: np.ndarray | None = None   # (T-gap, H, W, 2) flow t -> t+gap (None: the neighbouring flows were used)
    back: np.ndarray | None = None  # (T-gap, H, W, 2) flow t+gap -> t
    gaps: tuple[int, ...] = ()  # every window's gap, first to last (step 9; these maps are the last window's)
    # (y0, y1, x0, x1) of the frame the maps cover: the picture without letterbox bars (step 0; the whole frame
    # when there are none)
    box: tuple[int, int, int, int] | None = None

    def motion_of(self, t: int, fwd: np.ndarray, bwd: np.ndarray) -> np.ndarray | None:
        """Any one motion of frame t over the evidence's gap (H, W, 2), None for a single frame."""
        far, back = (fwd, bwd) if self.far is None else (self.far, self.back)
        T = len(self.prior)
        return _f32(far[t]) if t + self.gap < T else _f32(back[t - self.gap]) if t - self.gap >= 0 else None


def _grid(h: int, w: int) -> np.ndarray:
    ys, xs = np.mgrid[:h, :w].astype(np.float32)
    return np.stack([xs, ys], -1)  # (H, W, 2) x, y


def _f32(flow: np.ndarray) -> np.ndarray:
    return flow.astype(np.float32, copy=False)


def _warp(img: np.ndarray, flow: np.ndarray, base: np.ndarray) -> np.ndarray:
    """Sample ``img`` (H, W[, C]) at x + flow(x): brings values of the frame the flow points to onto this one."""
    m = base + flow
    return cv2.remap(img, m[..., 0], m[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def reliable_samples(flow: np.ndarray, back: np.ndarray, base: np.ndarray, p: MotionParams, scale: float
                     ) -> tuple[np.ndarray, np.ndarray]:
    """flow (H, W, 2) from this frame to another, back the reverse -> (points (N, 2), their flow (N, 2)): the grid
    samples (every ``grid`` px) whose forward-backward error is below ``fb_threshold``, what a camera model is
    fitted to."""
    step = max(1, int(round(p.grid * scale)))
    pts = base[::step, ::step].reshape(-1, 2)
    f = flow[::step, ::step].reshape(-1, 2)
    fb = f + _warp(back, flow, base)[::step, ::step].reshape(-1, 2)
    ok = np.linalg.norm(fb, axis=1) < p.fb_threshold * scale
    return pts[ok], f[ok]


def camera_residual(flow: np.ndarray, back: np.ndarray, base: np.ndarray, p: MotionParams, scale: float
                    ) -> tuple[np.ndarray, bool]:
    """flow (H, W, 2) from this frame to another, back the reverse -> (residual (H, W) px, homography found).

    The homography is fitted by RANSAC to reliable flow (forward-backward error below ``fb_threshold``) on a
    grid; without enough reliable samples the whole flow counts as residual and the frame is reported unfitted.
    (A second model fitted to the first one's outliers, kept when it explains more of the border, was tried for
    objects that dominate the frame; it lowered the mean J on the development clips, so the camera is one
    homography and such frames are caught by the reliability weight instead.)"""
    H, W = flow.shape[:2]
    pts, f = reliable_samples(flow, back, base, p, scale)
    homog = None
    if len(pts) >= 8:
        homog, _ = cv2.findHomography(pts, pts + f, cv2.RANSAC, p.ransac_px * scale)
    if homog is None:
        return np.linalg.norm(flow, axis=-1), False
    moved = cv2.perspectiveTransform(base.reshape(-1, 1, 2), homog).reshape(H, W, 2)
    return np.linalg.norm(base + flow - moved, axis=-1), True


def residual_threshold(median, scale: float, p: MotionParams) -> np.ndarray:
    """Step 3's threshold from a frame's median residual (a number, or (T,) one per frame): the floor
    ``min_residual`` scaled to the frame, or ``residual_factor`` times the median, whichever is larger."""
    return np.maximum(p.min_residual * scale, p.residual_factor * np.asarray(median))


def frame_priors(frames: np.ndarray, far: np.ndarray, back: np.ndarray, gap: int, p: MotionParams
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Steps 2-3 with frames ``gap`` apart: far/back (T-gap, H, W, 2) the flows t -> t+gap and t+gap -> t
    (float32, or float16 as ``compute_flows`` makes them) -> residual (T, H, W) px, prior (T, H, W) in [0, 1],
    reliability (T,)."""
    T, H, W = frames.shape[:3]
    scale = min(H, W) / REF_SHORT_SIDE
    base = _grid(H, W)
    residual = np.zeros((T, H, W), np.float32)
    prior = np.zeros((T, H, W), np.float32)
    rel = np.zeros(T)
    border = border_band(H, W, p)
    for t in range(T):
        rs, fitted = [], []
        if t + gap < T:
            r, ok = camera_residual(_f32(far[t]), _f32(back[t]), base, p, scale)
            rs.append(r)
            fitted.append(ok)
        if t - gap >= 0:
            r, ok = camera_residual(_f32(back[t - gap]), _f32(far[t - gap]), base, p, scale)
            rs.append(r)
            fitted.append(ok)
        if not rs:  # a single frame: no motion to see
            continue
        r = np.minimum.reduce(rs)
        th = float(residual_threshold(float(np.median(r)), scale, p))  # a Python float keeps pr float32
        pr = 1.0 / (1.0 + np.exp(-(r - th) / (0.5 * th)))
        residual[t], prior[t] = r, pr
        moving = (pr > 0.5).mean()
        # measured against the absolute floor, not th: a frame whose camera model failed has a large median
        # residual, so th would call its border "explained"
        explained = float((r[border] < p.min_residual * scale).mean())
        rel[t] = 0.0 if (moving > p.max_moving or not all(fitted)) else explained
    return residual, prior, rel


SURE_CAMERA = 0.75  # reliability (share of the border the camera explains) of a frame whose motion is counted


def moving_share(prior: np.ndarray, reliability: np.ndarray, min_px: int, max_moving: float) -> float:
    """The share of frames (prior (T, H, W), reliability (T,)) that show a moving region: at least ``min_px``
    pixels of prior above 0.5 and no more than ``max_moving`` of the frame, on a frame whose camera model explains
    ``SURE_CAMERA`` of the border. The last condition is what makes a longer gap safe to try: where the flow
    between distant frames fails (a fast camera), large parts of the frame look moving, and the border shows it
    (a panning camera over a planar scene compared 4 frames apart: 88 % of its frames look moving, 31 % with a
    sure camera, tests/test_motion_masks.py)."""
    shown = showing(prior, reliability, min_px, max_moving)[1]
    return float(shown.mean()) if len(prior) else 0.0


def showing(prior: np.ndarray, reliability: np.ndarray, min_px: int, max_moving: float
            ) -> tuple[np.ndarray, np.ndarray]:
    """-> each frame's moving area (T,) px (prior above 0.5) and whether the frame shows a moving region (T,)
    bool, as ``moving_share`` counts them: an object-sized area on a frame with a sure camera."""
    area = (prior > 0.5).sum((1, 2))
    return area, (area >= min_px) & (area <= max_moving * prior[0].size) & (reliability >= SURE_CAMERA)


# of the floor: where the border's residual (90th percentile, median frame) stays under this, the camera explains
# the scenery, so the area a longer gap adds is a slower body (step 8, ``slow_body``) and a region just above the
# floor is a weak mover (step 5, ``keep_weak``): ``still_scenery``
STILL_SCENERY = 0.5


def border_band(h: int, w: int, p: MotionParams) -> np.ndarray:
    """(H, W) bool: the band along the frame's edges that measures how well the camera explains the scenery."""
    b = max(1, int(round(p.border * min(h, w))))
    border = np.ones((h, w), bool)
    border[b:-b, b:-b] = False
    return border


def shows_slower_body(near: tuple[np.ndarray, np.ndarray], far: tuple[np.ndarray, np.ndarray, np.ndarray],
                      p: MotionParams, min_px: int) -> bool:
    """Whether the longer of two gaps shows a body the shorter one left under the floor (step 8, ``slow_body``).
    ``near``: (prior (T, H, W), reliability (T,)) at the shorter gap; ``far``: (residual (T, H, W) px, prior,
    reliability) at twice it. True where, on frames with a sure camera and an object-sized moving area at both
    gaps, the longer gap's moving area is more than twice the shorter's (doubling the time more than doubled what
    moves: most of it was under the floor), and the border's residual over the longer gap stays under
    ``STILL_SCENERY`` of the floor."""
    (pn, rn), (res, pf, rf) = near, far
    H, W = pf.shape[1:]
    an = (pn > 0.5).sum((1, 2))
    af, shown = showing(pf, rf, min_px, p.max_moving)
    both = shown & (rn >= SURE_CAMERA) & (an <= p.max_moving * H * W)
    if not both.any() or af[both].sum() <= 2 * an[both].sum():
        return False
    return still_scenery(res, p)


def still_scenery(residual: np.ndarray, p: MotionParams) -> bool:
    """Whether the camera explains a video's scenery well below the floor: the border's residual (residual (T, H,
    W) px; its 90th percentile, median frame) under ``STILL_SCENERY`` of ``min_residual``. Over such scenery a
    mover just above the floor stands out (``slow_body``, ``keep_weak``); over parallax or failing flow it does
    not."""
    T, H, W = residual.shape
    border = border_band(H, W, p)
    scenery = float(np.median([np.percentile(residual[t][border], 90) for t in range(T)]))
    return scenery < STILL_SCENERY * p.min_residual * min(H, W) / REF_SHORT_SIDE


def may_show_slower_body(near: tuple[np.ndarray, np.ndarray, np.ndarray], p: MotionParams, min_px: int) -> bool:
    """A forecast of ``shows_slower_body`` from the shorter gap's maps alone (residual (T, H, W) px, prior,
    reliability), so that the longer gap's flows, which cost as much as the masks' own, are computed only where
    it can hold: a steady mover's residual doubles with the gap, so what is over half a frame's threshold now is
    over it then. True where, on frames with a sure camera and an object-sized moving area, those pixels cover
    more than twice the moving area (on 20 DAVIS clips: 4 of them, the walking camel and cows among them; the
    others 1.1-1.9 times)."""
    res, prior, rel = near
    T, H, W = prior.shape
    th = residual_threshold(np.median(res.reshape(T, -1), 1), min(H, W) / REF_SHORT_SIDE, p)[:, None, None]
    moving, ok = showing(prior, rel, min_px, p.max_moving)
    half = (res > 0.5 * th).sum((1, 2))
    return bool(ok.any()) and half[ok].sum() > 2 * moving[ok].sum()


def motion_evidence(frames: np.ndarray, fwd: np.ndarray, bwd: np.ndarray, p: MotionParams,
                    gray: list[np.ndarray] | None = None, min_area: float = 0.002,
                    far_flows: FarFlowFn | None = None) -> MotionEvidence:
    """frames (T, H, W, 3), fwd/bwd (T-1, H, W, 2) -> residual, prior, reliability and smoothed prior.

    With the grey frames (``gray``), a video whose frames rarely show motion between neighbours, or whose longer
    gap shows a slower body (``shows_slower_body``), is compared over a longer gap (step 8, flows from
    ``far_flows``, by default DIS with the default settings); ``gap`` of the result says which one."""
    from s2d.tracking.flow_cache import compute_flows

    T, H, W = frames.shape[:3]
    min_px = max(1, int(min_area * H * W))
    gap, flows, (residual, prior, rel) = 1, (None, None), frame_priors(frames, fwd, bwd, 1, p)
    share = moving_share(prior, rel, min_px, p.max_moving)
    k = 2
    while gray is not None and k <= min(p.max_gap, T - 1):
        if share >= p.min_moving_frames and not (p.slow_body and may_show_slower_body((residual, prior, rel), p,
                                                                                      min_px)):
            break
        # float16 as computed (half the memory of float32: 0.9 GB less for 250 frames at 360p), read per frame
        far, back = far_flows(gray, k) if far_flows is not None else compute_flows(gray, gap=k)
        got = frame_priors(frames, far, back, k, p)
        # kept only where it shows motion on the share asked for: scenery that looks moving on a few frames over
        # a longer gap (parallax, flow errors) is not a slow object
        s = moving_share(got[1], got[2], min_px, p.max_moving)
        if s >= p.min_moving_frames and (share < p.min_moving_frames
                                         or shows_slower_body((prior, rel), got, p, min_px)):
            gap, flows, share, (residual, prior, rel) = k, (far, back), s, got
        elif share >= p.min_moving_frames:  # the movers clear the floor at the gap kept, and no slower body shows
            break
        k *= 2
    smoothed = smooth_along_flow(prior, rel, fwd, bwd, p.smooth_beta, _grid(H, W))
    return MotionEvidence(residual, prior, rel, smoothed, gap, *flows)


def smooth_along_flow(prior: np.ndarray, weight: np.ndarray, fwd: np.ndarray, bwd: np.ndarray, beta: float,
                      base: np.ndarray | None = None) -> np.ndarray:
    """Two-sided recursive weighted average of ``prior`` (T, H, W) along the flow.

    Forward: N_t = w_t p_t + beta * N_{t-1} (warped to t), D_t likewise with w_t; backward the same from the end;
    the result is (N_fwd + N_bwd - w p) / (D_fwd + D_bwd - w), 0 where no reliable frame reaches.

    Memory: the forward sums are kept for every frame (2 arrays of the prior's size), the backward ones only for
    the frame before, and each frame's result overwrites its forward numerator, which nothing reads again. Three
    whole-video arrays fewer than storing every sum: a long video's masks fit where they did not (the masks
    stage's peak on 741 frames at 360p: docs/RESULTS.md, "Long videos"). Every value is the same float32
    expression as with the sums stored."""
    T, H, W = prior.shape
    base = _grid(H, W) if base is None else base
    w = weight.astype(np.float32)
    nf = np.empty((T, H, W), np.float32)  # forward numerators, then the result
    df = np.empty((T, H, W), np.float32)  # forward denominators
    for t in range(T):  # frame t samples frame t-1 through its flow to t-1 (bwd[t-1])
        nf[t] = prior[t] * w[t]
        df[t] = w[t]
        if t > 0:
            nf[t] += beta * _warp(nf[t - 1], bwd[t - 1], base)
            df[t] += beta * _warp(df[t - 1], bwd[t - 1], base)
    nb = db = None
    for t in range(T - 1, -1, -1):  # frame t samples frame t+1 through fwd[t]
        wp = prior[t] * w[t]
        wt = np.full((H, W), w[t], np.float32)
        if nb is None:
            nb, db = wp.copy(), wt.copy()
        else:
            nb = wp + beta * _warp(nb, fwd[t], base)
            db = wt + beta * _warp(db, fwd[t], base)
        num, den = nf[t] + nb - wp, df[t] + db - wt
        nf[t] = np.where(den > 1e-3, num / np.maximum(den, 1e-3), 0.0)
    return nf


def _grabcut(frame: np.ndarray, soft: np.ndarray, band: int, iters: int, erode: int, keep_weak: bool = False
             ) -> np.ndarray:
    """GrabCut seeded by a soft map: > 0.8 (eroded) definite foreground, > 0.5 probable foreground, a band around
    probable background; only the bounding box of that band is processed. ``keep_weak``: without a definite
    foreground seed, a cut that keeps under half of the candidate gives the candidate back (step 5)."""
    cand = soft > 0.5
    if cand.sum() < 16:
        return cand
    H, W = cand.shape
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * band + 1, 2 * band + 1))
    near = cv2.dilate(cand.astype(np.uint8), k) > 0
    ys, xs = np.nonzero(near)
    y0, y1, x0, x1 = max(0, ys.min() - 1), min(H, ys.max() + 2), max(0, xs.min() - 1), min(W, xs.max() + 2)
    gc = np.full((y1 - y0, x1 - x0), cv2.GC_BGD, np.uint8)
    gc[near[y0:y1, x0:x1]] = cv2.GC_PR_BGD
    gc[cand[y0:y1, x0:x1]] = cv2.GC_PR_FGD
    sure = soft > 0.8
    if erode > 0:
        sure = cv2.erode(sure.astype(np.uint8), cv2.getStructuringElement(
            cv2.MORPH_ELLIPSE, (2 * erode + 1, 2 * erode + 1))) > 0
    gc[sure[y0:y1, x0:x1]] = cv2.GC_FGD
    if not ((gc == cv2.GC_BGD) | (gc == cv2.GC_PR_BGD)).any():
        return cand
    cv2.setRNGSeed(0)  # GrabCut's k-means uses OpenCV's per-thread RNG: reset it so reruns are identical
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    try:
        cv2.grabCut(np.ascontiguousarray(frame[y0:y1, x0:x1, ::-1]), gc, None, bgd, fgd, iters,
                    cv2.GC_INIT_WITH_MASK)
    except cv2.error:  # degenerate colour models (a flat region): keep the motion region
        return cand
    out = np.zeros_like(cand)
    out[y0:y1, x0:x1] = (gc == cv2.GC_FGD) | (gc == cv2.GC_PR_FGD)
    if keep_weak and not sure.any() and 2 * int(out.sum()) < int(cand.sum()):
        return cand  # nothing anchored the foreground model: the colours did not separate, the motion stands
    return out


def _fit_affine(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least squares: src, dst (N, 2) -> (2, 3) affine map."""
    sol, *_ = np.linalg.lstsq(np.c_[src, np.ones(len(src))], dst, rcond=None)  # (3, 2)
    return sol.T


def _apply(a: np.ndarray, pts: np.ndarray) -> np.ndarray:
    return pts @ a[:, :2].T + a[:, 2]


def _local_ransac(src: np.ndarray, dst: np.ndarray, tol: float, radius: float, tries: int = 48
                  ) -> tuple[np.ndarray | None, np.ndarray]:
    """The affine motion that most samples follow -> ((2, 3) or None, inliers (N,) bool).

    Hypotheses come from neighbourhoods (samples within ``radius`` of a random one), not from random triples:
    two regions that translate differently side by side are fitted well at their centres by one sheared or
    rotating affine map, and a triple drawn across both finds that blend; a neighbourhood lies on one surface."""
    rng = np.random.default_rng(0)  # fixed: reruns give the same masks
    best, best_in = None, np.zeros(len(src), bool)
    for i in rng.choice(len(src), min(tries, len(src)), replace=False):
        near = np.linalg.norm(src - src[i], axis=1) <= radius
        if near.sum() < 6:
            continue
        a = _fit_affine(src[near], dst[near])
        inl = np.linalg.norm(_apply(a, src) - dst, axis=1) <= tol
        if inl.sum() > best_in.sum():
            best, best_in = a, inl
    for _ in range(2):  # a neighbourhood's fit extrapolates poorly: refit on its inliers
        if best_in.sum() < 6:
            break
        best = _fit_affine(src[best_in], dst[best_in])
        best_in = np.linalg.norm(_apply(best, src) - dst, axis=1) <= tol
    return best, best_in


def split_by_motion(component: np.ndarray, flow: np.ndarray, p: MotionParams, min_px: int) -> list[np.ndarray]:
    """One connected component (H, W) bool and its frame's flow (H, W, 2) -> [component] or its two motion layers.

    The motion most of the component follows is fitted first, a second one to what it leaves unexplained, and
    the two are refined by alternating assignment and refitting. The component is split only if each motion
    alone explains at least ``split_min`` of its flow samples (so a few limbs or a flow error do not count as an
    object) and both together ``split_fit`` (two rigid layers; an articulated or non-rigid body whose parts move
    every which way, a person jumping, is left whole rather than cut at a random joint), the two motions differ
    by at least ``split_px`` (median over the component: closer motions are one object's non-rigid parts, or
    noise), and each layer keeps ``min_px``. Each pixel goes to the motion that
    predicts its flow best; a layer keeps its largest connected piece, and the stray pieces go to the nearest
    layer, so the two layers cover the component exactly."""
    if p.split_px <= 0:
        return [component]
    H, W = component.shape
    scale = min(H, W) / REF_SHORT_SIDE
    # samples away from the edge: flow there mixes the object with what it occludes
    inner = cv2.erode(component.astype(np.uint8), np.ones((3, 3), np.uint8), iterations=max(1, round(2 * scale)))
    step = max(1, int(round(2 * scale)))
    ys, xs = np.nonzero(inner[::step, ::step])
    if len(ys) < 40:
        return [component]
    ys, xs = ys * step, xs * step
    src = np.stack([xs, ys], 1).astype(np.float64)                     # (N, 2)
    dst = src + flow[ys, xs]
    tol, radius = 0.5 * p.min_residual * scale, 12 * scale
    a1, in1 = _local_ransac(src, dst, tol, radius)
    if a1 is None or (~in1).mean() < p.split_min:
        return [component]
    a2, _ = _local_ransac(src[~in1], dst[~in1], tol, radius)
    if a2 is None:
        return [component]
    models = [a1, a2]
    for _ in range(3):  # alternate: each motion refitted to the samples it explains better than the other
        err = np.stack([np.linalg.norm(_apply(a, src) - dst, axis=1) for a in models])  # (2, N)
        own = err.argmin(0)
        # samples that neither explains (a third motion, flow errors) stay out of both fits
        models = [_fit_affine(src[sel], dst[sel]) if (sel := (own == k) & (err[k] <= tol)).sum() >= 6 else a
                  for k, a in enumerate(models)]
    err = np.stack([np.linalg.norm(_apply(a, src) - dst, axis=1) for a in models])
    own = err.argmin(0)
    explained = [((own == k) & (err[k] <= tol)).mean() for k in (0, 1)]
    if min(explained) < p.split_min or sum(explained) < p.split_fit:
        return [component]
    py, px = np.nonzero(component)
    pts = np.stack([px, py], 1).astype(np.float64)                     # (P, 2)
    pred = [_apply(a, pts) for a in models]                            # where each motion sends a pixel
    if np.median(np.linalg.norm(pred[0] - pred[1], axis=1)) < p.split_px * scale:
        return [component]
    target = pts + flow[py, px]
    first = np.linalg.norm(target - pred[0], axis=1) <= np.linalg.norm(target - pred[1], axis=1)
    label = np.zeros((H, W), np.uint8)
    label[py, px] = np.where(first, 1, 2)
    label = cv2.medianBlur(label, 5) * component  # pixel-wise flow is noisy: smooth the assignment
    layers = []
    for k in (1, 2):
        n, lab, stats, _ = cv2.connectedComponentsWithStats((label == k).astype(np.uint8), connectivity=8)
        if n < 2:
            return [component]
        biggest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
        layers.append(lab == biggest)
    stray = component & ~(layers[0] | layers[1])
    if stray.any():
        d = [cv2.distanceTransform((~layer).astype(np.uint8), cv2.DIST_L2, 3) for layer in layers]
        to_first = stray & (d[0] <= d[1])
        layers = [layers[0] | to_first, layers[1] | (stray & ~to_first)]
    if min(int(layer.sum()) for layer in layers) < max(min_px, p.split_min * component.sum()):
        return [component]
    return layers


def instances(frame: np.ndarray, soft: np.ndarray, p: MotionParams, max_masks: int = 3, min_area: float = 0.002,
              flow: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One frame: smoothed prior (H, W) -> masks (K, H, W) bool (disjoint) and contrast scores (K,), best first;
    components smaller than ``min_area`` of the frame are dropped, at most ``max_masks`` kept. With the frame's
    ``flow`` (H, W, 2), a component that holds two motions is split into them (``split_by_motion``)."""
    H, W = soft.shape
    scale = min(H, W) / REF_SHORT_SIDE
    min_px = max(1, int(min_area * H * W))
    region = _grabcut(frame, soft, max(1, int(round(p.band * scale))), p.grabcut_iters,
                      max(1, int(round(3 * scale))), p.keep_weak)
    n, lab = cv2.connectedComponents(region.astype(np.uint8), connectivity=8)
    ring_k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * max(1, int(round(p.ring * scale))) + 1,) * 2)
    masks, scores = [], []
    for i in range(1, n):
        comp = lab == i
        if comp.sum() < min_px:
            continue
        for m in split_by_motion(comp, flow, p, min_px) if flow is not None else [comp]:
            # the ring lies outside the whole component: a layer's sibling is not its background
            ring = (cv2.dilate(m.astype(np.uint8), ring_k) > 0) & ~comp
            score = float(soft[m].mean() - (soft[ring].mean() if ring.any() else 0.0))
            if score >= p.min_score:
                masks.append(m)
                scores.append(score)
    if not masks:
        return np.zeros((0, H, W), bool), np.zeros(0)
    order = np.argsort(-np.asarray(scores), kind="stable")[:max_masks]
    return np.stack([masks[i] for i in order]), np.asarray(scores)[order]


FlowFn = Callable[[list[np.ndarray]], tuple[np.ndarray, np.ndarray]]
FarFlowFn = Callable[[list[np.ndarray], int], tuple[np.ndarray, np.ndarray]]  # (grey frames, gap) -> far, back

# The whole video is held at once (the smoothing runs along it both ways): frames 3 bytes a pixel, grey 1, the
# two flows 8 (float16), residual and prior 8, the smoothing's sums 8. Traced: 28 bytes a pixel (a test). The
# masks stage peaked at 6.0 GB on 741 frames at 360x640: 0.8 GB of libraries and 30.5 bytes a pixel
# (docs/RESULTS.md, "Long videos"). A slow video compared over a longer gap (step 8) holds that gap's flows and
# maps too, about half as much again.
PEAK_BYTES_PER_PIXEL = 32


def peak_bytes(frames: int, height: int, width: int, p: MotionParams | None = None) -> int:
    """What ``motion_masks`` holds at its peak for a video of that many frames of that size (bytes); with the
    parameters ``p``, made in windows (step 9): one window and its reach at a time, and every frame's grey (1
    byte a pixel) and flows (8; in the masks stage a memory map the kernel may drop)."""
    held = frames if p is None else min(frames, max(1, p.window) + 2 * smoothing_reach(p.smooth_beta))
    return (PEAK_BYTES_PER_PIXEL * held + 9 * (frames - held)) * height * width


def smoothing_reach(beta: float) -> int:
    """Frames after which the temporal smoothing's weight of a frame (beta^k) is under 1/1000."""
    return 0 if beta <= 0 else int(np.ceil(np.log(1e-3) / np.log(beta)))


def motion_masks(frames, p: MotionParams, max_masks: int = 3, min_area: float = 0.002,
                 flows: FlowFn | None = None, progress: Callable[[int], None] | None = None,
                 far_flows: FarFlowFn | None = None) -> tuple[list[tuple[np.ndarray, np.ndarray]], MotionEvidence]:
    """frames (T, H, W, 3) uint8 -> per frame (masks (K, H, W), scores (K,)) and the evidence maps (of the last
    window, step 9: the whole video's when it fits in one).

    ``frames``: an array, or anything with ``len`` whose slices ``frames[a:b]`` are (b-a, H, W, 3) arrays (the
    masks stage reads a window of a video at a time); ``flows``: grey frames -> (fwd, bwd) (default: computed
    here, see ``s2d.tracking.flow_cache``); ``far_flows``: (grey frames, gap) -> flows that far apart, made
    like ``flows`` (``FlowCache.far``); ``progress``: called with 1 after each frame's masks."""
    from s2d.tracking.flow_cache import FlowCache

    T = len(frames)
    step = max(1, p.window)
    gray = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for a in range(0, T, step) for f in frames[a:a + step]]
    H, W = gray[0].shape if gray else (0, 0)
    box = picture_box(gray) if gray else (0, H, 0, W)
    y0, y1, x0, x1 = box
    boxed = box != (0, H, 0, W)
    if boxed:  # letterboxed: the masks are made on the picture and placed back in the frame
        gray = [np.ascontiguousarray(g[y0:y1, x0:x1]) for g in gray]
        frames = _Cropped(frames, box)
    fwd, bwd = (flows or FlowCache(None).flows)(gray)
    reach = smoothing_reach(p.smooth_beta)
    out, gaps, ev = [], [], None
    for a in range(0, T, step):
        b = min(T, a + step)
        a0, b0 = max(0, a - reach), min(T, b + reach)  # the window and what its smoothing reaches
        win = np.asarray(frames[a0:b0])
        f, g = fwd[a0:b0 - 1], bwd[a0:b0 - 1]
        ev = None  # the last window's maps go before this one's are made
        ev = motion_evidence(win, f, g, p, gray[a0:b0], min_area, far_flows)
        gaps.append(ev.gap)
        # a weak mover is told from scenery only where the scenery's own residual is well under the floor: over
        # parallax (goat on uneven ground, border residual 3.9 px) the weak regions are scenery (step 5)
        here = replace(p, keep_weak=p.keep_weak and still_scenery(ev.residual, p))
        for t in range(a - a0, b - a0):
            out.append(instances(win[t], ev.smoothed[t], here, min(max_masks, p.max_movers), min_area,
                                 ev.motion_of(t, f, g)))
            if progress is not None:
                progress(1)
    if ev is None:
        raise ValueError("motion masks of a video without frames")
    ev.gaps = tuple(gaps)
    ev.box = box
    if boxed:
        out = [(np.pad(m, ((0, 0), (y0, H - y1), (x0, W - x1))), sc) for m, sc in out]
    return out, ev


class _Cropped:
    """A video's frames (an array, or slices of a lazy reader) cut to ``box`` (y0, y1, x0, x1) when sliced."""

    def __init__(self, frames, box: tuple[int, int, int, int]):
        self.frames, self.box = frames, box

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, sl: slice) -> np.ndarray:
        y0, y1, x0, x1 = self.box
        return np.ascontiguousarray(np.asarray(self.frames[sl])[:, y0:y1, x0:x1])


def merge_with_maskcut(motion: tuple[np.ndarray, np.ndarray], maskcut: tuple[np.ndarray, np.ndarray],
                       max_masks: int, min_area: float, min_outside: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """One frame: motion masks first, then every MaskCut mask of which at least ``min_outside`` lies outside
    them, minus the motion pixels, if it keeps ``min_area`` of the frame. -> disjoint (K, H, W), (K,) scores,
    K <= max_masks; motion masks keep their rank (what moves is the stronger evidence).

    Why a share: colour features group an object with a neighbour of its colours, so a MaskCut mask can hold a
    moving object and a slower one it half hides; what lies outside the motion mask is then the slower object,
    a third to a half of the MaskCut mask on the demo. A MaskCut mask of the moving object alone leaves mostly
    its rim outside (1-15 % there). The default 0.5 ("mostly outside") drops both; ``masks.maskcut_outside=0.25``
    keeps the hidden objects (demo keymasks AP50 90.4 -> 100.0, the final model lower: docs/RESULTS.md)."""
    mm, ms = motion
    cm, cs = maskcut
    H, W = mm.shape[1:]  # (0, H, W) when nothing moves
    taken = mm.any(0) if len(mm) else None
    masks, scores = list(mm), list(ms)
    min_px = max(1, int(min_area * H * W))
    for m, s in zip(cm, cs):
        if len(masks) >= max_masks:
            break
        if taken is not None:
            rest = m & ~taken
            if rest.sum() < min_outside * m.sum():
                continue
            m = rest
        if m.sum() >= min_px:
            masks.append(m)
            scores.append(s)
            taken = m if taken is None else taken | m
    if not masks:
        return np.zeros((0, H, W), bool), np.zeros(0)
    return np.stack(masks[:max_masks]), np.asarray(scores[:max_masks], np.float64)
