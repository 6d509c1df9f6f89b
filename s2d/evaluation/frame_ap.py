"""Frame-level class-agnostic AP: every frame scored as a one-frame video. Used for single-frame masks,
which have no identity across frames, so tube AP would not measure them fairly."""
from __future__ import annotations

from s2d.evaluation.ytvis_ap import evaluate_ap
from s2d.labelset.types import Instance, Labelset, VideoLabels


def _split(v: VideoLabels, keep_empty: bool) -> list[VideoLabels]:
    out = []
    for t in range(v.length):
        insts = [Instance([inst.segmentations[t]], inst.score) for inst in v.instances
                 if inst.segmentations[t] is not None]
        if insts or keep_empty:
            out.append(VideoLabels(f"{v.name}#{t}", v.height, v.width, 1, [], insts))
    return out


def frame_ap(gt: Labelset, pred: Labelset) -> dict[str, float]:
    """gt and pred are video labelsets (pred may hold single-frame instances); frames paired by video and index."""
    g = [f for v in gt for f in _split(v, keep_empty=True)]
    p = [f for v in pred if v.name in gt for f in _split(v, keep_empty=False)]
    return evaluate_ap(Labelset(g), Labelset(p))
