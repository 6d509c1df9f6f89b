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

Neither changes a mask or which tubes are kept: thresholds and NMS go by the foreground probability.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from s2d.inference.video_predict import Tube


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


def ranking_scores(tubes: Sequence[Tube], mask_score: bool = False, overlap_decay: bool = False) -> list[float]:
    """The score of each tube of one video: its foreground probability, times its mask score (``mask_score``),
    times the share of its pixels that the tubes ranked above it by that score leave uncovered
    (``overlap_decay``)."""
    base = np.array([tb.score * (tb.mask_score if mask_score else 1.0) for tb in tubes])  # (N,)
    if overlap_decay and len(tubes) > 1:
        order = np.argsort(-base, kind="stable")  # equal scores keep their order, as tube NMS does
        base = base * exclusive_share(tubes, order)
    return [float(s) for s in base]
