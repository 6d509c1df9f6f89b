"""Single-frame masks as a labelset and back: one instance per (frame, mask), with a segmentation on its own frame
only, and the inverse, per frame (masks, scores). The masks stage writes the first, keymask discovery reads the
second."""
from __future__ import annotations

import numpy as np

from s2d.labelset import rle as rle_utils
from s2d.labelset.types import Instance, VideoLabels


def frames_to_labels(skeleton: VideoLabels, per_frame: list[tuple[np.ndarray, np.ndarray]]) -> VideoLabels:
    """[(masks (K, H, W), scores (K,)) per frame] -> labels with one single-frame instance per mask."""
    T = skeleton.length
    for t, (masks, scores) in enumerate(per_frame):
        for m, s in zip(masks, scores):
            segs: list[dict | None] = [None] * T
            segs[t] = rle_utils.encode(m)
            skeleton.instances.append(Instance(segs, float(s), extra={"frame": t}))
    return skeleton


def frame_masks_of(labels: VideoLabels) -> list[tuple[np.ndarray, np.ndarray]]:
    """Inverse of ``frames_to_labels``: per frame (masks (K, H, W), scores (K,))."""
    out: list[tuple[list, list]] = [([], []) for _ in range(labels.length)]
    for inst in labels.instances:
        t = inst.extra["frame"]
        out[t][0].append(rle_utils.decode(inst.segmentations[t]))
        out[t][1].append(inst.score)
    return [(np.stack(m) if m else np.zeros((0, labels.height, labels.width), bool), np.asarray(s))
            for m, s in out]


def per_frame_to_json(per_frame: list[tuple[np.ndarray, np.ndarray]], size: tuple[int, int]) -> dict:
    """Per frame (masks (K, H, W), scores (K,)) -> a json-able dict, one list of [RLE, score] per frame: the form of
    a recording's masks (s2d.data.full_rate), whose size grows with the masks, not with masks x frames."""
    return {"height": size[0], "width": size[1],
            "frames": [[[rle_utils.encode(m), float(s)] for m, s in zip(masks, scores)] for masks, scores in per_frame]}


def per_frame_from_json(d: dict) -> list[tuple[np.ndarray, np.ndarray]]:
    """Inverse of ``per_frame_to_json``."""
    h, w = d["height"], d["width"]
    return [(np.stack([rle_utils.decode(r) for r, _ in f]) if f else np.zeros((0, h, w), bool),
             np.asarray([s for _, s in f], float)) for f in d["frames"]]
