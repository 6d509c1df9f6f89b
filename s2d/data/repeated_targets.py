"""Targets of a training clip that repeat a higher-scored target of the same clip.

A teacher that labels whole videos puts a second query on an object it already holds (a duplicate), and its
tubes link differently across inference windows, so two tubes of the dense labelset can hold the same masks on
some frames and differ on others. Tube NMS over whole tubes (``label.nms_iou``) keeps both; the overlap decay
(``label.overlap_decay``) scores the second near 0 where it repeats the first. As targets of a clip, both are
matched to queries: two queries are taught the same masks, one as an object and one, by its score, as hardly
one. The set loss asks one query per object, and a model taught so hedges between its queries and becomes
unsure of every object (on crowded real video it held one walker a frame from a labelset holding six). Here a
target whose masks over the clip's frames repeat a higher-scored target's (clip IoU >= ``iou``) is no target:
its query is taught "no object", as any query beyond the clip's objects is. Off by default
(``final.repeat_iou``): the demo and the DAVIS clips lost AP with it (3 seeds; docs/RESULTS.md, "Tried and not
adopted"). A likely reason: a copy scored near 0 taught its query at full weight that it is no object, and left
out, the query learns that only at the no-object weight.
"""
from __future__ import annotations

import torch

from s2d.labelset.dense_iou import dense_tube_iou


def repeated_targets(masks: torch.Tensor, scores: torch.Tensor, iou: float) -> torch.Tensor:
    """masks (N, T, H, W) (> 0.5 is inside), scores (N,) -> (N,) bool, True for a target whose masks over the T
    frames have IoU >= ``iou`` with a target kept before it. Targets are visited by score, highest first (ties
    in index order), greedily, as tube NMS visits tubes."""
    n = len(masks)
    repeated = torch.zeros(n, dtype=torch.bool)
    if n < 2:
        return repeated
    inside = masks > 0.5
    clip_iou = dense_tube_iou(inside, inside)                             # (N, N)
    order = sorted(range(n), key=lambda i: -float(scores[i]))             # stable: ties keep index order
    kept: list[int] = []
    for i in order:
        if kept and bool((clip_iou[i, kept] >= iou).any()):
            repeated[i] = True
        else:
            kept.append(i)
    return repeated
