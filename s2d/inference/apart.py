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

Which part goes where: a part that holds an instance goes to that instance's tube. The other parts, and the
frames without labels, follow the frames next to them in time, going forward from the labelled frames and then
backward: a part goes to the split tube whose mask on the neighbouring frame it overlaps most. A part that holds
several (objects that touch on this frame, apart on others: half or more of each one's instance mask, or of its
split tube's mask on the neighbouring frame, inside the part) is cut between them, each pixel going to the one
whose mask is nearest, so that a split tube is not lost where its object touches another. A part that overlaps
none goes to the split tube nearest to it on its frame, and failing that to the one of the instance the whole
tube holds on most frames.
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import cv2
import numpy as np

from s2d.inference.rescore import ranking_scores
from s2d.inference.video_predict import Tube
from s2d.labelset import rle
from s2d.labelset.types import VideoLabels

# enters the dense labelset's fingerprint with the constants below: raise it when the rule changes
VERSION = 1
# share of a label instance's mask on a frame that must lie inside a tube's part for the part to hold it
HOLD_SHARE = 0.5
# a tube of which the tubes ranked above it cover at least this share of the pixels is a duplicate, left whole
DUPLICATE_SHARE = 0.5


class Parts(Sequence):
    """The 8-connected parts of an (H, W) bool mask, largest first, each an (H, W) bool mask made when read. A
    tube's frames are held as one label image each, not one mask per part: a 537-frame walker tube of GrabCut
    masks with their specks would take a frame's size in bytes per part."""

    def __init__(self, mask: np.ndarray):
        n, lab, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
        self._order = sorted(range(1, n), key=lambda k: -int(stats[k, cv2.CC_STAT_AREA]))
        self._labels = lab.astype(np.uint16) if n <= np.iinfo(np.uint16).max else lab          # (H, W)

    def __len__(self) -> int:
        return len(self._order)

    def __getitem__(self, k):
        if isinstance(k, slice):
            return [self[i] for i in range(*k.indices(len(self)))]
        return self._labels == self._order[k]


def part_owners(held: list[dict[int, int]]) -> set[int]:
    """The instances a frame's parts hold, one per part that holds any (the one it holds most of; ``held``: each
    part's ``held_instances``). Two or more: the parts hold them apart."""
    return {max(h, key=h.get) for h in held if h}


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
    """The masks of a video's label instances by frame: ``labels[t]`` is {instance: its (H, W) bool mask on frame
    t} for the instances with a mask there. The last ``keep`` frames read stay decoded (the tubes of a video go
    through its frames in order, one tube after another); all of a long video's would not fit in memory."""

    def __init__(self, labels: VideoLabels, keep: int = 64):
        self.labels = labels
        self.keep = keep
        self._frames: OrderedDict[int, dict[int, np.ndarray]] = OrderedDict()

    def __getitem__(self, t: int) -> dict[int, np.ndarray]:
        if t in self._frames:
            self._frames.move_to_end(t)
        else:
            self._frames[t] = {j: rle.decode(inst.segmentations[t]).astype(bool)
                               for j, inst in enumerate(self.labels.instances)
                               if inst.segmentations[t] is not None and rle.area(inst.segmentations[t])}
            if len(self._frames) > self.keep:
                self._frames.popitem(last=False)
        return self._frames[t]


def apart_instances(tube: Tube, labels: FrameLabels) -> tuple[list[Parts], list[list[dict[int, int]]], list[int]]:
    """A tube's parts on each of its frames (in the order of ``sorted(tube.masks)``), the instances each part holds
    (empty lists everywhere when it holds none apart) and the instances it holds apart (by two parts of one frame),
    ordered by the frames the tube holds them on, most first, then by index."""
    frames = sorted(tube.masks)
    pieces = [Parts(tube.masks[t]) for t in frames]
    held: list[list[dict[int, int]] | None] = [None] * len(frames)
    apart: set[int] = set()
    for i, t in enumerate(frames):  # only a frame of two parts or more can hold instances apart
        if len(pieces[i]) >= 2 and labels[t]:
            held[i] = [held_instances(p, labels[t]) for p in pieces[i]]
            owners = part_owners(held[i])
            if len(owners) >= 2:
                apart.update(owners)
    if len(apart) < 2:
        return pieces, [[] for _ in frames], sorted(apart)
    for i, t in enumerate(frames):
        if held[i] is None:
            held[i] = [held_instances(p, labels[t]) for p in pieces[i]]
    count = {j: sum(j in part_owners(hs) for hs in held) for j in apart}
    return pieces, held, sorted(apart, key=lambda j: (-count[j], j))


# where a part goes: {instance: the mask its pixels are split by} (one instance: the whole part, mask unused)
Owners = dict[int, "np.ndarray | None"]


def held_owners(part: np.ndarray, masks: dict[int, np.ndarray]) -> Owners | None:
    """Where a part goes, by ``masks`` ({instance: its mask}: the labels on the part's frame, or the split tubes'
    masks on the neighbouring frame): the instances it holds, each with its mask, when it holds several; else
    the one it overlaps most; None when it overlaps none."""
    held = held_instances(part, masks)
    if len(held) >= 2:
        return {j: masks[j] for j in held}
    best = max(masks, key=lambda j: int((part & masks[j]).sum()), default=None)  # the first of equal overlaps
    if best is None or not (part & masks[best]).any():
        return None
    return {best: None}


def share_part(part: np.ndarray, owners: Owners) -> dict[int, np.ndarray]:
    """The part's pixels for each of its owners: all of them for one owner; for several, each pixel goes to the
    owner whose mask is nearest (the first on a tie), so two objects that touch are cut between them."""
    if len(owners) == 1:
        return {next(iter(owners)): part}
    keys = list(owners)
    dist = np.stack([cv2.distanceTransform((~owners[j]).astype(np.uint8), cv2.DIST_L2, 3) for j in keys])  # (K, H, W)
    nearest = dist.argmin(0)                                                                            # (H, W)
    return {j: part & (nearest == n) for n, j in enumerate(keys)}


def _nearest_owner(part: np.ndarray, frame_masks: dict[int, np.ndarray]) -> int | None:
    """The instance whose pixels on the part's frame (``frame_masks``) lie nearest to the part, or None."""
    owned = [j for j, m in frame_masks.items() if m.any()]
    if not owned:
        return None
    dist = cv2.distanceTransform((~part).astype(np.uint8), cv2.DIST_L2, 3)        # (H, W) distance to the part
    return min(owned, key=lambda j: float(dist[frame_masks[j]].min()))


def split_tube(tube: Tube, labels: FrameLabels) -> list[Tube]:
    """``tube`` as one tube per instance of ``labels`` it holds apart (the first holding the instance it holds on
    most frames), or ``[tube]`` when it holds none apart. The split tubes keep the tube's scores and cut frames."""
    pieces, held, apart = apart_instances(tube, labels)
    if len(apart) < 2:
        return [tube]
    frames = sorted(tube.masks)
    # owner[i][k]: where the k-th part of the i-th frame goes (instances of ``apart``); first what the labels say
    owner: list[list[Owners | None]] = []
    for i, hs in enumerate(held):
        row: list[Owners | None] = []
        for h in hs:
            h = [j for j in h if j in apart]
            row.append({j: labels[frames[i]][j] for j in h} if len(h) >= 2 else {h[0]: None} if h else None)
        owner.append(row)

    def masks_of(i: int) -> dict[int, np.ndarray]:
        """{instance: its pixels on the i-th frame}, from the parts that have owners."""
        out: dict[int, np.ndarray] = {}
        for p, o in zip(pieces[i], owner[i]):
            for j, m in ({} if o is None else share_part(p, o)).items():
                out[j] = out[j] | m if j in out else m
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
                if owner[i][k] is None and near:
                    owner[i][k] = held_owners(p, near)
    for i, ps in enumerate(pieces):
        if any(o is None for o in owner[i]):
            own = masks_of(i)
            for k, p in enumerate(ps):
                if owner[i][k] is None:
                    j = _nearest_owner(p, own)
                    owner[i][k] = {apart[0] if j is None else j: None}
    out = []
    per_frame = [masks_of(i) for i in range(len(frames))]
    for j in apart:
        masks = {t: fm[j] for t, fm in zip(frames, per_frame) if j in fm and fm[j].any()}
        if masks:
            out.append(Tube(masks, list(tube.scores), list(tube.mask_scores), cut=set(tube.cut)))
    return out


def _exclusive(tubes: list[Tube]) -> np.ndarray:
    """(N,) the share of each tube's score the overlap decay leaves it (the default ranking, temporal fragments
    last): the share of its pixels that the tubes ranked above it leave uncovered."""
    return np.array(ranking_scores(tubes, overlap_decay=True, fragments_last=True)) / np.maximum(
        [tb.score for tb in tubes], 1e-12)


def split_apart(tubes: list[Tube], labels: VideoLabels) -> tuple[list[Tube], int]:
    """The tubes of one video, each that holds instances of ``labels`` (the labels the teacher learned from) apart
    split into one tube per instance, duplicates left whole; -> (tubes, how many were split). Split tubes take the
    place of the tube.

    Which tubes are duplicates is measured again after each round of splits, until a round splits none: a tube
    that lay under a tube holding several objects can lie under none of its pieces."""
    if not tubes or not labels.instances:
        return list(tubes), 0
    decoded = FrameLabels(labels)
    out, split = list(tubes), 0
    settled: set[int] = set()  # ids of the tubes split or found holding nothing apart, and of the pieces
    while True:
        share = _exclusive(out)                                                                     # (N,)
        new: list[Tube] = []
        for tb, own in zip(out, share):
            if id(tb) in settled or own <= 1.0 - DUPLICATE_SHARE:
                new.append(tb)
                continue
            pieces = split_tube(tb, decoded)
            settled.update(id(p) for p in pieces)
            split += len(pieces) > 1
            new.extend(pieces)
        if len(new) == len(out):  # no tube split this round (a tube left whole is one piece: settled)
            return new, split
        out = new
