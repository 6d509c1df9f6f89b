"""Keeping the labels a new labelset misses (CutLER's rule for a self-training round's pseudo labels: the model's
confident predictions, plus every earlier pseudo mask that none of them matches at IoU 0.5).

For video labels the match is a tube IoU over the earlier instance's own frames: a keymask instance is sparse
(masks on its keymask frames, None elsewhere), and a teacher tube that extends it to the frames between is the
same object, not a worse match. An earlier instance that no new tube matches is kept as it is, its score scaled
below every new tube's, so that a model trained on the merged labels still learns it (Temporal DropLoss lets the
model fill the frames it lacks) while the new tubes rank first wherever the labels are scored. A kept instance is
marked ``"kept": true`` (in the labelset json under the annotation's ``"s2d"`` diagnostics).
"""
from __future__ import annotations

import numpy as np

from s2d.evaluation.tube_iou import tube_iou
from s2d.labelset.types import Instance, VideoLabels


def match_on_own_frames(previous: list[Instance], new: list[Instance], height: int, width: int) -> np.ndarray:
    """IoU (P, N) of each earlier instance with each new one, both restricted to the frames where the earlier
    instance has a mask (sum of intersections / sum of unions over those frames)."""
    out = np.zeros((len(previous), len(new)))
    if not new:
        return out
    for p, inst in enumerate(previous):
        own = [s is not None for s in inst.segmentations]
        cut = [[s if o else None for s, o in zip(n.segmentations, own)] for n in new]  # new tubes on p's frames
        out[p] = tube_iou([inst.segmentations], cut, height, width)[0]
    return out


def keep_missed(new: VideoLabels, previous: VideoLabels, iou_thr: float, score_scale: float) -> list[Instance]:
    """The instances of ``previous`` whose IoU with every instance of ``new`` (``match_on_own_frames``) is below
    ``iou_thr``, as new Instances with their masks and ``score_scale`` x their score."""
    if (previous.height, previous.width, previous.length) != (new.height, new.width, new.length):
        raise ValueError(f"video '{new.name}': the earlier labels are {previous.length} frames of "
                         f"{previous.height}x{previous.width}, the new ones {new.length} of {new.height}x{new.width}")
    earlier = [i for i in previous.instances if any(s is not None for s in i.segmentations)]
    iou = match_on_own_frames(earlier, new.instances, new.height, new.width)     # (P, N)
    best = iou.max(1) if new.instances else np.zeros(len(earlier))
    return [Instance(list(i.segmentations), score_scale * i.score, extra={"kept": True})
            for i, b in zip(earlier, best) if b < iou_thr]
