"""Vectorised decoding of COCO compressed RLE strings into foreground intervals, and tube intersections.

pycocotools decodes one string at a time and can only intersect masks of the same frame. Here all RLE
strings of a video are decoded together with a handful of NumPy operations (same algorithm as
``rleFrString`` in maskApi.c: 5-bit groups with a continuation bit, sign extension, and counts after the
second one stored as deltas to the count two places before). Each mask becomes foreground intervals in
column-major pixel order, offset by ``frame * H * W``, so that a whole tube is one sorted 1-D interval set and
the intersection of two tubes over all frames is one ``searchsorted``.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np


def _segment_cumsum(values: np.ndarray, segment: np.ndarray) -> np.ndarray:
    """Inclusive cumulative sum that restarts whenever ``segment`` changes (segments are contiguous)."""
    if len(values) == 0:
        return values
    cs = np.cumsum(values)
    start = np.flatnonzero(np.r_[True, segment[1:] != segment[:-1]])
    base = cs[start] - values[start]
    return cs - np.repeat(base, np.diff(np.r_[start, len(values)]))


def decode_counts(strings: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Compressed counts strings -> (counts (K,) int64, string index of each count (K,))."""
    n = len(strings)
    if n == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    char_len = np.fromiter((len(s) for s in strings), np.int64, n)
    c = np.frombuffer("".join(strings).encode("ascii"), np.uint8).astype(np.int64) - 48  # (L,)
    end = (c & 0x20) == 0                               # last character of each number
    first = np.r_[True, end[:-1]]
    starts = np.flatnonzero(first)                      # (K,) first character of each number
    k = np.arange(len(c)) - np.repeat(starts, np.diff(np.r_[starts, len(c)]))
    vals = np.add.reduceat((c & 0x1F) << (5 * k), starts)
    last = np.flatnonzero(end)
    neg = (c[last] & 0x10) != 0
    vals = np.where(neg, vals | (-1 << (5 * (k[last] + 1))), vals)
    # which string each number belongs to: count numbers that end inside each string's characters
    char_sid = np.repeat(np.arange(n), char_len)
    sid = char_sid[last]
    numbers_per = np.bincount(sid, minlength=n)
    m = np.arange(len(vals)) - np.repeat(np.cumsum(numbers_per) - numbers_per, numbers_per)
    out = vals.copy()
    # counts[m] = x[m] + counts[m-2] for m > 2: a running sum along each parity of each string
    for parity, m_min in ((1, 1), (0, 2)):
        sel = np.flatnonzero((m % 2 == parity) & (m >= m_min))
        if len(sel):
            out[sel] = _segment_cumsum(vals[sel], sid[sel])
    return out, sid


def tube_intervals(tubes: Sequence[Sequence[dict | None]], height: int, width: int):
    """N tubes of T frames -> foreground intervals and per-frame areas.

    Returns (starts, ends, tube_id, areas): starts/ends (I,) int64 in the global index frame*H*W + column-major
    pixel, sorted within each tube and grouped by tube in tube order; tube_id (I,); areas (N, T) float64.
    """
    n = len(tubes)
    t_ = len(tubes[0]) if n else 0
    areas = np.zeros((n, t_), np.float64)
    key_tube, key_frame, strings = [], [], []
    for i, tube in enumerate(tubes):
        for t, seg in enumerate(tube):
            if seg is not None:
                cnt = seg["counts"]
                strings.append(cnt if isinstance(cnt, str) else cnt.decode("ascii"))
                key_tube.append(i)
                key_frame.append(t)
    if not strings:
        z = np.zeros(0, np.int64)
        return z, z, z, areas
    counts, sid = decode_counts(strings)
    seg_start = np.flatnonzero(np.r_[True, sid[1:] != sid[:-1]])
    seg_len = np.diff(np.r_[seg_start, len(counts)])
    cs = np.cumsum(counts)
    pos_end = cs - np.repeat(cs[seg_start] - counts[seg_start], seg_len)  # exclusive end of each run in its mask
    m = np.arange(len(counts)) - np.repeat(seg_start, seg_len)
    fg = (m % 2 == 1) & (counts > 0)                                       # odd runs are foreground
    kt = np.asarray(key_tube, np.int64)
    kf = np.asarray(key_frame, np.int64)
    fsid = sid[fg]
    fcount = counts[fg]
    ends = pos_end[fg] + kf[fsid] * (height * width)
    areas[kt, kf] = np.bincount(fsid, weights=fcount.astype(np.float64), minlength=len(strings))
    return ends - fcount, ends, kt[fsid], areas


def _column_extent(starts, ends, tube_id, n, t_, height, width):
    """Per (tube, frame): first and last image column touched (-1 where absent). -> two (n, T) arrays."""
    hw = height * width
    frame = starts // hw
    c0 = np.full((n, t_), np.iinfo(np.int64).max, np.int64)
    c1 = np.full((n, t_), -1, np.int64)
    np.minimum.at(c0, (tube_id, frame), (starts % hw) // height)
    np.maximum.at(c1, (tube_id, frame), ((ends - 1) % hw) // height)
    return c0, c1


def tube_intersections(dt: tuple, gt: tuple, num_dt: int, num_gt: int, height: int, width: int) -> np.ndarray:
    """Intervals from ``tube_intervals`` of detections and ground truth -> summed intersections (D, G).

    Only pairs whose column extents overlap on some frame are computed (the others intersect nowhere).
    Detection d's intervals are shifted by d * span into one sorted array; the ground-truth intervals of each
    candidate pair are queried against it (shifted the same way) in one ``searchsorted``, and the covered pixel
    counts are summed per pair with one bincount.
    """
    ds, de, did, dareas = dt
    gs, ge, gid, gareas = gt
    inter = np.zeros((num_dt, num_gt), np.float64)
    if len(gs) == 0 or len(ds) == 0:
        return inter
    t_ = dareas.shape[1]
    dc0, dc1 = _column_extent(ds, de, did, num_dt, t_, height, width)  # (D, T)
    gc0, gc1 = _column_extent(gs, ge, gid, num_gt, t_, height, width)  # (G, T)
    overlap = ((dc0[:, None] <= gc1[None]) & (gc0[None] <= dc1[:, None])).any(-1)  # (D, G)
    pd, pg = np.nonzero(overlap)
    if len(pd) == 0:
        return inter
    span = int(max(de.max(), ge.max())) + 1
    s = ds + did * span                       # (I_d,) sorted: tubes in order, each sorted
    e = de + did * span
    cum = np.r_[0, np.cumsum(e - s)]          # foreground pixels before interval k
    g_count = np.bincount(gid, minlength=num_gt)
    g_off = np.cumsum(g_count) - g_count      # first interval of each gt tube
    n_q = g_count[pg]                         # intervals queried per candidate pair
    first = np.cumsum(n_q) - n_q
    idx = np.arange(n_q.sum()) - np.repeat(first - g_off[pg], n_q)  # gt interval index of every query
    shift = np.repeat(pd * span, n_q)
    qs, qe = gs[idx] + shift, ge[idx] + shift

    def covered(x: np.ndarray) -> np.ndarray:  # foreground pixels of all detections in [0, x)
        k = np.searchsorted(s, x, side="right") - 1
        kk = np.maximum(k, 0)
        inside = np.minimum(np.maximum(x - s[kk], 0), e[kk] - s[kk])
        return np.where(k >= 0, cum[kk] + inside, 0)

    w = (covered(qe) - covered(qs)).astype(np.float64)
    pair_of_query = np.repeat(np.arange(len(pd)), n_q)
    inter[pd, pg] = np.bincount(pair_of_query, weights=w, minlength=len(pd))
    return inter
