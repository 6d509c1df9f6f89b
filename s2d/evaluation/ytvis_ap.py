"""Class-agnostic YouTube-VIS video AP/AR, equal to ``ytvoseval.py`` with ``useCats=0``.

Same rules as the reference:
  * videos in sorted id order (ties between scores of different videos go to the lower id); inside a video,
    ground truth and detections ordered by category (the ground truth's declared categories, sorted) before
    anything else, and predictions of a category the ground truth does not declare dropped (``prepare``);
  * per video, detections sorted by score (stable) and cut to 100; ground truth sorted with ignored last;
  * greedy matching per IoU threshold: a detection takes the unmatched ground truth with the highest IoU
    >= threshold (ties go to the later one), preferring non-ignored ground truth; crowd ground truth can be
    matched many times and is ignored;
  * an unmatched detection whose average area lies outside the area range is ignored;
  * average area = mean of the non-zero per-frame areas (ground truth: the file's stored ``areas``);
  * 101-point interpolated precision, -1 for undefined cells, AP/AR averaged over the defined cells;
  * a detection matched to ground truth whose annotation id is 0 counts as unmatched (the reference stores
    the matched id and reads 0 as "no match").
Faster than the reference in three ways: tube IoUs come from a few pycocotools calls per video (``tube_iou``),
matching runs for all 10 thresholds x 4 area ranges at once (one vector per detection), and videos are spread
over worker processes (``video_pool``) when there are enough of them.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np

from s2d.evaluation.params import AREA_RNGS, IOU_THRS, MAX_DETS, REC_THRS, summarize
from s2d.evaluation.tube_iou import tube_iou_with_areas
from s2d.evaluation.video_pool import map_items
from s2d.labelset.types import Instance, Labelset

log = logging.getLogger(__name__)


def avg_area(areas) -> float:
    """Mean of the non-zero, non-null per-frame areas (0 when there are none), as the reference computes it."""
    vals = [a for a in areas if a]
    return float(np.array(vals).mean()) if vals else 0


def _mean_nonzero(areas: np.ndarray) -> np.ndarray:
    """(N, T) integer-valued areas -> (N,) mean of the non-zero ones (0 if none). Sums of integers are exact in
    float64, so this equals the reference's per-instance ``np.array(l).mean()`` bit for bit."""
    n = (areas > 0).sum(1)
    return np.where(n > 0, areas.sum(1) / np.maximum(n, 1), 0.0)


@dataclass
class VideoEval:
    """Matching result of one video for all area ranges: A area ranges, T thresholds, D dets, G gts."""

    dt_scores: np.ndarray   # (D,) sorted descending
    dt_matched: np.ndarray  # (A, T, D) bool
    dt_ignore: np.ndarray   # (A, T, D) bool
    gt_ignore: np.ndarray   # (A, G) bool


def evaluate_video(gt: list[Instance], dt: list[Instance], height: int, width: int) -> VideoEval | None:
    """One video: ``gt`` and ``dt`` in the reference's order (category first, then file order; see ``prepare``)."""
    if not gt and not dt:
        return None
    order = np.argsort([-d.score for d in dt], kind="mergesort")[:MAX_DETS[-1]]
    dt = [dt[i] for i in order]
    dt_tubes = [d.segmentations for d in dt]
    gt_tubes = [g.segmentations for g in gt]
    ious, dt_fa, gt_fa = tube_iou_with_areas(dt_tubes, gt_tubes, height, width)  # (D, G), (D, T), (G, T)
    D, G = len(dt), len(gt)
    A, T = len(AREA_RNGS), len(IOU_THRS)
    rng = np.array(AREA_RNGS)  # (A, 2)
    g_area = _mean_nonzero(gt_fa)
    for j, g in enumerate(gt):
        if g.extra.get("_areas") is not None:  # the reference averages the areas stored in the file
            g_area[j] = avg_area(g.extra["_areas"])
    d_area = _mean_nonzero(dt_fa)
    crowd = np.array([bool(g.extra.get("iscrowd", 0)) for g in gt], bool)
    zero_id = np.array([g.id == 0 for g in gt], bool)
    # (A, G): ignored ground truth per area range
    g_ig = crowd[None] | (g_area[None] < rng[:, :1]) | (g_area[None] > rng[:, 1:])
    # The reference sorts ground truth (stably) with ignored ones last, separately per area range; ties between
    # equal IoUs go to the later ground truth in that order, so we match in the same order.
    perms = [np.argsort(g_ig[a], kind="mergesort") for a in range(A)]
    ious_a = np.stack([ious[:, p] for p in perms]) if G else np.zeros((A, D, 0))  # (A, D, G)
    ig_a = np.stack([g_ig[a, p] for a, p in enumerate(perms)])                     # (A, G)
    perms_arr = np.stack(perms)                                                    # (A, G)
    crowd_a = np.stack([crowd[p] for p in perms])                                  # (A, G)
    thr = np.minimum(IOU_THRS, 1 - 1e-10)[None, :, None]                           # (1, T, 1)
    gt_taken = np.zeros((A, T, G), bool)
    dt_matched = np.zeros((A, T, D), bool)
    dt_ig = np.zeros((A, T, D), bool)
    dt_zero = np.zeros((A, T, D), bool)  # matched to ground truth with id 0
    rev = np.arange(G)[::-1]
    cand = ious >= thr.min()  # (D, G): pairs that can match at some threshold
    if G and (cand.sum(1) <= 1).all() and ((cand & ~crowd[None]).sum(0) <= 1).all():
        # No competition: every detection has at most one ground truth it could take and no ground truth is
        # wanted by two detections, so the greedy result is "d matches its only candidate wherever the IoU
        # reaches the threshold", for all lanes at once.
        g_of = cand.argmax(1)                                                       # (D,)
        best = np.where(cand.any(1), ious[np.arange(D), g_of], -1.0)                # (D,)
        dt_matched[:] = (best[None, :] >= thr[0])[None]                             # (A, T, D)
        dt_ig[:] = dt_matched & g_ig[:, g_of][:, None, :]
        dt_zero[:] = dt_matched & zero_id[g_of][None, None, :]
        candidates: list[int] | np.ndarray = []
    else:
        # a detection whose best IoU is below the lowest threshold matches nothing in any lane: skip it
        candidates = np.flatnonzero(ious.max(axis=1) >= thr.min()) if G else []
    for d in candidates:
        iou_d = ious_a[:, d, :][:, None, :]                                        # (A, 1, G)
        ok = (~gt_taken | crowd_a[:, None, :]) & (iou_d >= thr)                    # (A, T, G)
        for pick_ignored in (False, True):
            cand = ok & (ig_a[:, None, :] == pick_ignored) & ~dt_matched[:, :, d:d + 1]
            if not cand.any():
                continue
            val = np.where(cand, iou_d, -np.inf)
            # last index of the maximum = first index of the maximum in the reversed array
            m = rev[np.argmax(val[:, :, ::-1], axis=2)]                              # (A, T)
            hit = cand.any(axis=2)                                                   # (A, T)
            a_idx, t_idx = np.nonzero(hit)
            gt_taken[a_idx, t_idx, m[a_idx, t_idx]] = True
            dt_matched[a_idx, t_idx, d] = True
            dt_ig[a_idx, t_idx, d] = pick_ignored
            dt_zero[a_idx, t_idx, d] = zero_id[perms_arr[a_idx, m[a_idx, t_idx]]]
    # The reference keeps the matched ground truth's id and reads 0 as "no match": such a detection is
    # unmatched for precision/recall and area ignoring, though it still took its ground truth above.
    dt_matched &= ~dt_zero
    out_of_range = (d_area[None] < rng[:, :1]) | (d_area[None] > rng[:, 1:])       # (A, D)
    dt_ig |= ~dt_matched & out_of_range[:, None, :]
    scores = np.array([d.score for d in dt], np.float64)
    return VideoEval(scores, dt_matched, dt_ig, ig_a)


def accumulate(evals: list[VideoEval | None]) -> tuple[np.ndarray, np.ndarray]:
    """Per-video matches -> precision (T, R, 1, A, M) and recall (T, 1, A, M), -1 where undefined."""
    T, R, A, M = len(IOU_THRS), len(REC_THRS), len(AREA_RNGS), len(MAX_DETS)
    precision = -np.ones((T, R, 1, A, M))
    recall = -np.ones((T, 1, A, M))
    E = [e for e in evals if e is not None]
    if not E:
        return precision, recall
    for m, max_det in enumerate(MAX_DETS):
        scores = np.concatenate([e.dt_scores[:max_det] for e in E])
        inds = np.argsort(-scores, kind="mergesort")
        for a in range(A):
            dtm = np.concatenate([e.dt_matched[a][:, :max_det] for e in E], axis=1)[:, inds]  # (T, N)
            dtig = np.concatenate([e.dt_ignore[a][:, :max_det] for e in E], axis=1)[:, inds]
            npig = int(sum(np.count_nonzero(~e.gt_ignore[a]) for e in E))
            if npig == 0:
                continue
            tps = dtm & ~dtig
            fps = ~dtm & ~dtig
            tp_sum = np.cumsum(tps, axis=1).astype(float)  # (T, N)
            fp_sum = np.cumsum(fps, axis=1).astype(float)
            nd = tp_sum.shape[1]
            for t in range(T):
                tp, fp = tp_sum[t], fp_sum[t]
                rc = tp / npig
                pr = tp / (fp + tp + np.spacing(1))
                recall[t, 0, a, m] = rc[-1] if nd else 0
                # precision envelope: make it monotonically non-increasing from the right
                pr = np.maximum.accumulate(pr[::-1])[::-1] if nd else pr
                idx = np.searchsorted(rc, REC_THRS, side="left")
                q = np.zeros(R)
                valid = idx < nd
                q[valid] = pr[idx[valid]]
                precision[t, :, 0, a, m] = q
    return precision, recall


def _category_first(items: list[Instance], rank: dict[int, int]) -> list[Instance]:
    """Stable order by the category's place among the declared categories; undeclared ones dropped."""
    kept = [x for x in items if x.category_id in rank]
    return sorted(kept, key=lambda x: rank[x.category_id])


def _moved_by_category_order(dt: list[Instance], ordered: list[Instance]) -> int:
    """How many detections land at another rank than a plain score sort of the file order would give them."""
    by_file = [dt[i] for i in np.argsort([-d.score for d in dt], kind="mergesort")]
    by_ref = [ordered[i] for i in np.argsort([-d.score for d in ordered], kind="mergesort")]
    return sum(a is not b for a, b in zip(by_file, by_ref))


def prepare(gt: Labelset, predictions: Labelset) -> list[tuple[list[Instance], list[Instance], int, int]]:
    """Per-video jobs in the reference's order, with its quiet rules made loud.

    The reference evaluates videos in sorted id order and, with ``useCats=0``, still walks the ground truth's
    declared categories: ground truth and detections are listed category by category (file order inside one),
    and a prediction whose category is not declared is dropped. Both are reproduced here, each with one
    warning that says how many predictions it touched. Scores are checked: NaN is refused (the reference's
    sort would place it arbitrarily), negative and infinite scores are accepted with a warning.
    """
    extra = [v.name for v in predictions if v.name not in gt]
    if extra:
        raise KeyError(f"predictions for videos not in the ground truth: {extra[:10]}")
    rank = {c: k for k, c in enumerate(sorted(int(c["id"]) for c in gt.categories))}
    videos = list(gt)
    if all(v.id is not None for v in videos):
        videos = sorted(videos, key=lambda v: v.id)
    jobs = []
    dropped = moved = negative = infinite = 0
    for g in videos:
        dt = predictions[g.name].instances if g.name in predictions else []
        for k, d in enumerate(dt):
            if math.isnan(d.score):
                raise ValueError(f"prediction {k} of video '{g.name}' has a NaN score")
            negative += d.score < 0
            infinite += math.isinf(d.score)
        dt_ordered = _category_first(dt, rank)
        dropped += len(dt) - len(dt_ordered)
        if len(rank) > 1 and dt_ordered:
            moved += _moved_by_category_order([d for d in dt if d.category_id in rank], dt_ordered)
        jobs.append((_category_first(g.instances, rank), dt_ordered, g.height, g.width))
    if dropped:
        log.warning("%d prediction(s) have a category_id that the ground truth does not declare (categories %s): "
                    "dropped, as the reference evaluator does", dropped, sorted(rank))
    if moved:
        log.warning("%d prediction(s) ranked differently because equal scores are ordered by category first "
                    "(the reference evaluator lists detections category by category even with useCats=0)", moved)
    if negative or infinite:
        log.warning("%d prediction(s) with a negative score and %d with an infinite one: accepted and ranked as "
                    "the reference evaluator ranks them", negative, infinite)
    return jobs


def evaluate_ap(gt: Labelset, predictions: Labelset, workers: int | None = None) -> dict[str, float]:
    """Class-agnostic video AP/AR of ``predictions`` against ``gt``, videos paired by name.

    Videos of ``gt`` without predictions count (their ground truth is missed); predictions for videos that
    are not in ``gt`` are an error, since the reference would silently drop them. ``workers``: processes for
    the per-video part (None: automatic, 1: this process only); the numbers do not depend on it.
    """
    evals = map_items(evaluate_video, prepare(gt, predictions), workers)
    precision, recall = accumulate(evals)
    return summarize(precision, recall)
