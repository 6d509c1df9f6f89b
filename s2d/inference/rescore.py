"""The score a video's tubes are ranked by, when it is not their foreground probability alone.

Video AP ranks every tube of every video by score. A model trained without labels from humans also proposes
duplicates (a second query on an object already found) and fragments (a query on part of one), often with a
foreground probability as high as the true tubes', and each of them ranked above a true tube of another video
costs that tube's precision. Two signals tell them apart without ground truth:

* mask quality, Mask2Former's instance score: the foreground probability times the mean mask probability over the
  pixels of the mask (``Tube.mask_score``). A query unsure of its own extent has a soft mask.
* overlap: objects do not share visible pixels, so a tube whose pixels a higher-ranked tube of the same video
  already covers explains little that is new. Its score is scaled by the share of its pixels that no
  higher-ranked tube covers (the rule of Mask2Former's panoptic inference, which drops a mask left with less than
  0.8 of its area, made soft: the tube is kept, ranked lower, so an object found twice is still found).
  The order matters: a greedy pass by foreground probability lets a temporal fragment (a query that held an
  object for one inference window and did not link to the next) rank above the tube that holds the same object
  on all of its frames, which then loses those frames' share. With ``fragments_last`` a tube that repeats a
  longer tube on most of its own frames (``temporal_fragments``) comes after it in the order, so the fragment,
  not the whole tube, is the one ranked down. A tube that holds one object and then another also repeats the
  second object's own tube, and would be ranked above it: the label stage cuts such tubes to one object first
  (``s2d.inference.identity``, ``label.one_identity``); on without it, the final model lost (docs/RESULTS.md).

Neither changes a mask or which tubes are kept: thresholds and NMS go by the foreground probability.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from pycocotools import mask as mask_utils

from s2d.inference.video_predict import Tube

# A tube is a temporal fragment of a tube with masks on more frames when their masks match (IoU >= FRAGMENT_IOU,
# the IoU at which windows link and earlier labels count as matched) on at least FRAGMENT_SHARE of the shorter
# tube's frames (Mask2Former's 0.8 share). Frame by frame, not summed over frames: a tube that holds one object
# and then switches to another must not pass for the container of a tube that holds the first object throughout.
FRAGMENT_IOU = 0.5
FRAGMENT_SHARE = 0.8


def exclusive_share(tubes: Sequence[Tube], order: Sequence[int]) -> np.ndarray:
    """(N,) share of each tube's pixels (summed over its frames) that no tube before it in ``order`` covers;
    0 for a tube without pixels."""
    covered: dict[int, np.ndarray] = {}  # frame -> (H, W) bool, the union of the tubes ranked so far
    share = np.zeros(len(tubes))
    for i in order:
        own = hidden = 0
        for t, m in tubes[i].masks.items():
            own += int(np.count_nonzero(m))
            c = covered.get(t)
            if c is None:
                covered[t] = m.copy()
            else:
                hidden += int(np.count_nonzero(c & m))
                c |= m
        share[i] = 1.0 - hidden / own if own else 0.0
    return share


def frame_matches(tubes: Sequence[Tube], iou_thr: float = FRAGMENT_IOU) -> np.ndarray:
    """(N, N) int: on how many frames each pair of tubes both have a mask with IoU >= ``iou_thr`` (symmetric; the
    diagonal counts each tube's own frames). One pycocotools IoU call per frame, on the tubes' RLEs."""
    n = len(tubes)
    out = np.zeros((n, n), np.int64)
    if not n or not any(tb.masks for tb in tubes):
        return out
    length = 1 + max(max(tb.masks) for tb in tubes if tb.masks)
    rles = [tb.rles(length) for tb in tubes]
    for t in range(length):
        present = [i for i in range(n) if rles[i][t] is not None]
        if not present:
            continue
        objs = [rles[i][t] for i in present]  # COCO RLE dicts (str counts): pycocotools takes them as they are
        iou = np.asarray(mask_utils.iou(objs, objs, [0] * len(objs)), np.float64).reshape(len(objs), len(objs))
        idx = np.asarray(present)
        out[np.ix_(idx, idx)] += iou >= iou_thr
    return out


def temporal_fragments(tubes: Sequence[Tube], iou_thr: float = FRAGMENT_IOU,
                       share: float = FRAGMENT_SHARE) -> list[list[int]]:
    """For each tube, the tubes it is a temporal fragment of: those with masks on more frames that match its mask
    (IoU >= ``iou_thr``) on at least ``share`` of its own frames."""
    matches = frame_matches(tubes, iou_thr)                  # (N, N)
    frames = np.array([len(tb.masks) for tb in tubes])       # (N,)
    return [[b for b in range(len(tubes)) if b != a and frames[b] > frames[a] and frames[a]
             and matches[a, b] >= share * frames[a]] for a in range(len(tubes))]


def decay_order(base: np.ndarray, containers: list[list[int]] | None = None,
                first: Sequence[int] = ()) -> np.ndarray:
    """The order the overlap decay goes through the tubes: by ``base`` score, highest first (equal scores keep
    their order, as tube NMS does), except that a tube comes after every tube it is a fragment of
    (``containers``, from ``temporal_fragments``). The tubes ``first`` go before all others (among themselves by
    the same rule)."""
    lead = set(int(i) for i in first)
    if not containers or not any(containers):
        by_score = np.argsort(-base, kind="stable")
        return np.asarray([i for i in by_score if i in lead] + [i for i in by_score if i not in lead], np.int64)
    key: dict[int, float] = {}
    depth: dict[int, int] = {}
    pending = set(range(len(base)))
    while pending:  # settle a tube once all its containers are settled (no recursion: chains can be long)
        ready = [a for a in sorted(pending) if all(b in key for b in containers[a])]
        if not ready:
            raise ValueError(f"tubes {sorted(pending)} are fragments of each other in a cycle")
        for a in ready:
            key[a] = min([float(base[a])] + [key[b] for b in containers[a]])
            depth[a] = 1 + max((depth[b] for b in containers[a]), default=-1)
        pending.difference_update(ready)
    # a fragment's key is at most its containers' and its depth larger: it sorts after each of them
    return np.asarray(sorted(range(len(base)), key=lambda i: (i not in lead, -key[i], depth[i], i)), np.int64)


def ranking_scores(tubes: Sequence[Tube], mask_score: bool = False, overlap_decay: bool = False,
                   fragments_last: bool = False, first: Sequence[int] = ()) -> list[float]:
    """The score of each tube of one video: its foreground probability, times its mask score (``mask_score``),
    times the share of its pixels that the tubes ranked above it by that score leave uncovered
    (``overlap_decay``), temporal fragments ranked after the tubes they repeat (``fragments_last``), the tubes
    ``first`` ahead of every other in that pass (``decay_order``)."""
    base = np.array([tb.score * (tb.mask_score if mask_score else 1.0) for tb in tubes])  # (N,)
    if overlap_decay and len(tubes) > 1:
        order = decay_order(base, temporal_fragments(tubes) if fragments_last else None, first)
        base = base * exclusive_share(tubes, order)
    return [float(s) for s in base]
