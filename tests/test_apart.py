"""A teacher tube whose mask falls apart into objects of the labels it learned from is split, one tube per object
(label.split_apart): the parts of a mask, which instances a part holds, where each part of each frame goes, the
tubes left whole, and the label stage's wiring."""
from __future__ import annotations

import numpy as np
import torch

from s2d.inference.apart import FrameLabels, Parts, held_instances, part_owners, split_apart, split_tube
from s2d.inference.video_predict import Tube
from s2d.labelset import rle
from s2d.labelset.types import Instance, VideoLabels

H, W, T = 10, 24, 6


def _box(y0, y1, x0, x1) -> np.ndarray:
    m = np.zeros((H, W), bool)
    m[y0:y1, x0:x1] = True
    return m


def _labels(*instances: dict[int, np.ndarray]) -> VideoLabels:
    return VideoLabels("v", H, W, T, instances=[Instance([rle.encode(m[t]) if t in m else None for t in range(T)])
                                                for m in instances])


def _split(tube: Tube, labels: VideoLabels) -> list[Tube]:
    return split_tube(tube, FrameLabels(labels))


def test_part_owners_one_per_part_that_holds_any():
    assert part_owners([{3: 10, 1: 4}, {}, {1: 7}]) == {3, 1}     # each part: the instance it holds most of
    assert part_owners([{2: 5}, {2: 9}]) == {2} and part_owners([{}, {}]) == set()


def test_parts_are_8_connected_and_largest_first():
    m = _box(0, 2, 0, 2) | _box(2, 3, 2, 3) | _box(5, 9, 10, 14)  # a diagonal touch joins the first two
    ps = list(Parts(m))
    assert [int(p.sum()) for p in ps] == [16, 5]
    assert (ps[0] == _box(5, 9, 10, 14)).all() and (ps[0] | ps[1] == m).all()
    assert len(Parts(np.zeros((H, W), bool))) == 0
    tail = Parts(m)[1:]                                              # a slice reads its parts too
    assert len(tail) == 1 and (tail[0] == ps[1]).all()


def test_frame_labels_decode_the_frames_and_keep_the_last_few():
    a, b = _box(2, 6, 1, 5), _box(2, 6, 18, 22)
    labels = _labels({0: a, 1: a}, {1: b, 2: np.zeros((H, W), bool)})
    fl = FrameLabels(labels, keep=2)
    assert list(fl[1]) == [0, 1] and (fl[1][0] == a).all() and (fl[1][1] == b).all()
    assert list(fl[0]) == [0] and fl[2] == {} and fl[3] == {}   # an empty mask is no mask
    assert list(fl._frames) == [2, 3]                            # the two frames read last stay decoded
    assert (fl[0][0] == a).all() and list(fl._frames) == [3, 0]


def test_a_part_holds_an_instance_from_half_of_its_mask():
    part = _box(0, 4, 0, 6)                                         # 24 px
    labels = {0: _box(0, 4, 3, 9),                                  # 12 of 24 inside: exactly half, held
              1: _box(0, 4, 4, 10),                                 # 8 of 24: not held
              2: _box(0, 1, 0, 2)}                                  # 2 of 2, held
    assert held_instances(part, labels) == {0: 12, 2: 2}
    assert held_instances(part, {}) == {}


def test_two_objects_apart_become_two_tubes_whatever_frames_the_labels_have():
    a = {t: _box(2, 6, 1 + t, 5 + t) for t in range(T)}            # moves right 1 px a frame
    b = {t: _box(2, 6, 18, 22) for t in range(T)}                   # still, apart from a on every frame
    tube = Tube({t: a[t] | b[t] for t in range(T)}, [0.9, 0.7], [0.6], cut={9})
    # the labels hold each object on frame 3 only: frames 4-5 follow frame 3 forward, frames 0-2 backward
    out = _split(tube, _labels({3: a[3]}, {3: b[3]}))
    assert len(out) == 2
    for o, want in zip(out, (a, b)):
        assert sorted(o.masks) == list(range(T)) and all((o.masks[t] == want[t]).all() for t in range(T))
        assert o.scores == [0.9, 0.7] and o.mask_scores == [0.6] and o.cut == {9}  # the tube's scores, each
    out[0].scores.append(1.0)
    assert tube.scores == [0.9, 0.7]                                # ... as copies


def test_the_instance_held_on_most_frames_comes_first():
    a = _box(2, 6, 1, 5)
    b = _box(2, 6, 18, 22)
    tube = Tube({t: a | b for t in range(T)}, [0.9])
    # instance 0 (b) is held on frames 0-1, instance 1 (a) on frames 0-5
    out = _split(tube, _labels({0: b, 1: b}, {t: a for t in range(T)}))
    assert [(o.masks[0] == a).all() for o in out] == [True, False]


def test_touching_objects_and_stray_parts_leave_the_tube_whole():
    a, b = _box(2, 6, 4, 10), _box(2, 6, 10, 16)                   # side by side: one part
    touching = Tube({t: a | b for t in range(T)}, [0.9])
    labels = _labels({t: a for t in range(T)}, {t: b for t in range(T)})
    assert _split(touching, labels) == [touching]
    stray = Tube({t: a | _box(8, 10, 20, 24) for t in range(T)}, [0.9])  # a second part that holds nothing
    assert _split(stray, labels) == [stray]
    out, n = split_apart([touching, stray], labels)
    assert n == 0 and out == [touching, stray]
    assert split_apart([touching], VideoLabels("v", H, W, T)) == ([touching], 0)  # no labels: nothing to read


def test_a_duplicate_is_left_whole():
    a, b = _box(2, 6, 1, 5), _box(2, 6, 18, 22)
    labels = _labels({t: a for t in range(T)}, {t: b for t in range(T)})
    both = Tube({t: a | b for t in range(T)}, [0.6])
    alone, n = split_apart([both], labels)
    assert n == 1 and len(alone) == 2
    # a higher-scored tube covers a: half of both's pixels, and both is a duplicate of what it holds (the overlap
    # decay ranks it at half its score or less)
    over_a = Tube({t: a for t in range(T)}, [0.9])
    out, n = split_apart([both, over_a], labels)
    assert n == 0 and out == [both, over_a]
    # a lower-scored tube over a does not make it one: it is split, and the other tube kept after its pieces
    under_a = Tube({t: a for t in range(T)}, [0.3])
    out, n = split_apart([both, under_a], labels)
    assert n == 1 and len(out) == 3 and out[2] is under_a
    # 4 of its 32 pixels of each frame covered: the tube is split
    part_a = Tube({t: _box(2, 7, 1, 2) for t in range(T)}, [0.9])
    assert split_apart([both, part_a], labels)[1] == 1


def test_duplicates_are_measured_again_after_a_split():
    a, b = _box(2, 6, 1, 5), _box(2, 6, 18, 22)
    extra = _box(8, 10, 1, 5)                                        # 8 px, nearer to a
    labels = _labels({t: a for t in range(T)}, {t: b for t in range(T)})
    long = Tube({t: a | b for t in range(T)}, [0.9])
    # a shorter tube that repeats the long one (mask IoU 32/40 on each of its 3 frames): a temporal fragment of
    # it, ranked after it and then three quarters covered, a duplicate. Once the long tube is split, its pieces
    # match it at IoU 16/40 and it ranks by its own, higher score: no longer a duplicate, split in turn
    short = Tube({t: a | b | extra for t in range(3)}, [0.95])
    out, n = split_apart([long, short], labels)
    assert n == 2 and len(out) == 4
    assert all((out[2].masks[t] == (a | extra)).all() and (out[3].masks[t] == b).all() for t in range(3))


def test_parts_without_labels_follow_their_neighbours():
    a, b = _box(2, 6, 1, 5), _box(2, 6, 18, 22)
    joined = _box(2, 6, 1, 22)                                      # frame 2: the two touch, one part
    far = _box(8, 10, 10, 12)                                       # frame 4: a part overlapping nothing before
    masks = {0: a | b, 1: a | b, 2: joined, 3: a | b, 4: a | b | far, 5: a | b}
    tube = Tube(masks, [0.9])
    out = _split(tube, _labels({0: a}, {0: b}))
    assert len(out) == 2
    first, second = out
    # frame 2's one part holds a's and b's masks of frame 1 whole: it is cut between them, each column to the
    # nearer (column 11 is 7 from both: the first, a's)
    assert (first.masks[2] == _box(2, 6, 1, 12)).all() and (second.masks[2] == _box(2, 6, 12, 22)).all()
    # frame 3 follows frame 2: each part overlaps one split tube there; frame 4's far part overlaps nothing on
    # frame 3 and goes to the split tube nearest to it on its frame (a, 6.7 px against 7.6 to b)
    assert all((first.masks[t] == a).all() and (second.masks[t] == b).all() for t in (0, 1, 3, 5))
    assert (first.masks[4] == (a | far)).all() and (second.masks[4] == b).all()


def test_a_part_holding_two_instances_is_cut_between_them():
    a, b = _box(2, 6, 1, 5), _box(2, 6, 18, 22)
    # frame 0 apart; frame 1 one part holding both instances' masks (labels on both frames)
    tube = Tube({0: a | b, 1: _box(2, 6, 1, 22)}, [0.9])
    out = _split(tube, _labels({0: a, 1: a}, {0: b, 1: b}))
    assert (out[0].masks[1] == _box(2, 6, 1, 12)).all() and (out[1].masks[1] == _box(2, 6, 12, 22)).all()


def test_a_gap_in_the_tube_breaks_the_chain():
    a, b = _box(2, 6, 1, 5), _box(2, 6, 18, 22)
    tube = Tube({0: a | b, 1: a | b, 4: a | b, 5: a | b}, [0.9])
    # frames 4-5 hold b apart from a, by labels on frame 5 that name b only (a's instance has no mask there):
    # frame 4 follows frame 5 backward, not frame 1 across the gap
    labels = _labels({0: a, 1: a}, {0: b, 1: b, 5: b})
    out = _split(tube, labels)
    # b is held on 3 frames, a on 2: b's tube first. Frame 5's b part holds b; its a part holds nothing and
    # overlaps nothing owned on frame 4 (itself unowned: the gap stops frame 1 from reaching it), so it goes to
    # the nearest owned part of frame 5, b; frame 4 then follows frame 5 backward, wholly b's
    assert [sorted(o.masks) for o in out] == [[0, 1, 4, 5], [0, 1]]
    assert (out[0].masks[4] == (a | b)).all() and (out[0].masks[0] == b).all() and (out[1].masks[1] == a).all()


class TwoStripesModel(torch.nn.Module):
    """Predicts one object: two vertical stripes of whatever it is shown, apart from each other."""

    def forward(self, clips):
        B, T, _, H, W = clips.shape
        masks = torch.full((B, 1, T, H // 4, W // 4), -10.0)
        w = W // 4
        masks[..., : w // 8] = 10.0
        masks[..., w // 2: w // 2 + w // 8] = 10.0
        return {"pred_logits": torch.tensor([[[4.0, -4.0]]]).expand(B, -1, -1), "pred_masks": masks,
                "image_size": (H, W)}


def test_label_stage_splits_with_split_apart_only(compose, tiny_demo, tmp_path):
    """The model's one tube is two stripes on every frame; earlier labels hold each stripe on frame 0. With
    label.split_apart it becomes two tubes, one stripe each on every frame; without it, one tube. The key enters
    the label stage's fingerprint only when on, and experiment=paper turns it off."""
    from s2d.data.clips import AugmentConfig
    from s2d.data.sources import open_dataset
    from s2d.labelset.types import Labelset
    from s2d.stages.label import label_settings, predictions

    ds = open_dataset("ytvis", tiny_demo)
    crop = AugmentConfig(size=(64, 80), crop_scale=(1.0, 1.0))

    def run(on: bool, earlier: Labelset | None):
        cfg = compose("progress=false", "label.keep_iou=null", "label.one_identity=false", f"label.split_apart={on}")
        assert ("split_apart" in label_settings(cfg)) == on and "split_apart" not in label_settings(cfg, "predict")
        if on:  # the rule's constants enter the fingerprint
            assert label_settings(cfg)["split_apart"] == {"version": 1, "hold_share": 0.5, "duplicate_share": 0.5}
        return predictions(cfg, ds, TwoStripesModel(), crop, 0.6, None, "label", f"fp{on}", tmp_path / f"s{on}",
                           previous=earlier)

    name = ds.names[0]
    whole = run(False, None)[name]
    (tube,) = whole.instances
    stripes = list(Parts(rle.decode(tube.segmentations[0]).astype(bool)))
    assert len(stripes) == 2
    earlier = Labelset([VideoLabels(v, whole.height, whole.width, whole.length, instances=[
        Instance([rle.encode(s)] + [None] * (whole.length - 1), 0.9) for s in stripes]) for v in ds.names])
    assert len(run(False, earlier)[name].instances) == 1
    split = run(True, earlier)[name].instances
    assert len(split) == 2
    for inst, stripe in zip(split, stripes):
        assert inst.frames_with_mask == list(range(whole.length))
        assert all((rle.decode(s).astype(bool) == stripe).all() for s in inst.segmentations)
    paper = compose("experiment=paper")
    assert paper.label.split_apart is False and "split_apart" not in label_settings(paper)
