"""Keymask discovery for one video (METHOD.md stage 1), from per-frame masks and a point tracker.

  1. trajectories: the 50x50-grid points inside every mask, tracked forward and backward through the video;
  2. visibility grouping: per mask a binary visibility vector [gamma_t > gamma_thr]; DBSCAN (Hamming) over
     the masks; per cluster the visible ranges and the candidate masks of each range;
  3. proxy propagate-and-match: candidates re-tracked with a denser grid, point-mask Jaccard against every
     frame mask inside the cluster's merged range; match if J > lambda_J; one-to-many flag;
  4. linking: DBSCAN (Hamming) on the rows of the binary match matrix; each cluster is an instance and its
     member masks are its keymasks;
  5. stitching (ours, ``stitch_gap``): instances with disjoint frames where one's last keymask, tracked on,
     lands in the other's first (J > lambda_J) are one object the tracker lost midway (``stitching.py``).
A video longer than ``window`` frames (ours) runs 1-5 in half-overlapping windows whose instances are joined
where they share keymasks, then 5 over the whole video (``windows.py``); a video whose tracker lost every mask's
points too soon for its windows runs again in shorter ones (``min_window``, ours).
Both tracking steps are ONE tracker call each, with every query carrying its own start frame. ``batched=False``
reproduces the authors' structure (one call per mask) for the speed benchmark.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from s2d.keymasks.linking import link
from s2d.keymasks.matching import label_maps, one_to_many, point_mask_jaccard
from s2d.keymasks.queries import build_queries, propagation_grid
from s2d.keymasks.stitching import chains, stitch_pairs
from s2d.keymasks.visibility import cluster_visibility, visibility_vectors
from s2d.keymasks.windows import groups_of, join_pairs, keymask_on, window_starts
from s2d.tracking.base import PointTracker, Tracks


@dataclass
class KeymaskParams:
    """Every keymask setting and its default, defined here once: the config's ``keymasks`` section is this
    dataclass (``s2d.config.schema.KeymasksSchema`` adds only what the stage around it needs)."""
    grid: int = 50                  # query grid over the frame (step 1)
    gamma_thr: float = 0.3          # a mask is visible at t if more than this fraction of its points is
    vis_eps: float = 0.2            # visibility DBSCAN (Hamming)
    vis_min_samples: int = 5
    member_frac: float = 0.5        # a cluster is visible at t if more than this fraction of members is
    range_frac: float = 0.3         # candidate: visible on more than this fraction of the range
    lambda_j: float = 0.5           # match if point-mask Jaccard > lambda_J
    one_to_many_j: float = 0.25     # one-to-many: > 1 mask with J > this ...
    one_to_many_frames: int = 5     # ... on at least this many frames
    filter_one_to_many: bool = False
    prop_grid_min: int = 25         # re-tracking grid: clamp(area / prop_px_per_cell, min, max) over the box
    prop_grid_max: int = 50
    prop_px_per_cell: float = 800.0
    stitch_gap: int = 15            # join temporally disjoint instances up to this many frames apart (0: off)
    # a longer video is discovered in windows of this many frames, half overlapping, their instances joined where
    # they share keymasks (windows.py: with a tracker that loses points for good, visibility over hundreds of
    # frames groups nothing). 0: the whole video at once, the method's rule
    window: int = 64
    # a video whose masks give no instance because the tracker loses every mask's points within a few frames (a
    # flow tracker on fast articulated bodies: no visibility cluster has most of its members visible on any frame)
    # is discovered again in windows half as long, down to this many frames, until one gives an instance: the
    # visibility vectors then span the few frames the points last. 15 DAVIS clips outside the development set:
    # breakdance, libby and parkour got keymasks (docs/RESULTS.md). 0: off
    min_window: int = 16


@dataclass
class KeyInstance:
    members: list[int]                 # global mask indices (the keymasks)
    frames: list[int]                  # frame of each keymask
    score: float
    one_to_many: float                 # fraction of keymasks flagged one-to-many
    visible_ranges: list[tuple[int, int]]


@dataclass
class KeymaskResult:
    instances: list[KeyInstance]
    summary: dict = field(default_factory=dict)
    match: np.ndarray | None = None    # (Q, M) bool, kept for inspection
    candidates: list[int] = field(default_factory=list)


def track_queries(tracker: PointTracker, frames: np.ndarray, queries: np.ndarray, owner: np.ndarray,
                  batched: bool) -> tuple[Tracks, int]:
    """One tracker call for all queries (batched) or one call per mask; returns tracks and the call count."""
    T = len(frames)
    if len(queries) == 0:
        return Tracks(np.zeros((T, 0, 2), np.float32), np.zeros((T, 0), bool)), 0
    if batched:
        return tracker.track(frames, queries), 1
    points = np.zeros((T, len(queries), 2), np.float32)
    visible = np.zeros((T, len(queries)), bool)
    calls = 0
    for i in np.unique(owner):
        sel = np.flatnonzero(owner == i)
        tr = tracker.track(frames, queries[sel])
        points[:, sel] = tr.points
        visible[:, sel] = tr.visible
        calls += 1
    return Tracks(points, visible), calls


class WindowView:
    """The tracker as one window sees it: ``track(frames[start:stop], queries)``. A tracker with
    ``track_window`` (the flow tracker) is given the whole video, so it reads the whole video's cached flow."""

    def __init__(self, tracker: PointTracker, frames: np.ndarray, start: int, stop: int):
        self.tracker, self.frames, self.start, self.stop = tracker, frames, start, stop

    def track(self, frames: np.ndarray, queries: np.ndarray) -> Tracks:
        if hasattr(self.tracker, "track_window"):
            return self.tracker.track_window(self.frames, self.start, self.stop, queries)
        return self.tracker.track(frames, queries)


def merge_instances(parts: list[KeyInstance], scores: np.ndarray, mask_frame: np.ndarray) -> KeyInstance:
    """One instance from several of one object: their keymasks (each mask once), the mean score of those, the
    one-to-many fraction weighted by keymasks, every visible range."""
    members = list(dict.fromkeys(m for k in parts for m in k.members))
    return KeyInstance(members, mask_frame[members].tolist(), float(scores[members].mean()),
                       float(np.average([k.one_to_many for k in parts], weights=[len(k.members) for k in parts])),
                       sorted({rg for k in parts for rg in k.visible_ranges}))


def one_owner(instances: list[KeyInstance], scores: np.ndarray, mask_frame: np.ndarray) -> list[KeyInstance]:
    """A mask that is a keymask of several instances (two windows' instances left unjoined, one to one) stays
    with the one of most keymasks (the earlier on a tie); an instance left with none is dropped."""
    owner: dict[int, int] = {}
    for idx, k in enumerate(instances):
        for m in k.members:
            if m not in owner or len(k.members) > len(instances[owner[m]].members):
                owner[m] = idx
    out = []
    for idx, k in enumerate(instances):
        members = [m for m in k.members if owner[m] == idx]
        if members:
            out.append(k if len(members) == len(k.members) else
                       KeyInstance(members, mask_frame[members].tolist(), float(scores[members].mean()),
                                   k.one_to_many, k.visible_ranges))
    return out


def stitch_instances(instances: list[KeyInstance], masks: list[np.ndarray], mask_frame: np.ndarray,
                     scores: np.ndarray, frames: np.ndarray, tracker: PointTracker, p: KeymaskParams
                     ) -> tuple[list[KeyInstance], int, int]:
    """Step 5 (``stitch_gap``): temporally disjoint instances that continue one another joined. -> (instances,
    how many were joined into another, tracker calls)."""
    ends = [(max(k.frames), keymask_on(k.members, k.frames, masks, max(k.frames))) for k in instances]
    starts = [(min(k.frames), keymask_on(k.members, k.frames, masks, min(k.frames))) for k in instances]
    pairs, calls = stitch_pairs(ends, starts, frames, tracker, p.lambda_j, p.stitch_gap,
                                (p.prop_grid_min, p.prop_grid_max, p.prop_px_per_cell))
    joined = [merge_instances([instances[i] for i in g], scores, mask_frame)
              for g in chains(len(instances), pairs)]
    return joined, len(instances) - len(joined), calls


def discover_keymasks(frames: np.ndarray, frame_masks: list[np.ndarray], frame_scores: list[np.ndarray],
                      tracker: PointTracker, params: KeymaskParams | None = None,
                      batched: bool = True) -> KeymaskResult:
    """frames (T, H, W, 3) uint8; frame_masks[t] (K_t, H, W) bool disjoint; frame_scores[t] (K_t,).
    A video longer than ``params.window`` frames is discovered in half-overlapping windows (``windows.py``); one
    whose tracker lost every mask's points too soon for them, in windows half as long (``params.min_window``)."""
    p = params if params is not None else KeymaskParams()
    res = _discover_in_windows(frames, frame_masks, frame_scores, tracker, p, batched)
    first = window = first_window(len(frames), p.window)
    calls = res.summary["tracker_calls"]
    while points_lost(res.summary, p) and shortens(window, p.min_window):
        window //= 2
        res = _discover_in_windows(frames, frame_masks, frame_scores, tracker, replace(p, window=window), batched)
        calls += res.summary["tracker_calls"]
        res.summary.update(window=window, windows_shortened_from=first, tracker_calls=calls)
    return res


def first_window(length: int, window: int) -> int:
    """Frames of the first windows a video of ``length`` frames is discovered in (``window`` 0: the whole video)."""
    return min(window if window > 0 else length, length)


def shortens(window: int, min_window: int) -> bool:
    """Whether windows of ``window`` frames can be halved once more under ``min_window`` (0: never)."""
    return min_window > 0 and window // 2 >= min_window


def points_lost(summary: dict, p: KeymaskParams) -> bool:
    """Whether discovery found no instance because the tracker lost the masks' points too soon for the window:
    masks enough to cluster, visibility clusters, and none with most of its members visible on one frame."""
    return (summary.get("instances", 0) == 0 and summary.get("masks_in", 0) >= p.vis_min_samples
            and summary.get("visibility_clusters", 0) > 0 and summary.get("visible_clusters", 0) == 0)


def _discover_in_windows(frames: np.ndarray, frame_masks: list[np.ndarray], frame_scores: list[np.ndarray],
                         tracker: PointTracker, p: KeymaskParams, batched: bool) -> KeymaskResult:
    """Steps 1-5 in ``p.window``'s windows (one window when the video is no longer)."""
    starts = window_starts(len(frames), p.window)
    if len(starts) == 1:
        return _discover_clip(frames, frame_masks, frame_scores, tracker, p, batched)
    return _discover_windows(frames, frame_masks, frame_scores, tracker, p, batched, starts)


def _flatten(frame_masks: list[np.ndarray], frame_scores: list[np.ndarray]
             ) -> tuple[np.ndarray, list[np.ndarray], np.ndarray, np.ndarray]:
    """Per-frame masks and scores -> (offsets (T + 1,): index of each frame's first mask, and the total; the
    masks in one list (M,); their scores (M,); the frame of each (M,))."""
    counts = np.array([len(m) for m in frame_masks], np.int64)
    masks = [m for fm in frame_masks for m in fm]
    scores = np.concatenate([np.asarray(s, np.float64) for s in frame_scores]) if masks else np.zeros(0)
    return np.r_[0, np.cumsum(counts)], masks, scores, np.repeat(np.arange(len(frame_masks)), counts)


def _discover_windows(frames: np.ndarray, frame_masks: list[np.ndarray], frame_scores: list[np.ndarray],
                      tracker: PointTracker, p: KeymaskParams, batched: bool, starts: list[int]) -> KeymaskResult:
    """Each window discovered as a clip (steps 1-5), its instances put in video indices; instances of
    consecutive windows whose keymasks on the shared frames are the same masks joined (``join_pairs``, the
    same J > lambda_J as matching); then step 5 again over the whole video, for those that never met."""
    T, W = len(frames), p.window
    offsets, masks, scores, mask_frame = _flatten(frame_masks, frame_scores)
    summary = {"frames": T, "masks_in": len(masks), "windows": len(starts), "window": W}
    totals = {"visibility_clusters": 0, "visible_clusters": 0, "candidates": 0, "tracker_calls": 0,
              "one_to_many_candidates": 0}
    per_window: list[list[KeyInstance]] = []
    candidates: set[int] = set()
    for s in starts:
        e = min(s + W, T)
        res = _discover_clip(frames[s:e], frame_masks[s:e], frame_scores[s:e], WindowView(tracker, frames, s, e),
                             p, batched)
        for k in totals:
            totals[k] += int(res.summary.get(k, 0))
        base = int(offsets[s])
        candidates.update(base + i for i in res.candidates)
        per_window.append([KeyInstance([base + m for m in k.members], [s + f for f in k.frames], k.score,
                                       k.one_to_many, [(s + a, s + b) for a, b in k.visible_ranges])
                           for k in res.instances])
    flat = [k for ks in per_window for k in ks]
    first = np.r_[0, np.cumsum([len(ks) for ks in per_window])]
    pairs = []
    for w in range(len(per_window) - 1):
        for i, j, _ in join_pairs([(k.members, k.frames) for k in per_window[w]],
                                  [(k.members, k.frames) for k in per_window[w + 1]], masks, p.lambda_j):
            pairs.append((int(first[w]) + i, int(first[w + 1]) + j))
    instances = one_owner([merge_instances([flat[i] for i in g], scores, mask_frame)
                           for g in groups_of(len(flat), pairs)], scores, mask_frame)
    summary.update(totals, window_instances=len(flat), joined_across_windows=len(flat) - len(instances))
    if p.stitch_gap > 0 and len(instances) > 1:
        instances, summary["stitched"], calls = stitch_instances(instances, masks, mask_frame, scores, frames,
                                                                 tracker, p)
        summary["tracker_calls"] += calls
    summary.update(keymasks_out=sum(len(k.members) for k in instances), instances=len(instances))
    return KeymaskResult(instances, summary, None, sorted(candidates))


def _discover_clip(frames: np.ndarray, frame_masks: list[np.ndarray], frame_scores: list[np.ndarray],
                   tracker: PointTracker, p: KeymaskParams, batched: bool) -> KeymaskResult:
    """Steps 1-5 on the whole of ``frames`` (the method's discovery)."""
    T, H, W = frames.shape[:3]
    offsets, masks, scores, mask_frame = _flatten(frame_masks, frame_scores)
    offsets = offsets[:-1]  # (T,): the first mask of each frame
    M = len(masks)
    summary = {"frames": T, "masks_in": M}
    if M == 0:
        summary.update(visibility_clusters=0, visible_clusters=0, candidates=0, keymasks_out=0, instances=0,
                       tracker_calls=0)
        return KeymaskResult([], summary)

    # 1. trajectories of every mask's grid points: one call
    q, owner = build_queries(masks, mask_frame.tolist(), [p.grid] * M, over_box=False)
    tr, calls1 = track_queries(tracker, frames, q, owner, batched)
    # 2. visibility grouping
    vectors = visibility_vectors(tr.visible, owner, M, p.gamma_thr)  # (M, T)
    clusters = cluster_visibility(vectors, mask_frame, p.vis_eps, p.vis_min_samples, p.member_frac, p.range_frac)
    cand: list[int] = []
    merged: dict[int, tuple[int, int]] = {}
    ranges_of: dict[int, list[tuple[int, int]]] = {}
    for c in clusters:
        if not c.ranges:  # members visible, but never the same majority on one frame: nothing to propagate
            continue
        lo, hi = min(a for a, _ in c.ranges), max(b for _, b in c.ranges)
        for i in sorted(c.candidates):
            cand.append(i)
            merged[i] = (lo, hi)
            ranges_of[i] = c.ranges
    # visible_clusters: those with a frame where most of their members are visible; none where the tracker loses
    # every mask's points within a few frames (what the keymasks stage then names)
    summary.update(visibility_clusters=len(clusters), visible_clusters=sum(bool(c.ranges) for c in clusters),
                   candidates=len(cand))
    if not cand:
        summary.update(keymasks_out=0, instances=0, tracker_calls=calls1)
        return KeymaskResult([], summary)

    # 3. propagate-and-match: candidates re-tracked with a denser grid over their box, one call
    grids = [propagation_grid(int(masks[i].sum()), p.prop_grid_min, p.prop_grid_max, p.prop_px_per_cell)
             for i in cand]
    q2, owner2 = build_queries([masks[i] for i in cand], mask_frame[cand].tolist(), grids, over_box=True)
    tr2, calls2 = track_queries(tracker, frames, q2, owner2, batched)
    in_range = np.zeros((len(cand), T), bool)
    for r, i in enumerate(cand):
        a, b = merged[i]
        in_range[r, a:b + 1] = True
    maps = label_maps(frame_masks, offsets, H, W)
    J = point_mask_jaccard(tr2.points, owner2, len(cand), maps, in_range, M)  # (Q, M)
    match = J > p.lambda_j
    otm = one_to_many(J, mask_frame, T, p.one_to_many_j, p.one_to_many_frames)
    rows = np.arange(len(cand))
    if p.filter_one_to_many:
        rows = rows[~otm]

    # 4. linking
    labels = np.full(len(cand), -1, np.int64)
    if len(rows):
        labels[rows], _ = link(match[rows])
    instances = []
    for lab in sorted(set(labels.tolist()) - {-1}):
        sel = np.flatnonzero(labels == lab)
        members = [cand[r] for r in sel]
        rngs = sorted({rg for i in members for rg in ranges_of[i]})
        instances.append(KeyInstance(members, mask_frame[members].tolist(), float(scores[members].mean()),
                                     float(otm[sel].mean()), rngs))
    calls3 = 0
    if p.stitch_gap > 0 and len(instances) > 1:
        instances, summary["stitched"], calls3 = stitch_instances(instances, masks, mask_frame, scores, frames,
                                                                  tracker, p)
    summary.update(keymasks_out=sum(len(k.members) for k in instances), instances=len(instances),
                   tracker_calls=calls1 + calls2 + calls3, one_to_many_candidates=int(otm.sum()))
    return KeymaskResult(instances, summary, match, cand)


def sparse_instances(result: KeymaskResult, frame_masks: list[np.ndarray]) -> list[tuple[list[np.ndarray | None], KeyInstance]]:
    """Per instance, a per-frame list: the keymask (union if several on one frame) or None."""
    T = len(frame_masks)
    flat = [m for fm in frame_masks for m in fm]
    out = []
    for inst in result.instances:
        per: list[np.ndarray | None] = [None] * T
        for i, t in zip(inst.members, inst.frames):
            per[t] = flat[i] if per[t] is None else (per[t] | flat[i])
        out.append((per, inst))
    return out
