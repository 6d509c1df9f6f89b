"""A teacher tube keeps one object: the labels it learned from say which.

A video model's query can hand over from one object to another inside a video: on the demo, the query of an
object leaving the view takes the object that enters (9 of 51 teacher tubes over 3 seeds, docs/RESULTS.md, "What
the dense labelset still gets wrong"). Such a tube matches neither object well, ranks like a true tube, and makes
the second object's own tube look like a fragment of it. Its masks alone do not give it away (objects entering
and leaving change as fast), but the labels the teacher learned from do: the keymask instances are objects, so
a tube whose masks match one instance on some frames and another on others holds two objects in turn.

Only when the two instances are visible at the same time (their first-to-last frame spans overlap) do they count
as two objects. Keymask discovery also splits one object into instances that follow each other in time (on the
DAVIS clips, horsejump-high's rider on frames 3-21 and 29-49), and a teacher tube that joins them holds the
object throughout: it is left whole.

A tube found so keeps the frames of the instance it matches on most frames. Each of its frames goes with the
instance matched on the nearest matched frame, the earlier one on a tie. The frames that go with another
instance are dropped from the tube, and nothing else in it changes; the tube records them (``Tube.cut``), since
there its query followed another object and said nothing of this one (``final.drop_cut_frames``).
"""
from __future__ import annotations

import numpy as np

from s2d.inference.video_predict import Tube, tube_instances
from s2d.labelset.frame_match import frame_objects, held_objects
from s2d.labelset.types import VideoLabels

# a tube matches a label instance on a frame at this mask IoU (the IoU at which windows link and labels match)
IDENTITY_IOU = 0.5


def spans_overlap(frames_a: list[int], frames_b: list[int]) -> bool:
    """Whether two instances' first-to-last frame spans overlap (both visible at some time)."""
    return bool(frames_a and frames_b and frames_a[0] <= frames_b[-1] and frames_b[0] <= frames_a[-1])


def nearest_identity(ids: np.ndarray) -> np.ndarray:
    """(T,) per-frame instance (-1: none) -> (T,) the instance matched on the nearest matched frame (the earlier
    one on a tie); all -1 when no frame is matched."""
    matched = np.flatnonzero(ids >= 0)
    if not len(matched):
        return ids.copy()
    dist = np.abs(np.arange(len(ids))[:, None] - matched[None, :])                  # (T, M)
    return ids[matched[dist.argmin(1)]]  # argmin takes the first of equal distances: the earlier frame


def kept_identity(ids: np.ndarray, labels: VideoLabels) -> int | None:
    """The instance a tube keeps, or None when it holds one object: ids (T,) its per-frame instance. Among the
    instances it matches, those visible at the same time as the most matched one are other objects; with any,
    the most matched one is kept (the first matched on a tie in frame counts)."""
    order = held_objects(ids)
    if len(order) < 2:
        return None
    keep = max(order, key=lambda j: int((ids == j).sum()))  # max keeps the first of equal counts
    frames = {j: labels.instances[j].frames_with_mask for j in order}
    return keep if any(spans_overlap(frames[keep], frames[j]) for j in order if j != keep) else None


def one_identity(tubes: list[Tube], length: int, labels: VideoLabels,
                 iou_thr: float = IDENTITY_IOU) -> tuple[list[Tube], int]:
    """The tubes of one ``length``-frame video, each holding one instance of ``labels`` (the labels the teacher
    learned from); -> (tubes, how many were cut). A cut tube keeps its scores; one left without masks is dropped."""
    if not tubes or not labels.instances:
        return list(tubes), 0
    ids = frame_objects(labels.instances, tube_instances(tubes, length), iou_thr)        # (N, T)
    out, cut = [], 0
    for tb, row in zip(tubes, ids):
        keep = kept_identity(row, labels)
        if keep is None:
            out.append(tb)
            continue
        cut += 1
        owner = nearest_identity(row)                                                    # (T,)
        masks = {t: m for t, m in tb.masks.items() if owner[t] == keep}
        if masks:
            out.append(Tube(masks, list(tb.scores), list(tb.mask_scores), cut=tb.cut | (set(tb.masks) - set(masks))))
    return out, cut
