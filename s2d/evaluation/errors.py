"""Where a labelset loses AP50: the false positives that rank above a true tube and the objects it misses.

Video AP at IoU 0.5 falls for two reasons only: an object no tube matches (recall), and a tube that matches
nothing ranked above one that does (precision; a false positive ranked after the last true tube costs nothing,
COCO-style AP takes the precision envelope). This module lists both, matched as the evaluator matches at one
threshold: each video's tubes in score order, each taking the unmatched object of highest tube IoU >= the
threshold; crowd objects left out; every tube of a video read, where the evaluator reads its 100 best. It names
what each false positive is, so a researcher can see what a stage gets wrong without opening the masks:

* ``duplicate``: tube IoU >= the threshold with an object that a higher-ranked tube of its video took;
* ``switch``: its masks match one object on some frames and another on others (each on >= ``SWITCH_FRAMES``
  frames, per-frame IoU >= the threshold): a query that handed over from one object to the next;
* ``fragment``: matches one object on some frames, but not enough of the object's tube (a piece in time, or
  masks that drift);
* ``inexact``: overlaps an object (tube IoU >= ``OVERLAP``) without matching it on any frame (part of it, or
  several objects merged);
* ``background``: tube IoU below ``OVERLAP`` with every object.

A diagnostic against ground truth: nothing in a run reads it to choose anything.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from s2d.evaluation.tube_iou import tube_iou
from s2d.labelset.frame_match import frame_objects, held_objects
from s2d.labelset.types import Labelset, VideoLabels

KINDS = ("duplicate", "switch", "fragment", "inexact", "background")
SWITCH_FRAMES = 2   # frames on each object before a tube counts as holding both (one frame can be a crossing)
OVERLAP = 0.1       # tube IoU below which a false positive is background


@dataclass(frozen=True)
class FalsePositive:
    video: str
    index: int            # the instance's index in its video
    score: float
    rank: int             # 1 = the highest score of the labelset
    kind: str             # one of KINDS
    object: int | None    # the ground-truth object (index in its video) of highest tube IoU; None: no overlap
    iou: float            # tube IoU with that object
    held: tuple[int, ...] = ()  # objects its masks match frame by frame, in order of first frame


@dataclass(frozen=True)
class Missed:
    video: str
    object: int           # index in its video
    best_iou: float       # the highest tube IoU any tube of the video reaches with it
    best_index: int | None  # that tube (None: no tube overlaps it)
    best_held: tuple[int, ...] = ()  # the objects that tube's masks match frame by frame, in order


@dataclass
class LabelsetErrors:
    iou_thr: float
    objects: int                   # ground-truth objects (crowd left out)
    found: int                     # matched at iou_thr
    false_positives: list[FalsePositive]  # those ranked above the last true tube, by rank
    missed: list[Missed]

    def counts(self) -> dict[str, int]:
        """Number of costly false positives of each kind (every kind present, 0 when none)."""
        return {k: sum(fp.kind == k for fp in self.false_positives) for k in KINDS}


def match_video(ious: np.ndarray, scores: np.ndarray, iou_thr: float) -> np.ndarray:
    """ious (D, G), scores (D,) -> (D,) the object each tube takes (-1: none): tubes in score order (stable),
    each taking the free object of highest IoU >= ``iou_thr``."""
    D, G = ious.shape
    taken = np.zeros(G, bool)
    out = np.full(D, -1, np.int64)
    for d in np.argsort(-scores, kind="mergesort"):
        if not G:
            break
        cand = np.where(taken | (ious[d] < iou_thr), -np.inf, ious[d])
        j = int(np.argmax(cand))
        if np.isfinite(cand[j]):
            taken[j] = True
            out[d] = j
    return out


def _kind(iou_row: np.ndarray, taken_by_other: np.ndarray, frames: np.ndarray, iou_thr: float) -> str:
    """The kind of a tube that matched no object: iou_row (G,) its tube IoUs, taken_by_other (G,) whether a
    higher-ranked tube took each object, frames (T,) its per-frame objects."""
    if (taken_by_other & (iou_row >= iou_thr)).any():
        return "duplicate"
    ids, n = np.unique(frames[frames >= 0], return_counts=True)
    if (n >= SWITCH_FRAMES).sum() >= 2:
        return "switch"
    if len(ids):
        return "fragment"
    return "inexact" if len(iou_row) and iou_row.max() >= OVERLAP else "background"


def labelset_errors(gt: Labelset, pred: Labelset, iou_thr: float = 0.5) -> LabelsetErrors:
    """The costly false positives and the missed objects of ``pred`` against ``gt`` at tube IoU ``iou_thr``.
    Videos of ``gt`` that ``pred`` lacks count as videos without tubes."""
    per_video = []  # (video, gt instances, dt instances, ious, matched, frames)
    for g_video in gt:
        gts = [g for g in g_video.instances if not g.extra.get("iscrowd")]
        p_video: VideoLabels | None = pred[g_video.name] if g_video.name in pred else None
        dts = list(p_video.instances) if p_video is not None else []
        ious = (tube_iou([d.segmentations for d in dts], [g.segmentations for g in gts], g_video.height,
                         g_video.width) if dts and gts else np.zeros((len(dts), len(gts))))       # (D, G)
        scores = np.array([d.score for d in dts], np.float64)
        matched = match_video(ious, scores, iou_thr)                                           # (D,)
        frames = frame_objects(gts, dts, iou_thr) if dts and gts else np.full((len(dts), 0), -1)  # (D, T)
        per_video.append((g_video.name, gts, dts, ious, matched, frames))
    # rank over the whole labelset, as AP pools the videos' tubes by score
    flat = [(d.score, v, i) for v, (_, _, dts, _, _, _) in enumerate(per_video) for i, d in enumerate(dts)]
    order = sorted(range(len(flat)), key=lambda k: -flat[k][0])  # stable: equal scores keep video order
    rank = {(flat[k][1], flat[k][2]): r + 1 for r, k in enumerate(order)}
    true_ranks = [rank[(v, i)] for v, pv in enumerate(per_video) for i in np.flatnonzero(pv[4] >= 0)]
    last_true = max(true_ranks, default=0)
    fps, missed, objects = [], [], 0
    for v, (name, gts, dts, ious, matched, frames) in enumerate(per_video):
        objects += len(gts)
        for i in np.flatnonzero(matched < 0):
            r = rank[(v, int(i))]
            if r > last_true:
                continue
            higher = [k for k in range(len(dts)) if rank[(v, k)] < r and matched[k] >= 0]
            taken = np.zeros(len(gts), bool)
            taken[matched[higher]] = True
            best = int(np.argmax(ious[i])) if len(gts) and ious[i].max() > 0 else None
            fps.append(FalsePositive(name, int(i), float(dts[i].score), r,
                                     _kind(ious[i], taken, frames[i], iou_thr), best,
                                     float(ious[i, best]) if best is not None else 0.0,
                                     held_objects(frames[i])))
        for j in sorted(set(range(len(gts))) - set(matched[matched >= 0].tolist())):
            col = ious[:, j]
            best_iou = float(col.max()) if len(col) else 0.0
            best = int(np.argmax(col)) if best_iou > 0 else None
            missed.append(Missed(name, j, best_iou, best, held_objects(frames[best]) if best is not None else ()))
    return LabelsetErrors(iou_thr, objects, objects - len(missed), sorted(fps, key=lambda f: f.rank), missed)
