"""The keymasks kept on their own frames of the dense labelset (``label.keymask_frames``).

The dense labelset is the distilled teacher's tubes on every frame. On a keymask frame the teacher's mask is its
reconstruction of a mask it was trained on, and the keymask itself was checked by the point tracker. On real
video the tiny CPU teacher does not improve on it there: on the keymask frames of the DAVIS clips its masks have
J 0.603-0.617 against the keymasks' 0.640 (3 seeds), and 0.563 / 0.552 against 0.589 / 0.582 on 15 clips outside
the development set (two seeds), while on the synthetic demo they are the better ones (0.975 against 0.940;
``benchmarks/keymask_frames.py``, docs/RESULTS.md). With the key, a teacher tube that matches a keymask instance
(tube IoU >= 0.5 over the instance's own frames, ``s2d.inference.keep_labels.match_on_own_frames``; one tube per
instance, the best matches first) takes the instance's masks on those frames and keeps its own elsewhere: the
teacher still fills the frames between, which is what distillation is for.
"""
from __future__ import annotations

import numpy as np

from s2d.inference.keep_labels import match_on_own_frames
from s2d.inference.video_predict import Tube, tube_instances
from s2d.labelset.rle import decode
from s2d.labelset.types import Instance, VideoLabels

MATCH_IOU = 0.5  # the tube IoU at which a teacher tube is the same object as a keymask instance (keep_iou's)


def matched_pairs(keymasks: list[Instance], teacher: list[Instance], height: int, width: int,
                  iou_thr: float = MATCH_IOU) -> list[tuple[int, int]]:
    """(keymask instance, teacher instance) index pairs: each keymask instance's best teacher instance at tube
    IoU >= ``iou_thr`` over the keymask instance's own frames; a teacher instance goes to one keymask instance,
    the best matches first (ties by index), and an instance whose best one is taken gets none."""
    if not keymasks or not teacher:
        return []
    iou = match_on_own_frames(keymasks, teacher, height, width)  # (K, N)
    pairs: list[tuple[int, int]] = []
    taken: set[int] = set()
    for k in np.argsort(-iou.max(1), kind="stable"):
        n = int(iou[k].argmax())
        if iou[k, n] >= iou_thr and n not in taken:
            taken.add(n)
            pairs.append((int(k), n))
    return pairs


def take_keymask_frames(tubes: list[Tube], keymasks: VideoLabels) -> tuple[list[Tube], list[int]]:
    """The teacher's tubes of one video, each matched one with its keymask instance's masks on the instance's
    keymask frames (``matched_pairs``), and the indices of the tubes that took them, in the order they were
    matched (best matches first). Tubes are new objects; scores unchanged."""
    earlier = [i for i in keymasks.instances if any(s is not None for s in i.segmentations)]
    pairs = matched_pairs(earlier, tube_instances(tubes, keymasks.length), keymasks.height, keymasks.width)
    # the match encoded every tube's masks; the copies keep those RLEs, so ranking and storing do not encode again
    out = [Tube(dict(tb.masks), tb.scores, tb.mask_scores, cut=set(tb.cut), _rles=dict(tb._rles)) for tb in tubes]
    for k, n in pairs:
        for t, seg in enumerate(earlier[k].segmentations):
            if seg is not None:
                out[n].masks[t] = decode(seg).astype(bool)
                out[n]._rles[t] = seg  # the keymask's own RLE: the mask just decoded from it
                out[n].cut.discard(t)  # the frame now says where the object is
    return out, [n for _, n in pairs]
