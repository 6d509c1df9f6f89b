"""Ranking scores of tubes: Mask2Former's mask score and the overlap decay (s2d/inference/rescore.py)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from s2d.inference.rescore import (decay_order, exclusive_share, frame_matches, ranking_scores,
                                   temporal_fragments)
from s2d.inference.video_predict import Tube, predict_video, predict_window, tube_instances


def _mask(h: int, w: int, ys: slice, xs: slice) -> np.ndarray:
    m = np.zeros((h, w), bool)
    m[ys, xs] = True
    return m


def test_exclusive_share_hand_computed():
    a = _mask(4, 4, slice(0, 2), slice(0, 4))                    # 8 px
    b = _mask(4, 4, slice(1, 3), slice(0, 2))                    # 4 px, 2 of them inside a
    c = _mask(4, 4, slice(3, 4), slice(0, 4))                    # 4 px, disjoint from a and b
    tubes = [Tube({0: a}, [0.9]), Tube({0: b, 1: b}, [0.8]), Tube({0: c}, [0.7])]
    # b: frame 0 has 2 of its 4 px under a, frame 1 none of 4 -> 1 - 2/8
    assert exclusive_share(tubes, [0, 1, 2]).tolist() == [1.0, 0.75, 1.0]
    # b first: a loses the 2 px b covers (1 - 2/8); c is disjoint from both whatever the order
    assert exclusive_share(tubes, [1, 0, 2]).tolist() == [0.75, 1.0, 1.0]
    # the union of everything ranked above counts: d is covered half by a, half by c
    d = _mask(4, 4, slice(1, 4), slice(3, 4))                    # rows 1..3 of the last column: 3 px
    tubes.append(Tube({0: d}, [0.1]))
    assert exclusive_share(tubes, [0, 2, 3])[3] == pytest.approx(1 - 2 / 3)  # row 1 under a, row 3 under c
    assert exclusive_share([Tube({0: np.zeros((4, 4), bool)}, [0.5])], [0])[0] == 0.0  # no pixels, no share


def test_ranking_scores_default_is_the_foreground_probability():
    a, b = _mask(4, 4, slice(0, 2), slice(0, 4)), _mask(4, 4, slice(0, 1), slice(0, 4))
    tubes = [Tube({0: a}, [0.9, 0.7], [0.5, 0.5]), Tube({0: b}, [0.6], [0.9])]
    assert ranking_scores(tubes) == [pytest.approx(0.8), 0.6]
    assert [i.score for i in tube_instances(tubes, 1)] == ranking_scores(tubes)
    assert ranking_scores(tubes, mask_score=True) == [pytest.approx(0.4), pytest.approx(0.54)]
    # b lies inside a: with the decay it has nothing of its own left
    assert ranking_scores(tubes, overlap_decay=True) == [pytest.approx(0.8), 0.0]
    # ranked by mask score first, b comes first and a loses the 4 of its 8 px that b covers
    assert ranking_scores(tubes, mask_score=True, overlap_decay=True) == [pytest.approx(0.2), pytest.approx(0.54)]
    assert Tube({0: a}, [0.5]).mask_score == 1.0                 # not measured: neutral


def test_a_duplicate_ranks_below_another_videos_object_only_with_the_decay():
    obj = _mask(8, 8, slice(0, 4), slice(0, 4))
    dup = _mask(8, 8, slice(0, 4), slice(0, 3))                  # a fragment of the same object, 12 of its 16 px
    video1 = [Tube({0: obj, 1: obj}, [0.95]), Tube({0: dup, 1: dup}, [0.9])]
    other = [Tube({0: _mask(8, 8, slice(4, 8), slice(4, 8))}, [0.6])]  # a true object of another video
    plain = ranking_scores(video1) + ranking_scores(other)
    decayed = ranking_scores(video1, overlap_decay=True) + ranking_scores(other, overlap_decay=True)
    assert plain[1] > plain[2] and decayed[1] < decayed[2]
    assert decayed[0] == plain[0] and decayed[2] == plain[2]     # tubes nothing covers keep their score


def test_frame_matches_equals_a_per_frame_loop():
    rng = np.random.default_rng(0)
    tubes = []
    for _ in range(6):
        frames = rng.choice(7, size=rng.integers(1, 8), replace=False)
        tubes.append(Tube({int(t): rng.random((9, 11)) < 0.5 for t in frames}, [0.5]))
    tubes.append(Tube({3: tubes[0].masks.get(3, np.ones((9, 11), bool))}, [0.5]))  # an exact copy on one frame
    want = np.zeros((7, 7), np.int64)
    for a, ta in enumerate(tubes):
        for b, tb in enumerate(tubes):
            for t in set(ta.masks) & set(tb.masks):
                i, u = (ta.masks[t] & tb.masks[t]).sum(), (ta.masks[t] | tb.masks[t]).sum()
                want[a, b] += i / u >= 0.5
    got = frame_matches(tubes)
    assert got.tolist() == want.tolist()
    assert got.diagonal().tolist() == [len(tb.masks) for tb in tubes] and (got == got.T).all()
    assert frame_matches([]).shape == (0, 0)


def test_temporal_fragments_are_matched_frame_by_frame():
    a = _mask(6, 6, slice(0, 3), slice(0, 3))                    # object A, 9 px
    b = _mask(6, 6, slice(3, 6), slice(3, 6))                    # object B, 9 px, disjoint from A
    whole = Tube({t: a for t in range(6)}, [0.7])                # A on frames 0..5
    piece = Tube({t: a for t in range(1, 4)}, [0.9])             # A on frames 1..3: a fragment of ``whole``
    switch = Tube({**{t: a for t in range(3)}, **{t: b for t in range(3, 6)}}, [0.8])  # A, then B
    early = Tube({t: a for t in range(4)}, [0.6])                # A on frames 0..3
    tubes = [whole, piece, switch, early]
    # piece: inside whole (3 of 3 frames) and early (3 of 3), not switch (frames 1, 2 of 3: B on frame 3)
    # early: inside whole (4 of 4), not switch (3 of 4 < 0.8), although over early's frames summed the two
    # overlap at 27 / 45 = 0.6 px IoU: a tube that switches objects contains neither object's own tube
    assert temporal_fragments(tubes) == [[], [0, 3], [], [0]]
    assert temporal_fragments([Tube({}, [0.5]), whole]) == [[], []]     # a tube without masks is no fragment


def test_decay_order_puts_fragments_after_their_containers():
    base = np.array([0.7, 0.9, 0.8, 0.6])
    assert decay_order(base).tolist() == [1, 2, 0, 3]                 # by score
    assert decay_order(base, [[], [], [], []]).tolist() == [1, 2, 0, 3]
    # 1 inside 0 and 3, 3 inside 0: 1 sorts after both although it scores highest, 3 after 0
    assert decay_order(base, [[], [0, 3], [], [0]]).tolist() == [2, 0, 3, 1]
    # equal scores keep their order, except a fragment after its container
    assert decay_order(np.array([0.5, 0.5, 0.5]), [[], [], []]).tolist() == [0, 1, 2]
    assert decay_order(np.array([0.5, 0.5, 0.5]), [[2], [], []]).tolist() == [1, 2, 0]
    # a chain longer than Python's recursion limit
    n = 1200
    chain = decay_order(np.linspace(0.0, 1.0, n), [[a - 1] if a else [] for a in range(n)])
    assert chain.tolist() == list(range(n))                       # each after the one it is a fragment of
    with pytest.raises(ValueError, match="cycle"):
        decay_order(np.array([0.5, 0.4]), [[1], [0]])


def test_a_fragment_ranked_first_no_longer_costs_the_whole_tube_its_frames():
    a = _mask(6, 6, slice(0, 3), slice(0, 3))                         # 9 px a frame
    whole = Tube({t: a for t in range(6)}, [0.7])                    # 54 px
    piece = Tube({t: a for t in range(3)}, [0.9])                    # 27 px, all of them whole's
    # by foreground probability the piece comes first and hides half of whole's pixels
    assert ranking_scores([whole, piece], overlap_decay=True) == [pytest.approx(0.35), pytest.approx(0.9)]
    # fragments last: whole keeps its score, the piece has nothing of its own
    assert ranking_scores([whole, piece], overlap_decay=True, fragments_last=True) == [pytest.approx(0.7), 0.0]
    # without the decay the order changes nothing
    assert ranking_scores([whole, piece], fragments_last=True) == ranking_scores([whole, piece])


def test_tubes_the_keymasks_support_go_first_in_the_decay():
    base = np.array([0.7, 0.9, 0.8, 0.6])
    assert decay_order(base, first=[3]).tolist() == [3, 1, 2, 0]
    assert decay_order(base, first=[3, 0]).tolist() == [0, 3, 1, 2]   # among themselves by score
    # 1 inside 0 and 3, 3 inside 0 (keys 0.7, 0.6, 0.8, 0.6): 3 leads although a fragment of 0, the rest as before
    assert decay_order(base, [[], [0, 3], [], [0]], first=[3]).tolist() == [3, 2, 0, 1]
    assert decay_order(base, [[], [0, 3], [], [0]], first=[]).tolist() == [2, 0, 3, 1]
    a = _mask(6, 6, slice(0, 3), slice(0, 3))                          # 9 px a frame
    b = _mask(6, 6, slice(0, 3), slice(0, 2))                          # 6 px, inside a
    duplicate = Tube({0: a, 1: a}, [0.9])                              # 18 px
    supported = Tube({0: b, 1: b}, [0.6])                              # 12 px, all of them the duplicate's
    assert ranking_scores([duplicate, supported], overlap_decay=True) == [pytest.approx(0.9), 0.0]
    # the supported tube first: it keeps its score, the duplicate keeps the 6 of its 18 px the other leaves
    assert ranking_scores([duplicate, supported], overlap_decay=True, first=[1]) == [pytest.approx(0.3),
                                                                                      pytest.approx(0.6)]
    # without the decay the order changes nothing
    assert ranking_scores([duplicate, supported], first=[1]) == [pytest.approx(0.9), pytest.approx(0.6)]


class FullResolutionModel(torch.nn.Module):
    """One query (foreground probability softmax([1, -1])[0]) whose mask logits are given at frame size, so
    that the resize back to the frames changes nothing and the mask score is hand-computable."""

    def __init__(self, logits: torch.Tensor):
        super().__init__()
        self.logits = logits                                      # (T, H, W)

    def forward(self, clips):
        B, T = clips.shape[:2]
        return {"pred_logits": torch.tensor([[[1.0, -1.0]]]).expand(B, -1, -1),
                "pred_masks": self.logits[None, None, :T].expand(B, 1, -1, -1, -1)}


def test_mask_score_is_the_mean_probability_inside_the_mask():
    logits = torch.full((2, 4, 4), -3.0)
    logits[0, 0, :2] = 2.0                                       # 2 px at sigmoid(2)
    logits[1, 0, :2] = 0.5                                       # 2 px at sigmoid(0.5); the rest outside the mask
    frames = np.zeros((2, 4, 4, 3), np.uint8)
    assert predict_window(FullResolutionModel(logits), frames, 0.5, (4, 4))[2] is None  # measured only when asked
    masks, scores, mask_scores = predict_window(FullResolutionModel(logits), frames, 0.5, (4, 4), mask_scores=True)
    sig = lambda x: 1 / (1 + math.exp(-x))                      # noqa: E731
    assert masks.sum() == 4 and scores[0] == pytest.approx(sig(2.0))  # softmax of (1, -1) = sigmoid(2)
    assert mask_scores[0] == pytest.approx((sig(2.0) + sig(0.5)) / 2, rel=1e-6)
    assert predict_video(FullResolutionModel(logits), frames, 0.5, nms_iou=None)[0].mask_scores == []
    tube = predict_video(FullResolutionModel(logits), frames, 0.5, nms_iou=None, mask_scores=True)[0]
    assert tube.mask_scores == [pytest.approx(mask_scores[0])]
    assert ranking_scores([tube], mask_score=True)[0] == pytest.approx(sig(2.0) * mask_scores[0], rel=1e-6)
    empty = torch.full((2, 4, 4), -3.0)                           # a query with no pixel scores 0, not NaN
    assert predict_window(FullResolutionModel(empty), frames, 0.5, (4, 4), mask_scores=True)[2].tolist() == [0.0]


def test_ranking_keys_enter_the_fingerprints_only_when_on(compose):
    from s2d.stages.label import label_settings

    plain = compose("label.mask_score=false", "label.overlap_decay=false")
    both = compose("label.mask_score=true", "label.overlap_decay=true")
    for stage in ("label", "predict"):
        assert "mask_score" not in label_settings(plain, stage) and "overlap_decay" not in label_settings(plain, stage)
        ranking = ("mask_score", "overlap_decay", "fragments_last")
        assert {k: v for k, v in label_settings(both, stage).items() if k not in ranking} \
            == label_settings(plain, stage)
        assert label_settings(both, stage)["mask_score"] is True and label_settings(both, stage)["overlap_decay"]
        assert label_settings(both, stage)["fragments_last"] is True             # on by default
        off = compose("label.overlap_decay=true", "label.fragments_last=false")
        assert "fragments_last" not in label_settings(off, stage)
        # the order of a decay that is off changes no score: no new fingerprint for it
        assert "fragments_last" not in label_settings(compose("label.overlap_decay=false",
                                                              "label.fragments_last=true"), stage)


def test_ranking_renames_the_labelset_folder_but_not_what_training_inherits(compose, tiny_demo, tmp_path,
                                                                         monkeypatch):
    """label.compute with the ranking keys off and on: two folders (their scores differ); with hard class targets
    (final.score_targets=false) one fingerprint for a model trained on them (their masks do not), with the scores
    as class targets (the default) two."""
    from s2d.data.clips import AugmentConfig
    from s2d.data.sources import open_dataset
    from s2d.stages import label
    from tests.test_inference_scale import LeftHalfModel

    ds = open_dataset("ytvis", tiny_demo)
    ckpt = tmp_path / "teacher.ckpt"
    ckpt.write_bytes(b"weights")  # only hashed: the model comes from the stand-in below
    monkeypatch.setattr(label, "load_model", lambda cfg, path, which="teacher": (
        LeftHalfModel(), AugmentConfig(size=(64, 80), crop_scale=(1.0, 1.0))))
    outs = {}
    for on in (False, True):
        cfg = compose("progress=false", "label.refine=false", "label.keep_iou=null", f"label.mask_score={on}",
                      f"label.overlap_decay={on}", "final.score_targets=false")
        outs[on] = label.compute(cfg, ds, ckpt, "data-fp")
    assert outs[False].folder != outs[True].folder and outs[False].fingerprint == outs[True].fingerprint
    for a, b in zip(outs[False].labels, outs[True].labels):
        assert [i.segmentations for i in a.instances] == [i.segmentations for i in b.instances]
    # scores taught as class targets (final.score_targets): the ranking reaches the model, and its fingerprint
    taught = {on: label.compute(compose("progress=false", "label.refine=false", "label.keep_iou=null",
                                        f"label.mask_score={on}", f"label.overlap_decay={on}",
                                        "final.score_targets=true"), ds, ckpt, "data-fp") for on in (False, True)}
    assert taught[False].fingerprint != taught[True].fingerprint
    assert taught[False].fingerprint == outs[False].fingerprint   # nothing re-ranked: the masks' fingerprint
    assert taught[True].folder == outs[True].folder               # the same labelset, reused


def test_training_clips_do_not_read_instance_scores(sparse_data):
    """What lets a model trained with hard class targets (final.score_targets=false) ignore how its labelset was
    ranked (label.compute): the same masks with other scores give the same training clips, tensor for tensor."""
    import copy

    from s2d.data.clips import AugmentConfig, ClipDataset

    ds, labels = sparse_data
    rescored = copy.deepcopy(labels)
    for v in rescored:
        for k, inst in enumerate(v.instances):
            inst.score = 0.01 * (k + 1)
    assert [i.score for v in labels for i in v.instances] != [i.score for v in rescored for i in v.instances]
    for mode in ("sparse", "dense"):
        a = ClipDataset(ds, labels, 3, mode, augment=AugmentConfig(size=(48, 64)), seed=2)
        b = ClipDataset(ds, rescored, 3, mode, augment=AugmentConfig(size=(48, 64)), seed=2)
        assert len(a) == len(b)
        for i in range(len(a)):
            x, y = a[i], b[i]
            assert x.keys() == y.keys()
            for key in x:
                if isinstance(x[key], torch.Tensor):
                    assert torch.equal(x[key], y[key]), (mode, i, key)
                else:
                    assert x[key] == y[key], (mode, i, key)


def test_score_targets_give_the_dense_clips_their_instances_scores(sparse_data, compose, tmp_path):
    """final.score_targets: each dense clip carries the labelset scores of the instances it has targets for, in
    their order (clamped to [0, 1]); sparse clips (keymasks) never do; the final stage alone changes folder."""
    import copy

    from s2d.data.clips import AugmentConfig, ClipDataset, collate
    from s2d.stages.distill import checkpoint_dir

    ds, labels = sparse_data
    rescored = copy.deepcopy(labels)
    for v in rescored:
        for k, inst in enumerate(v.instances):
            inst.score = 0.2 * k + 0.1
        v.instances[0].score = 1.7                       # a score above 1 (a foreign labelset) is taught as 1
    # the whole frame, flipped or not: no tube is cropped away (that case: tests/test_augment.py)
    aug = AugmentConfig(size=(48, 64), crop_scale=(1.0, 1.0), rotation=0.0)
    dense = ClipDataset(ds, rescored, 3, "dense", augment=aug, seed=2, score_targets=True)
    plain = ClipDataset(ds, rescored, 3, "dense", augment=aug, seed=2)
    checked = 0
    for i in range(len(dense)):
        item, ref = dense[i], plain[i]
        assert torch.equal(item["targets"], ref["targets"]) and "target_scores" not in ref
        v = rescored[item["video"]]
        want = [min(inst.score, 1.0) for inst in v.instances
                if any(inst.segmentations[t] is not None for t in item["frames"])]
        assert item["target_scores"].tolist() == pytest.approx(want) and len(want) == len(item["targets"])
        checked += len(want) > 1
    assert checked > 0
    assert "target_scores" not in ClipDataset(ds, rescored, 3, "sparse", augment=aug, score_targets=True)[0]
    batch = collate([dense[0], dense[1]])
    assert [t.tolist() for t in batch["target_scores"]] == [dense[0]["target_scores"].tolist(),
                                                            dense[1]["target_scores"].tolist()]
    on, off = compose(), compose("final.score_targets=false")
    assert on.final.score_targets and not compose("experiment=paper").final.score_targets   # the method: hard
    assert checkpoint_dir(on, tmp_path, "final", "fp", "dense") != checkpoint_dir(off, tmp_path, "final", "fp", "dense")
    assert checkpoint_dir(on, tmp_path, "distill", "fp") == checkpoint_dir(off, tmp_path, "distill", "fp")


def test_the_report_says_how_tubes_were_ranked(compose):
    from s2d.stages.pipeline import _ranking_sentence

    assert _ranking_sentence(compose("label.overlap_decay=false")) == \
        "The learned stages' tubes are ranked by foreground probability."
    both = _ranking_sentence(compose("label.mask_score=true", "label.overlap_decay=true"))
    assert "`label.mask_score`" in both and "`label.overlap_decay`" in both
    assert "`label.overlap_decay`" not in _ranking_sentence(compose("experiment=paper"))
    assert "`label.fragments_last`" in _ranking_sentence(compose("label.fragments_last=true"))
    assert "`label.fragments_last`" not in _ranking_sentence(compose("label.fragments_last=false"))


def test_teacher_scores_teach_the_probability_before_the_ranking(sparse_data, compose, tmp_path):
    """final.teacher_scores: a teacher tube's class target is the foreground probability its labelset recorded
    (``extra["teacher_score"]``, written by ``tube_instances`` whatever the ranking made of the score), while a
    kept keymask instance keeps its labelset score; a labelset without the record is refused naming the key; the
    final stage's folder changes only where the key acts."""
    import copy

    from s2d.data.clips import AugmentConfig, ClipDataset
    from s2d.errors import ConfigError
    from s2d.inference.video_predict import Tube, tube_instances
    from s2d.stages.distill import checkpoint_dir

    m = np.zeros((4, 4), bool)
    m[:2] = True
    ranked = tube_instances([Tube({0: m}, [0.9]), Tube({0: m}, [0.8, 0.6])], 1, [0.9, 0.0])   # a decayed copy
    assert [i.score for i in ranked] == [0.9, 0.0]
    assert [i.extra["teacher_score"] for i in ranked] == [pytest.approx(0.9), pytest.approx(0.7)]

    ds, labels = sparse_data
    taught = copy.deepcopy(labels)
    for v in taught:
        for k, inst in enumerate(v.instances):
            inst.score = 0.1 * k                          # the ranked score
            inst.extra["teacher_score"] = 0.9 - 0.1 * k   # the teacher's probability
        v.instances[-1].extra = {"kept": True}            # a keymask instance the labelset kept: its own score
    aug = AugmentConfig(size=(48, 64), crop_scale=(1.0, 1.0), rotation=0.0)
    teach = ClipDataset(ds, taught, 3, "dense", augment=aug, seed=2, score_targets=True, teacher_scores=True)
    ranked_ds = ClipDataset(ds, taught, 3, "dense", augment=aug, seed=2, score_targets=True)
    checked = 0
    for i in range(len(teach)):
        item, ref = teach[i], ranked_ds[i]
        assert torch.equal(item["targets"], ref["targets"])
        v = taught[item["video"]]
        present = [inst for inst in v.instances if any(inst.segmentations[t] is not None for t in item["frames"])]
        want = [inst.score if inst.extra.get("kept") else inst.extra["teacher_score"] for inst in present]
        assert item["target_scores"].tolist() == pytest.approx(want)
        assert ref["target_scores"].tolist() == pytest.approx([inst.score for inst in present])
        checked += any(inst.extra.get("kept") for inst in present) and len(present) > 1
    assert checked > 0
    # without score targets the key has nothing to act on: the clips carry no scores
    assert "target_scores" not in ClipDataset(ds, taught, 3, "dense", augment=aug, teacher_scores=True)[0]
    # a labelset made before the probability was recorded
    old = copy.deepcopy(taught)
    next(iter(old)).instances[0].extra.pop("teacher_score")
    with pytest.raises(ConfigError, match="final.teacher_scores"):
        ClipDataset(ds, old, 3, "dense", augment=aug, score_targets=True, teacher_scores=True)

    on, off = compose("final.teacher_scores=true"), compose()
    assert checkpoint_dir(on, tmp_path, "final", "fp", "dense") != checkpoint_dir(off, tmp_path, "final", "fp", "dense")
    assert checkpoint_dir(on, tmp_path, "distill", "fp") == checkpoint_dir(off, tmp_path, "distill", "fp")
    hard = [compose("final.score_targets=false", f"final.teacher_scores={t}") for t in (True, False)]
    assert checkpoint_dir(hard[0], tmp_path, "final", "fp", "dense") == \
        checkpoint_dir(hard[1], tmp_path, "final", "fp", "dense")
