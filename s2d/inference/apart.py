"""A teacher tube whose mask falls apart into objects is split into one tube per object.

A video model's query can hold several objects at once: on a video of two children jumping on a bed, one teacher
tube covers both children while they are apart, and on a campus of walkers a query covers two or three walkers
(docs/RESULTS.md, "Five real clips from outside the development set"). Taught to the final model, such a tube
teaches that separate objects are one. ``label.one_identity`` cannot see it: that rule looks for a tube matching
one label instance on some frames and another on others, and a tube holding two at once matches neither.

The labels the teacher learned from tell it (the keymask instances: the point tracker followed each of them, and
two instances with masks on the same frame are two objects, since a frame's masks do not overlap). A tube
*holds* an instance on a frame when half or more of the instance's mask there lies inside the tube's mask. The
tube's mask on a frame falls into connected parts; where two parts hold different instances, the tube holds
them apart, and the tube is split: one tube per instance it holds apart, each part of each frame going to one of
them. Objects that touch (a rider on a horse, one object for DAVIS-2016) make one part, and such a tube is left
whole. So is a duplicate: a tube of which the tubes ranked above it cover half the pixels or more (the overlap
decay of ``s2d.inference.rescore`` ranks it at half its score or less). What it holds, they hold; split, its
pieces are more near-empty targets for the final model, which lost on the demo by them (docs/RESULTS.md).

Which part goes where: a part that holds an instance goes to that instance's tube (the one it holds most of, when
it holds several). The other parts, and the frames without labels, follow the parts next to them in time: a
part goes to the tube whose mask on the neighbouring frame it overlaps most, going forward from the labelled
frames and then backward. A part that overlaps none goes to the tube of the nearest part of the same frame that
has one, and failing that to the tube of the instance the whole tube holds on most frames.
"""
from __future__ import annotations

import cv2
import numpy as np

from s2d.inference.rescore import ranking_scores
from s2d.inference.video_predict import Tube
from s2d.labelset import rle
from s2d.labelset.types import VideoLabels

# share of a label instance's mask on a frame that must lie inside a tube's part for the part to hold it
HOLD_SHARE = 0.5
# a tube of which the tubes ranked above it cover at least this share of the pixels is a duplicate, left whole
DUPLICATE_SHARE = 0.5


def parts(mask: np.ndarray) -> list[np.ndarray]:
    """(H, W) bool -> its 8-connected parts, each (H, W) bool, largest first."""
    n, lab, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    order = sorted(range(1, n), key=lambda k: -int(stats[k, cv2.CC_STAT_AREA]))
    return [lab == k for k in order]


def held_instances(part: np.ndarray, labels: dict[int, np.ndarray]) -> dict[int, int]:
    """The instances a part holds: {instance: pixels of its mask inside the part}, for each ``labels`` mask (an
    instance's mask on the part's frame) of which at least ``HOLD_SHARE`` lies inside the part."""
    out = {}
    for j, m in labels.items():
        inside = int((part & m).sum())
        if inside and inside >= HOLD_SHARE * m.sum():
            out[j] = inside
    return out


class FrameLabels:
    """The masks of a video's label instances, decoded once per frame: ``labels[t]`` is {instance: its (H, W) bool
    mask on frame t} for the instances with a mask there."""

    def __init__(self, labels: VideoLabels):
        self.labels = labels
        self._frames: dict[int, dict[int, np.ndarray]] = {}

    def __getitem__(self, t: int) -> dict[int, np.ndarray]:
        if t not in self._frames:
            self._frames[t] = {j: rle.decode(inst.segmentations[t]).astype(bool)
                               for j, inst in enumerate(self.labels.instances)
                               if inst.segmentations[t] is not None and rle.area(inst.segmentations[t])}
        return self._frames[t]


def apart_instances(tube: Tube, labels: FrameLabels) -> tuple[list[list[np.ndarray]], list[list[dict[int, int]]],
                                                              list[int]]:
    """A tube's parts on each of its frames (in the order of ``sorted(tube.masks)``), the instances each part holds
    (empty lists everywhere when it holds none apart) and the instances it holds apart (by two parts of one frame),
    ordered by the frames the tube holds them on, most first, then by index."""
    frames = sorted(tube.masks)
    pieces = [parts(tube.masks[t]) for t in frames]
    held: list[list[dict[int, int]] | None] = [None] * len(frames)
    apart: set[int] = set()
    for i, t in enumerate(frames):  # only a frame of two parts or more can hold instances apart
        if len(pieces[i]) >= 2 and labels[t]:
            held[i] = [held_instances(p, labels[t]) for p in pieces[i]]
            owners = {max(h, key=h.get) for h in held[i] if h}
            if len(owners) >= 2:
                apart.update(owners)
    if len(apart) < 2:
        return pieces, [[] for _ in frames], sorted(apart)
    for i, t in enumerate(frames):
        if held[i] is None:
            held[i] = [held_instances(p, labels[t]) for p in pieces[i]]
    count = {j: sum(any(j in h and max(h, key=h.get) == j for h in hs) for hs in held) for j in apart}
    return pieces, held, sorted(apart, key=lambda j: (-count[j], j))


def _overlap_owner(part: np.ndarray, neighbour: dict[int, np.ndarray]) -> int | None:
    """The tube (key of ``neighbour``: its mask on the neighbouring frame) the part overlaps most, or None."""
    best, owner = 0, None
    for j, m in neighbour.items():
        n = int((part & m).sum())
        if n > best:
            best, owner = n, j
    return owner


def _nearest_owner(part: np.ndarray, ps: list[np.ndarray], owner: list[int | None]) -> int | None:
    """The owner of the part of the same frame nearest to ``part`` (pixel distance), or None when none has one."""
    owned = [k for k, o in enumerate(owner) if o is not None]
    if not owned:
        return None
    dist = cv2.distanceTransform((~part).astype(np.uint8), cv2.DIST_L2, 3)        # (H, W) distance to the part
    return owner[min(owned, key=lambda k: float(dist[ps[k]].min()))]


def split_tube(tube: Tube, labels: FrameLabels) -> list[Tube]:
    """``tube`` as one tube per instance of ``labels`` it holds apart (the first holding the instance it holds on
    most frames), or ``[tube]`` when it holds none apart. The split tubes keep the tube's scores and cut frames."""
    pieces, held, apart = apart_instances(tube, labels)
    if len(apart) < 2:
        return [tube]
    frames = sorted(tube.masks)
    # owner[i][k]: the instance (of ``apart``) the k-th part of the i-th frame goes to; first what the labels say
    owner: list[list[int | None]] = []
    for hs in held:
        row = []
        for h in hs:
            h = {j: n for j, n in h.items() if j in apart}
            row.append(max(h, key=h.get) if h else None)
        owner.append(row)

    def masks_of(i: int) -> dict[int, np.ndarray]:
        out: dict[int, np.ndarray] = {}
        for p, o in zip(pieces[i], owner[i]):
            if o is not None:
                out[o] = out[o] | p if o in out else p
        return out

    # then in time: forward from the labelled frames, then backward; a frame follows its neighbour only where that
    # neighbour is the next frame of the tube (a gap in the tube breaks the chain)
    for order in (range(1, len(frames)), range(len(frames) - 2, -1, -1)):
        for i in order:
            j = i - 1 if order.step == 1 else i + 1
            if abs(frames[j] - frames[i]) != 1 or all(o is not None for o in owner[i]):
                continue
            near = masks_of(j)
            for k, p in enumerate(pieces[i]):
                if owner[i][k] is None:
                    owner[i][k] = _overlap_owner(p, near)
    for i, ps in enumerate(pieces):
        for k, p in enumerate(ps):
            if owner[i][k] is None:
                owner[i][k] = _nearest_owner(p, ps, owner[i])
        owner[i] = [apart[0] if o is None else o for o in owner[i]]
    out = []
    for j in apart:
        masks = {}
        for i, t in enumerate(frames):
            m = masks_of(i).get(j)
            if m is not None:
                masks[t] = m
        if masks:
            out.append(Tube(masks, list(tube.scores), list(tube.mask_scores), cut=set(tube.cut)))
    return out


def split_apart(tubes: list[Tube], labels: VideoLabels) -> tuple[list[Tube], int]:
    """The tubes of one video, each that holds instances of ``labels`` (the labels the teacher learned from) apart
    split into one tube per instance, duplicates left whole; -> (tubes, how many were split). Split tubes take the
    place of the tube."""
    if not tubes or not labels.instances:
        return list(tubes), 0
    # the share of each tube's pixels the overlap decay leaves it (the default ranking, temporal fragments last)
    share = np.array(ranking_scores(tubes, overlap_decay=True, fragments_last=True)) / np.maximum(
        [tb.score for tb in tubes], 1e-12)                                                          # (N,)
    out, split = [], 0
    decoded = FrameLabels(labels)
    for tb, own in zip(tubes, share):
        if own <= 1.0 - DUPLICATE_SHARE:
            out.append(tb)
            continue
        pieces = split_tube(tb, decoded)
        split += len(pieces) > 1
        out.extend(pieces)
    return out, split
