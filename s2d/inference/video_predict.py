"""Whole-video inference: windows of frames through the model, stitched into tubes.

A video longer than ``window`` frames is cut into windows that overlap by ``overlap`` frames. Each window's
queries above ``score_thr`` become tube pieces; consecutive windows are joined by the Hungarian algorithm on
mask IoU over the shared frames (IoU >= ``link_iou`` continues a tube, otherwise a new tube starts). Optional
tube NMS removes a tube whose tube IoU with a higher-scoring one is >= ``nms_iou``. The frames are resized for
the model by ``scale`` (the scale it trained at, ``s2d.inference.scale``) and the masks come back at frame size.

The IoUs are computed for all pairs at once: the link IoUs as one matrix product of the shared frames' masks
(counts of pixels, exact in float32 below 2^24 pixels per window overlap), the NMS tube IoUs from the tubes' RLEs
in a few pycocotools calls (``s2d.evaluation.tube_iou``). With a low score threshold (``label.eval_score_thr``
0.05 keeps most of a 100-query model's queries) the pairwise loops, ``link_iou_pairwise`` and ``tube_iou``, kept
as the definitions the tests and ``benchmarks/inference_speed.py`` compare against, cost minutes per video.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from s2d.evaluation.tube_iou import tube_iou_with_areas
from s2d.inference.device import model_device
from s2d.inference.flip import merge, mirrored
from s2d.inference.scale import resize_frames
from s2d.labelset import rle
from s2d.labelset.types import Instance
from s2d.models import VideoMask2Former
from s2d.models.video_mask2former import masks_at


@dataclass
class Tube:
    masks: dict[int, np.ndarray]  # frame -> (H, W) bool
    scores: list[float]           # per window: the query's foreground probability
    # per window: the query's mean mask probability inside its mask (``label.mask_score``); empty: not measured
    mask_scores: list[float] = field(default_factory=list)
    # frames taken from this tube because its query held another object there (``label.one_identity``): the
    # teacher said nothing about this object on them, so they are no evidence that it is absent
    cut: set[int] = field(default_factory=set)
    _rles: dict[int, rle.RLE] = field(default_factory=dict, repr=False)  # frame -> its mask's RLE, once encoded

    @property
    def score(self) -> float:
        """The tube's foreground probability (mean over its windows): what thresholds and NMS go by."""
        return float(np.mean(self.scores))

    @property
    def mask_score(self) -> float:
        """Mean mask probability inside the tube's masks over its windows; 1 where it was not measured."""
        return float(np.mean(self.mask_scores)) if self.mask_scores else 1.0

    def rles(self, length: int) -> list[rle.RLE | None]:
        """Per-frame RLE (None where the tube has no mask) of a ``length``-frame video; each mask encoded once."""
        for t, m in self.masks.items():
            if t not in self._rles:
                self._rles[t] = rle.encode(m)
        return [self._rles.get(t) for t in range(length)]


def tube_instances(tubes: list[Tube], length: int, scores: list[float] | None = None) -> list[Instance]:
    """Tubes of a ``length``-frame video -> labelset instances (per-frame RLE, None where a tube has no mask),
    scored by ``scores`` (default: each tube's foreground probability; ``s2d.inference.rescore`` ranks otherwise).
    The foreground probability itself goes into ``extra["teacher_score"]`` (what ``final.teacher_scores`` teaches),
    and a tube's ``cut`` frames into ``extra["cut_frames"]`` (sorted), where it has any."""
    scores = [tb.score for tb in tubes] if scores is None else scores
    return [Instance(tb.rles(length), float(s), extra={"teacher_score": float(tb.score),
                                                       **({"cut_frames": sorted(tb.cut)} if tb.cut else {})})
            for tb, s in zip(tubes, scores, strict=True)]


def _windows(T: int, window: int, overlap: int) -> list[tuple[int, int]]:
    if T <= window:
        return [(0, T)]
    step = max(window - overlap, 1)
    starts = list(range(0, T - window + 1, step))
    if starts[-1] + window < T:
        starts.append(T - window)
    return [(s, s + window) for s in starts]


def _clip(frames: np.ndarray, device: str) -> torch.Tensor:
    """frames (T, H, W, 3) uint8 -> one clip (1, T, 3, H, W) in [0, 1] on ``device``."""
    return torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2)[None].float().to(device) / 255


@torch.no_grad()
def predict_window(model: VideoMask2Former, frames: np.ndarray, score_thr: float, size: tuple[int, int],
                   device: str = "cpu", mask_scores: bool = False, flip: bool = False
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """frames (T, H, W, 3) uint8 -> masks (K, T, H, W) bool at ``size``, foreground scores (K,) of the queries
    >= score_thr and, with ``mask_scores``, their mask scores (K,): the mean mask probability over the pixels of the
    mask (Mask2Former's instance score is the product of the two; 0 for an empty mask), else None. Asked for only
    when ranked by: a sigmoid over every mask at frame size costs 10x the masks' thresholding. ``flip``: the
    queries' scores and mask logits are merged with those of the mirrored frames (``s2d.inference.flip``)."""
    clip = _clip(frames, device)
    d = getattr(model, "size_divisibility", 1)
    out = model(clip)
    scores = VideoMask2Former.scores(out["pred_logits"])[0]                 # (Q,)
    logits = out["pred_masks"][0]                                            # (Q, T, h, w) on the padded grid
    if flip:
        mir = model(mirrored(clip, model.pixel_mean, d))
        scores, logits = merge(scores, logits, VideoMask2Former.scores(mir["pred_logits"])[0],
                               mir["pred_masks"][0].flip(-1))
    keep = torch.nonzero(scores >= score_thr).flatten()
    m = logits[keep]                                                         # (K, T, h, w) on the padded grid
    if len(keep):  # back to the frames: resize to the padded input, crop the padding, resize to ``size``
        m = masks_at(m, out.get("image_size", frames.shape[1:3]), size, d)
    fg = m > 0                                                               # (K, T, H, W)
    quality = None
    if mask_scores:
        inside = fg.flatten(1).sum(1)                                        # (K,)
        quality = ((m.sigmoid() * fg).flatten(1).sum(1) / inside.clamp(min=1)).cpu().numpy()  # (K,)
    return fg.cpu().numpy(), scores[keep].cpu().numpy(), quality


def link_iou_pairwise(a: Tube, b_masks: np.ndarray, frames: list[int], offset: int) -> float:
    """The IoU of tube ``a`` and one window's masks (w, H, W) over ``frames`` (the window starts at ``offset``):
    the definition ``link_iou_matrix`` computes for all pairs."""
    inter = union = 0
    for t in frames:
        am = a.masks.get(t)
        bm = b_masks[t - offset]
        if am is None:
            union += bm.sum()
            continue
        inter += (am & bm).sum()
        union += (am | bm).sum()
    return inter / union if union else 0.0


def link_iou_matrix(prev: list[Tube], masks: np.ndarray, frames: list[int], offset: int) -> np.ndarray:
    """IoU (P, K) of P tubes and a window's K masks (K, w, H, W) over the shared ``frames``; a frame where a tube
    has no mask counts as an empty mask."""
    P, K = len(prev), len(masks)
    if not P or not K:
        return np.zeros((P, K))
    H, W = masks.shape[2:]
    empty = np.zeros((H, W), bool)
    a = np.stack([np.stack([tb.masks.get(t, empty) for t in frames]) for tb in prev]).reshape(P, -1)  # (P, S*H*W)
    b = masks[:, [t - offset for t in frames]].reshape(K, -1)                                          # (K, S*H*W)
    # pixel counts: products of 0/1 summed in float32, exact while a sum stays below 2^24 (torch's matrix
    # product, in the thread pool the model just used)
    ta, tb_ = torch.from_numpy(a).float(), torch.from_numpy(np.ascontiguousarray(b)).float()
    inter = (ta @ tb_.T).double().numpy()                                                             # (P, K)
    union = ta.sum(1).double().numpy()[:, None] + tb_.sum(1).double().numpy()[None, :] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def tube_iou(a: Tube, b: Tube) -> float:
    """Tube IoU: intersections over all frames / unions over all frames (the definition ``tube_nms`` computes for
    all pairs at once)."""
    inter = union = 0
    for f in set(a.masks) | set(b.masks):
        am, bm = a.masks.get(f), b.masks.get(f)
        if am is not None and bm is not None:
            inter += (am & bm).sum()
            union += (am | bm).sum()
        else:
            union += (am if am is not None else bm).sum()
    return inter / union if union else 0.0


def tube_nms(tubes: list[Tube], iou_thr: float) -> list[Tube]:
    """Keep tubes by decreasing score, dropping any with tube IoU >= iou_thr to one already kept."""
    order = sorted(tubes, key=lambda t: -t.score)  # stable: equal scores keep their order
    with_masks = [t for t in order if t.masks]
    if len(order) < 2 or not with_masks:
        return order
    length = 1 + max(max(t.masks) for t in with_masks)
    H, W = next(iter(with_masks[0].masks.values())).shape
    enc = [t.rles(length) for t in order]
    iou = tube_iou_with_areas(enc, enc, H, W)[0]                                  # (N, N)
    kept: list[int] = []
    for i in range(len(order)):
        if not kept or iou[i, kept].max() < iou_thr:
            kept.append(i)
    return [order[i] for i in kept]


def predict_video(model: VideoMask2Former, frames: np.ndarray, score_thr: float = 0.75, window: int = 12,
                  overlap: int = 2, link_iou: float = 0.5, nms_iou: float | None = 0.75,
                  device: str | None = None, scale: float = 1.0, mask_scores: bool = False,
                  flip: bool = False) -> list[Tube]:
    """frames (T, H, W, 3) uint8 -> tubes with a mask on every frame where the model predicts one.

    ``device``: where the clips go (default: where the model's weights are). ``scale``: the model sees the frames
    resized by this factor (``s2d.inference.scale``); masks are (H, W). ``mask_scores``: measure each tube's mask
    score (``Tube.mask_scores``, for ``label.mask_score``). ``flip``: each window is also seen mirrored and the two
    merged (``label.flip``, ``s2d.inference.flip``)."""
    device = device or model_device(model)
    T, H, W = frames.shape[:3]
    frames = resize_frames(frames, scale)
    tubes: list[Tube] = []
    prev: list[int] = []  # indices in ``tubes`` alive in the previous window
    prev_end = 0
    for s, e in _windows(T, window, overlap):
        masks, scores, quality = predict_window(model, frames[s:e], score_thr, (H, W), device,  # (K, w, H, W)
                                                mask_scores, flip)
        shared = list(range(s, min(prev_end, e)))
        assigned: dict[int, int] = {}
        if shared and prev and len(masks):
            iou = link_iou_matrix([tubes[p] for p in prev], masks, shared, s)      # (P, K)
            rows, cols = linear_sum_assignment(-iou)
            assigned = {int(c): prev[r] for r, c in zip(rows, cols) if iou[r, c] >= link_iou}
        alive = []
        for k in range(len(masks)):
            ti = assigned.get(k)
            if ti is None:
                tubes.append(Tube({}, []))
                ti = len(tubes) - 1
            for j, t in enumerate(range(s, e)):
                if t not in tubes[ti].masks and masks[k, j].any():
                    tubes[ti].masks[t] = masks[k, j]
            tubes[ti].scores.append(float(scores[k]))
            if quality is not None:
                tubes[ti].mask_scores.append(float(quality[k]))
            alive.append(ti)
        prev, prev_end = alive, e
    tubes = [t for t in tubes if t.masks]
    return tube_nms(tubes, nms_iou) if nms_iou is not None else tubes


@torch.no_grad()
def predict_topk(model: VideoMask2Former, frames: np.ndarray, topk: int, out_size: tuple[int, int],
                 device: str = "cpu") -> tuple[np.ndarray, np.ndarray]:
    """The official VideoMask2Former inference on one whole video: all frames in one pass (the decoder treats its
    input as one video), the ``topk`` queries by foreground probability, their masks resized to the padded input,
    cropped and resized to ``out_size`` (the original frame size), then > 0.

    frames (T, H, W, 3) uint8 at the model's input size -> masks (K, T, *out_size) bool, scores (K,) descending.
    """
    out = model(_clip(frames, device))
    scores = VideoMask2Former.scores(out["pred_logits"])[0]                  # (Q,)
    top = torch.topk(scores, min(topk, len(scores))).indices                 # sorted by score, descending
    logits = model.masks_at(out["pred_masks"][0, top], out["image_size"], out_size)  # (K, T, H0, W0)
    return (logits > 0).cpu().numpy(), scores[top].cpu().numpy()
