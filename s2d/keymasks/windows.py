"""Keymask discovery on long videos: half-overlapping windows, their instances joined where they share keymasks.

Visibility grouping compares masks by the frames their tracked points are visible on, as a Hamming distance
over the whole video. It assumes a mask's points stay visible for much of the video, which holds for the short
clips the method was made for (YouTube-VIS, DAVIS) and for an occlusion-aware tracker. A flow tracker loses a
point for good at its first inconsistent step, so on a few hundred frames each mask is visible on a few tens of
them (the demo mp4s at 360p: median 31 of 200 frames and 40 of 247). Then two masks of any objects, far apart in
time, disagree on fewer than eps of the frames and DBSCAN chains every mask of the video into one cluster, on
none of whose frames most members are visible: no candidate, no instance. Windows of ``window`` frames give each
mask a vector as informative as on a short clip. Consecutive windows share half their frames, so an object seen
across a window boundary has keymasks in both windows on the shared frames: two instances whose keymasks there
are the same masks (IoU > ``same_iou`` in the mean over the frames both hold one) are one object, joined one to
one, best first. Instances that never meet in a shared frame are left to the tracker-based stitching after.
"""
from __future__ import annotations

import numpy as np


def window_starts(length: int, window: int) -> list[int]:
    """First frames of the windows of ``window`` frames covering ``length`` frames, consecutive windows sharing
    half of theirs (the stride is window // 2); the last window ends at the last frame."""
    if window <= 0 or length <= window:
        return [0]
    step = max(window // 2, 1)
    starts = list(range(0, length - window + 1, step))
    if starts[-1] + window < length:
        starts.append(length - window)
    return starts


def keymask_on(members: list[int], frames: list[int], masks: list[np.ndarray], t: int) -> np.ndarray | None:
    """The union of an instance's keymasks on frame t (H, W) bool, or None when it has none there."""
    on = [masks[m] for m, f in zip(members, frames) if f == t]
    return np.any(on, axis=0) if on else None


def join_pairs(a: list[tuple[list[int], list[int]]], b: list[tuple[list[int], list[int]]],
               masks: list[np.ndarray], same_iou: float) -> list[tuple[int, int, float]]:
    """Instances of two consecutive windows, each (members, frames) in video indices -> (i, j, mean IoU) for the
    pairs joined: one to one, best first, mean keymask IoU over the frames both hold a keymask > ``same_iou``."""
    scored = []
    for i, (ma, fa) in enumerate(a):
        for j, (mb, fb) in enumerate(b):
            shared = sorted(set(fa) & set(fb))
            if not shared:
                continue
            ious = []
            for t in shared:
                x, y = keymask_on(ma, fa, masks, t), keymask_on(mb, fb, masks, t)
                union = (x | y).sum()
                ious.append((x & y).sum() / union if union else 0.0)
            scored.append((float(np.mean(ious)), i, j))
    out, used_a, used_b = [], set(), set()
    for s, i, j in sorted(scored, key=lambda x: (-x[0], x[1], x[2])):
        if s > same_iou and i not in used_a and j not in used_b:
            used_a.add(i)
            used_b.add(j)
            out.append((i, j, s))
    return out


def groups_of(n: int, pairs: list[tuple[int, int]]) -> list[list[int]]:
    """Connected components of ``n`` items under ``pairs`` (union-find), each sorted, ordered by first item."""
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in pairs:
        ri, rj = find(i), find(j)
        if ri != rj:
            parent[max(ri, rj)] = min(ri, rj)
    comps: dict[int, list[int]] = {}
    for i in range(n):
        comps.setdefault(find(i), []).append(i)
    return sorted(comps.values(), key=lambda g: g[0])
