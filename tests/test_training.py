"""Learning half: losses (hand-computed and fault cases), the distillation module, resume and DDP."""
from __future__ import annotations

import json

import lightning as L
import numpy as np
import pytest
import torch

from s2d.losses import HungarianMatcher, VideoSetCriterion
from s2d.losses.matcher import batch_bce_cost, batch_dice_cost

TINY = dict(backbone="tiny", hidden_dim=32, mask_dim=32, num_queries=6, nheads=4, dim_feedforward=64, dec_layers=3,
            enc_layers=1, enc_dim_feedforward=64, enc_points=2, dropout=0.0)
LOSS = dict(num_points=64)
OPTIM = dict(lr=1e-3, weight_decay=0.05, backbone_lr_mult=0.1, milestones=[], gamma=0.1)


def test_costs_hand_computed():
    pred = torch.tensor([[10.0, -10.0], [0.0, 0.0]])  # query 0 ~ [1, 0]; query 1 = 0.5 everywhere
    tgt = torch.tensor([[1.0, 0.0]])
    bce = batch_bce_cost(pred, tgt)
    assert bce[0, 0] == pytest.approx(np.log1p(np.exp(-10)), abs=1e-6)
    assert bce[1, 0] == pytest.approx(np.log(2), abs=1e-6)
    dice = batch_dice_cost(pred, tgt)
    # query 1: 1 - (2*0.5 + 1) / (1 + 1 + 1) = 1/3
    assert dice[1, 0] == pytest.approx(1 / 3, abs=1e-6)


def test_matcher_assigns_the_right_query_and_refuses_nan():
    masks = torch.full((1, 3, 1, 8, 8), -10.0)
    masks[0, 2, 0, :4] = 10.0                     # query 2 predicts the top half
    masks[0, 0, 0, 4:] = 10.0                     # query 0 predicts the bottom half
    tgt = torch.zeros(2, 1, 8, 8)
    tgt[0, 0, :4] = 1
    tgt[1, 0, 4:] = 1
    (src, dst), = HungarianMatcher(num_points=256)(torch.zeros(1, 3, 2), masks, [tgt])
    assert dict(zip(dst.tolist(), src.tolist())) == {0: 2, 1: 0}
    masks[0, 1, 0, 0, 0] = float("nan")
    with pytest.raises(FloatingPointError, match="non-finite mask cost for clip 0"):
        HungarianMatcher(num_points=256)(torch.zeros(1, 3, 2), masks, [tgt], context="step 3")


def test_targets_the_matcher_cannot_tell_apart_go_to_their_queries_in_index_order():
    from s2d.losses.matcher import canonical_ties

    a, b = [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]
    # targets 0 and 2 are equal at every point: the solver gave 2 to query 0 and 0 to query 2 -> swapped back
    r, c = canonical_ties(np.array([0, 2, 5]), np.array([2, 0, 1]), torch.tensor([a, b, a]))
    assert r.tolist() == [0, 2, 5] and c.tolist() == [0, 2, 1]
    # more equal targets than queries: the lowest ones are matched, whatever the solver picked
    r, c = canonical_ties(np.array([0, 1]), np.array([2, 1]), torch.tensor([a, a, a]))
    assert r.tolist() == [0, 1] and c.tolist() == [0, 1]
    # nothing equal: untouched
    r, c = canonical_ties(np.array([1, 3]), np.array([1, 0]), torch.tensor([a, b]))
    assert r.tolist() == [1, 3] and c.tolist() == [1, 0]


@pytest.mark.parametrize("way", ["equal_rows", "rows_by_unique", "rows_by_key"])   # the CPU's way and the GPU's
def test_equal_rows_groups_exactly_equal_rows(way):
    from s2d.losses import matcher as matcher_module

    group = getattr(matcher_module, way)
    a, b, c = [1.0, 0.0, 0.5], [0.0, 1.0, 0.5], [0.0, 1.0, 0.25]
    assert group(torch.tensor([a, b, a, c, b])) == [0, 1, 0, 3, 1]
    assert group(torch.tensor([[0.0, 1.0], [-0.0, 1.0]])) == [0, 0]   # -0.0 == 0.0
    # rows with long equal runs (empty frames) and duplicates, against the lowest index of each row's group
    g = torch.Generator().manual_seed(3)
    tm = (torch.rand(12, 600, generator=g) > 0.8).float() * torch.rand(12, 600, generator=g)
    tm[:, :400] = 0
    tm[5], tm[9], tm[11] = tm[2], tm[2], tm[7]
    expected = [min(i for i in range(12) if torch.equal(tm[i], tm[j])) for j in range(12)]
    assert group(tm) == expected and expected[5] == expected[9] == 2 and expected[11] == 7
    assert len(set(expected)) == 9


def test_rows_by_key_keeps_rows_apart_when_their_keys_collide(monkeypatch):
    from s2d.losses import matcher as matcher_module

    tm = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.5, 0.5]])
    # every key the same (all weights 0): the element-wise check still keeps different rows apart
    monkeypatch.setattr(matcher_module, "_key_weights", lambda width, device: torch.zeros(2, width, dtype=torch.long))
    assert matcher_module.rows_by_key(tm) == [0, 1, 0, 3]


def test_duplicate_targets_are_matched_the_same_way_under_float_noise(monkeypatch):
    """Two copies of one tube cost the same for every query, so which copy the solver gives which query follows
    the other costs, down to their float noise (a batch split over DDP ranks); with scores as class targets that
    choice reaches the loss. The matcher hands them out in index order whatever the other costs."""
    import s2d.losses.matcher as matcher_module

    g = torch.Generator().manual_seed(0)
    masks = torch.randn(1, 6, 2, 8, 8, generator=g)
    tgt = torch.zeros(3, 2, 8, 8)
    tgt[0, :, :4] = 1
    tgt[1, :, 4:, :4] = 1
    tgt[2] = tgt[0]                                        # a duplicate of target 0

    def orders() -> set[bool]:
        out = set()
        for k in range(30):
            noisy = masks + 3e-1 * torch.randn(masks.shape, generator=torch.Generator().manual_seed(k))
            (src, dst), = HungarianMatcher(num_points=64)(torch.zeros(1, 6, 2), noisy, [tgt],
                                                          [torch.Generator().manual_seed(1)])
            q = dict(zip(dst.tolist(), src.tolist()))
            out.add(q[0] < q[2])
        return out

    assert orders() == {True}                              # the copies in index order
    with monkeypatch.context() as m:                       # the solver alone: the other costs decide
        m.setattr(matcher_module, "canonical_ties", lambda r, c, tm: (r, c))
        assert orders() == {True, False}


def _outputs(Q=4, T=3, h=8, w=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    masks = torch.randn(1, Q, T, h, w, generator=g, requires_grad=True)
    logits = torch.randn(1, Q, 2, generator=g, requires_grad=True)
    return {"pred_logits": logits, "pred_masks": masks, "aux_outputs": []}


def test_temporal_droploss_ignores_empty_frames_exactly():
    out = _outputs(Q=1)  # one query: the matching cannot change, only the dropping rule is under test
    tgt = torch.zeros(1, 3, 8, 8)
    tgt[0, 0, 2:6, 2:6] = 1                        # the instance has a mask on frame 0 only
    crit = VideoSetCriterion(class_weight=0.0, num_points=32)
    gens = lambda: [torch.Generator().manual_seed(1)]  # noqa: E731
    full = crit(out, [tgt], gens())
    # changing the predictions on the dropped frames 1 and 2 must not change the loss at all
    out2 = {**out, "pred_masks": out["pred_masks"].detach().clone()}
    out2["pred_masks"][0, :, 1:] = 100.0
    again = crit(out2, [tgt], gens())
    assert float(full["loss_mask"]) == pytest.approx(float(again["loss_mask"]), abs=1e-6)
    assert float(full["loss_dice"]) == pytest.approx(float(again["loss_dice"]), abs=1e-6)
    plain = VideoSetCriterion(class_weight=0.0, num_points=32, drop_rate=0.0)(out2, [tgt], gens())
    assert float(plain["loss_mask"]) > float(again["loss_mask"]) + 1.0   # without dropping they are penalised
    half = VideoSetCriterion(class_weight=0.0, num_points=32, drop_rate=0.5)(out2, [tgt], gens())
    assert float(again["loss_mask"]) < float(half["loss_mask"]) < float(plain["loss_mask"])


def test_known_empty_frames_are_taught_per_target():
    """Two targets, each with a mask on frame 0 only. Flagged known-empty, a target's empty frames are taught as
    absent (its loss that of drop_rate 0); unflagged, they are dropped (Temporal DropLoss)."""
    out = _outputs(Q=2)
    with torch.no_grad():
        out["pred_masks"][0, :, 1:] = 5.0          # the queries claim pixels on the empty frames
    tgt = torch.zeros(2, 3, 8, 8)
    tgt[0, 0, :4, :4] = 1
    tgt[1, 0, 4:, 4:] = 1
    gens = lambda: [torch.Generator().manual_seed(2)]  # noqa: E731
    crit = VideoSetCriterion(class_weight=0.0, num_points=32)
    dropped = crit(out, [tgt], gens())
    taught = crit(out, [tgt], gens(), known_empty=[torch.tensor([True, True])])
    plain = VideoSetCriterion(class_weight=0.0, num_points=32, drop_rate=0.0)(out, [tgt], gens())
    none = crit(out, [tgt], gens(), known_empty=[torch.tensor([False, False])])
    for k in ("loss_mask", "loss_dice"):
        assert float(taught[k]) == pytest.approx(float(plain[k]), abs=1e-6)
        assert float(none[k]) == pytest.approx(float(dropped[k]), abs=1e-6)
        assert float(taught[k]) > float(dropped[k]) + 0.5
    # the sampled points depend on the predictions only, so every call sees the same per-(target, frame) losses
    # and only the weights differ: flagging one target each way adds up to flagging both and neither
    tf = crit(out, [tgt], gens(), known_empty=[torch.tensor([True, False])])
    ft = crit(out, [tgt], gens(), known_empty=[torch.tensor([False, True])])
    for k in ("loss_mask", "loss_dice"):
        assert float(dropped[k]) < float(tf[k]) < float(taught[k])
        assert float(tf[k]) + float(ft[k]) == pytest.approx(float(taught[k]) + float(dropped[k]), rel=1e-5)


def test_soft_class_targets_hand_computed():
    """final.score_targets: a matched query is taught P(object) = its target's score, the others no-object at
    weight 0.1, as in the hard case. Query 0 matched to target 1 (score 0.3), query 2 to target 0 (score 0.9),
    query 1 unmatched; scores of 1 give the hard loss exactly."""
    import math

    logits = torch.tensor([[[0.5, -0.5], [1.0, 2.0], [-1.0, 0.25]]])           # (1, 3, 2)
    masks = torch.zeros(1, 3, 2, 4, 4)
    tgt = [torch.zeros(2, 2, 4, 4)]
    idx = [(torch.tensor([0, 2]), torch.tensor([1, 0]))]
    crit = VideoSetCriterion(num_points=16)

    def logp(a, b):  # log-softmax of the two logits (object, no-object)
        z = math.log(math.exp(a) + math.exp(b))
        return a - z, b - z

    (o0, n0), (_, n1), (o2, n2) = logp(0.5, -0.5), logp(1.0, 2.0), logp(-1.0, 0.25)
    soft = -(0.3 * o0 + 0.7 * n0) - (0.9 * o2 + 0.1 * n2) + 0.1 * -n1
    hard = -o0 - o2 + 0.1 * -n1
    got = crit._class_loss(logits, masks, tgt, idx, [torch.tensor([0.9, 0.3])])
    assert float(got) == pytest.approx(soft / 2.1, rel=1e-6)
    assert float(crit._class_loss(logits, masks, tgt, idx)) == pytest.approx(hard / 2.1, rel=1e-6)
    assert float(crit._class_loss(logits, masks, tgt, idx, [torch.ones(2)])) == pytest.approx(hard / 2.1, rel=1e-6)
    # the soft target is the minimum: at P(object) = 0.3 the gradient on query 0's logits vanishes
    at = torch.tensor([[[math.log(0.3), math.log(0.7)], [1.0, 2.0], [-1.0, 0.25]]], requires_grad=True)
    crit._class_loss(at, masks, tgt, idx, [torch.tensor([0.9, 0.3])]).backward()
    assert at.grad[0, 0].abs().max() < 1e-6 and at.grad[0, 2].abs().max() > 0.1


def test_temporal_droploss_weights_hand_computed():
    """Two instances x three frames: instance 0 has a keymask on frames 0 and 2, instance 1 only on frame 1.
    The paper's indicator 1(|m| > 0) -> [1, 0, 1, 0, 1, 0] (instance-major); drop_rate 0.25 keeps 0.75 of an
    empty pair's loss; drop_rate 0 drops nothing."""
    from s2d.losses.temporal_droploss import temporal_droploss_weights

    t = torch.zeros(2, 3, 4, 4)
    t[0, 0, 1, 1] = t[0, 2, 0, 0] = 1
    t[1, 1, 2:, 2:] = 1
    assert temporal_droploss_weights(t).tolist() == [1, 0, 1, 0, 1, 0]
    assert temporal_droploss_weights(t, 0.25).tolist() == [1, 0.75, 1, 0.75, 1, 0.75]
    assert temporal_droploss_weights(t, 0.0).tolist() == [1.0] * 6
    # instance 1's empty frames known to be empty (a dense tube): taught, weight 1; instance 0 keeps the rule
    assert temporal_droploss_weights(t, known_empty=torch.tensor([False, True])).tolist() == [1, 0, 1, 1, 1, 1]
    assert temporal_droploss_weights(t, 0.25, torch.tensor([True, False])).tolist() == [1, 1, 1, 0.75, 1, 0.75]
    # per frame (final.drop_cut_frames): instance 1 known empty on frame 2 only, instance 0 on frames 1 and 2
    # (frame 2 is non-empty for it: weight 1 either way)
    per_frame = torch.tensor([[False, True, True], [False, False, True]])
    assert temporal_droploss_weights(t, known_empty=per_frame).tolist() == [1, 1, 1, 0, 1, 1]
    assert temporal_droploss_weights(t, 0.25, per_frame).tolist() == [1, 1, 1, 0.75, 1, 1]


def test_everything_dropped_is_a_finite_zero_with_gradients():
    out = _outputs()
    crit = VideoSetCriterion(class_weight=0.0, num_points=32)
    for targets in ([torch.zeros(0, 3, 8, 8)], [torch.zeros(1, 3, 8, 8)]):  # no instance / only empty frames
        losses = crit(out, targets)
        total = sum(losses.values())
        assert torch.isfinite(total) and float(total) == 0.0 and total.requires_grad
        out["pred_masks"].grad = None
        total.backward()
        assert out["pred_masks"].grad is not None and torch.all(out["pred_masks"].grad == 0)


def test_cutler_variant_drops_background_loss_of_isolated_predictions():
    out = _outputs(Q=3)
    with torch.no_grad():
        out["pred_masks"][:] = -10.0
        out["pred_masks"][0, 0, :, :4, :4] = 10.0     # matched to the target
        out["pred_masks"][0, 1, :, 5:, 5:] = 10.0     # elsewhere: IoU 0 with every target -> no class loss
        out["pred_masks"][0, 2, :, :4, :2] = 10.0     # overlaps the target: keeps its no-object loss
    tgt = torch.zeros(1, 3, 8, 8)
    tgt[0, :, :4, :4] = 1
    crit = VideoSetCriterion(class_weight=1.0, num_points=64, variant="cutler", no_object_weight=1.0)
    idx = crit.matcher(out["pred_logits"], out["pred_masks"], [tgt])
    assert idx[0][0].tolist() == [0]
    logits = torch.zeros(1, 3, 2)
    logits[0, 1] = torch.tensor([5.0, -5.0])           # query 1 confidently says "object"
    l_cut = crit._class_loss(logits, out["pred_masks"], [tgt], idx)
    l_plain = VideoSetCriterion(class_weight=1.0, num_points=64, drop_rate=0.0, no_object_weight=1.0)._class_loss(
        logits, out["pred_masks"], [tgt], idx)
    # plain: (ln2 [q0] + CE(q1 says object, is bg) + ln2 [q2]) / 3 ; cutler: (ln2 + ln2) / 2
    assert float(l_cut) == pytest.approx(np.log(2), abs=1e-5)
    assert float(l_plain) > float(l_cut) + 1.0


def test_teacher_targets_are_its_confident_queries_with_a_mask():
    from s2d.lit.distillation import DistillationModule

    class Teacher(torch.nn.Module):
        def forward(self, clips):
            logits = torch.tensor([[[2.0, -2.0], [2.0, -2.0], [-2.0, 2.0]]])  # scores 0.98, 0.98, 0.02
            masks = torch.full((1, 3, 2, 4, 4), -5.0)                          # (B, Q, T, h, w)
            masks[0, 0, 1, :2, :2] = 5.0      # confident, 4 pixels on frame 1: a target
            masks[0, 2] = 5.0                 # a full mask, but not confident
            return {"pred_logits": logits, "pred_masks": masks}                # query 1: confident, empty

    module = DistillationModule(TINY, LOSS, OPTIM, teacher_score=0.75)
    module.teacher = Teacher()
    (t,) = module.teacher_targets(torch.zeros(1, 2, 3, 16, 16))
    # a confident query without a pixel is no object: as a target it only adds a near-tie to the matching
    assert t.shape == (1, 2, 4, 4) and t[0, 1, :2, :2].all() and t.sum() == 4


# --------------------------------------------------------------------------------- the Lightning side
def _trainer(tmp_path, max_epochs, **kw):
    import lightning as L

    return L.Trainer(max_epochs=max_epochs, accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                     enable_model_summary=False, default_root_dir=str(tmp_path), gradient_clip_val=0.01,
                     deterministic=False, **kw)


class LossRecorder:
    def __init__(self):
        import lightning as L

        rec = self

        class _CB(L.Callback):
            def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
                loss = outputs["loss"].detach().clone()
                if torch.distributed.is_available() and torch.distributed.is_initialized():
                    torch.distributed.all_reduce(loss)
                    loss /= torch.distributed.get_world_size()
                rec.losses.append((trainer.global_step, float(loss), tuple(batch["videos"])))

        self.losses: list = []
        self.callback = _CB()


def _module_and_data(sparse_data, batch_size=2, seed=0, mode="sparse"):
    from s2d.data.clips import AugmentConfig
    from s2d.data.datamodules import ClipDataModule
    from s2d.lit.distillation import DenseModule, DistillationModule

    ds, gt = sparse_data
    torch.manual_seed(seed)
    cls = DistillationModule if mode == "sparse" else DenseModule
    module = cls(TINY, LOSS, OPTIM, ema_momentum=0.9, teacher_score=0.5, distill_warmup=0, seed=seed)
    data = ClipDataModule(ds, gt, mode, batch_size=batch_size, seed=seed, augment=AugmentConfig(size=(48, 64)))
    return module, data


@pytest.mark.slow
def test_resume_continues_the_same_loss_sequence_and_checkpoints_load_weights_only(sparse_data, tmp_path):
    import lightning as L

    rec = LossRecorder()
    module, data = _module_and_data(sparse_data)
    _trainer(tmp_path / "a", 2, callbacks=[rec.callback], enable_checkpointing=False).fit(module, data)
    full = rec.losses
    assert len(full) >= 4 and all(np.isfinite(l) for _, l, _ in full)

    rec1 = LossRecorder()
    module, data = _module_and_data(sparse_data)
    ckpt_cb = L.pytorch.callbacks.ModelCheckpoint(dirpath=tmp_path / "ck", save_last=True)
    _trainer(tmp_path / "b", 1, callbacks=[rec1.callback, ckpt_cb]).fit(module, data)
    last = tmp_path / "ck" / "last.ckpt"
    sd = torch.load(last, map_location="cpu", weights_only=True)   # plain types only
    assert "teacher.decoder.query_feat.weight" in sd["state_dict"] and sd["hyper_parameters"]["seed"] == 0
    rec2 = LossRecorder()
    module, data = _module_and_data(sparse_data, seed=0)
    _trainer(tmp_path / "c", 2, callbacks=[rec2.callback]).fit(module, data, ckpt_path=str(last))
    resumed = rec1.losses + rec2.losses
    assert [s for s, _, _ in resumed] == [s for s, _, _ in full]
    assert [v for _, _, v in resumed] == [v for _, _, v in full]
    np.testing.assert_allclose([l for _, l, _ in resumed], [l for _, l, _ in full], rtol=1e-5)


class DumpLosses(L.Callback):
    """Rank 0 writes the rank-averaged loss of every step (module level: ddp_spawn pickles callbacks)."""

    def __init__(self, path: str):
        self.path = path
        self.losses: list = []

    def on_train_batch_end(self, trainer, m, outputs, batch, batch_idx):
        loss = outputs["loss"].detach().clone()
        torch.distributed.all_reduce(loss)
        loss /= trainer.world_size
        self.losses.append((trainer.global_step, float(loss)))

    def on_train_end(self, trainer, m):
        if trainer.global_rank == 0:
            with open(self.path, "w") as f:
                json.dump(self.losses, f)


@pytest.mark.slow
@pytest.mark.ddp
@pytest.mark.timeout(300)
@pytest.mark.parametrize("mode", ["sparse", "dense"])
def test_two_process_ddp_matches_one_process(sparse_data, tmp_path, mode):
    rec = LossRecorder()
    module, data = _module_and_data(sparse_data, batch_size=2, mode=mode)
    _trainer(tmp_path / "one", 1, callbacks=[rec.callback], enable_checkpointing=False).fit(module, data)
    one = rec.losses

    out = tmp_path / "ddp_losses.json"
    module, data = _module_and_data(sparse_data, batch_size=2, mode=mode)

    trainer = L.Trainer(max_epochs=1, accelerator="cpu", devices=2, strategy="ddp_spawn", logger=False,
                        enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
                        default_root_dir=str(tmp_path / "ddp"), gradient_clip_val=0.01, callbacks=[DumpLosses(str(out))],
                        use_distributed_sampler=False)  # the data module splits clips over ranks itself
    trainer.fit(module, data)
    ddp = json.loads(out.read_text())
    assert [s for s, _ in ddp] == [s for s, _, _ in one]
    np.testing.assert_allclose([l for _, l in ddp], [l for _, l, _ in one], rtol=1e-4)


def test_batch_not_divisible_by_world_size_is_refused(sparse_data):
    from s2d.data.datamodules import ClipDataModule
    from s2d.errors import ConfigError

    class FakeTrainer:
        world_size = 2
        global_rank = 0

    dm = ClipDataModule(*sparse_data, "sparse", batch_size=3)
    dm.trainer = FakeTrainer()
    with pytest.raises(ConfigError, match="train.batch_size.*not divisible by the 2 processes"):
        dm.setup("fit")


def test_short_videos_are_padded_deterministically():
    from s2d.data.clip_sampling import fallback_frames, keymask_windows, pad_frames
    from s2d.labelset.types import Instance, VideoLabels

    assert pad_frames([0], 3) == [0, 0, 0]
    rng = np.random.default_rng(0)
    assert fallback_frames(2, 3, 20, rng) == [0, 1, 1]
    f = fallback_frames(50, 3, 20, np.random.default_rng(1))
    assert f == sorted(f) and len(set(f)) == 3 and max(f) - min(f) <= 40
    assert f == fallback_frames(50, 3, 20, np.random.default_rng(1))
    m = {"size": [2, 2], "counts": "04"}
    v = VideoLabels("v", 2, 2, 6, [], [Instance([m, m, m, None, m, m])])
    assert keymask_windows(v, 3) == [0]         # frames 0-2 all have a keymask; 3 breaks every later window


def test_backbone_weights_load_with_a_report_and_missing_keys_are_listed(tmp_path):
    import torchvision

    from s2d.errors import ConfigError
    from s2d.models import VideoMask2Former

    ref = torchvision.models.resnet18(weights=None)
    torch.save(ref.state_dict(), tmp_path / "r18.pth")
    cfg = {**TINY, "backbone": "resnet18", "backbone_weights": str(tmp_path / "r18.pth")}
    m = VideoMask2Former(**cfg)
    assert {"fc.bias", "fc.weight"} <= set(m.backbone_report.dropped) and m.backbone_report.unexpected == []
    assert torch.equal(m.backbone.stem[0].weight, ref.conv1.weight)
    assert torch.equal(m.backbone.layer3[1].conv2.weight, ref.layer3[1].conv2.weight)
    sd = ref.state_dict()
    del sd["layer4.0.conv1.weight"]
    torch.save(sd, tmp_path / "partial.pth")
    with pytest.raises(ConfigError, match=r"model.backbone_weights.*1 required tensors missing.*layer4.0.conv1.weight"):
        VideoMask2Former(**{**cfg, "backbone_weights": str(tmp_path / "partial.pth")})


def test_model_settings_are_read_through_model_params():
    """The constructor takes the config's model keys and nothing else: omitted keys get ModelParams' defaults
    (the config's), a misspelt one is refused instead of silently ignored, and a whole checkpoint goes through
    from_config (which reads model.pretrained), not the constructor."""
    from s2d.models import VideoMask2Former

    m = VideoMask2Former(num_queries=7)
    assert m.decoder.query_feat.num_embeddings == 7 and len(m.decoder.layers) == 3  # dec_layers default 3
    with pytest.raises(TypeError, match="num_querys"):
        VideoMask2Former(num_querys=7)
    with pytest.raises(TypeError, match="from_config"):
        VideoMask2Former(pretrained="/w/model.pth")


def test_pretrained_checkpoint_round_trip_and_dino_backbone(tmp_path):
    from s2d.errors import ConfigError
    from s2d.models import VideoMask2Former

    a = VideoMask2Former(**TINY)
    torch.save({"state_dict": {f"student.{k}": v for k, v in a.state_dict().items()}}, tmp_path / "m.pth")
    b = VideoMask2Former(**TINY)
    report = b.load_pretrained(tmp_path / "m.pth", which="student")
    assert report.unexpected == []
    x = torch.rand(1, 3, 3, 32, 32)
    assert torch.equal(a(x)["pred_masks"], b(x)["pred_masks"])
    with pytest.raises(ConfigError, match="model.pretrained.*with another shape"):
        VideoMask2Former(**{**TINY, "num_queries": 7}).load_pretrained(tmp_path / "m.pth")
    d = VideoMask2Former(**{**TINY, "backbone": "dino_vits8", "dec_layers": 1})
    out = d(torch.rand(1, 3, 3, 32, 48))
    assert out["pred_masks"].shape == (1, 6, 3, 8, 16)  # 48 px wide frames are padded to 64, as the official model does


def test_resolver_skips_a_truncated_checkpoint_and_says_so(tmp_path, caplog):
    from s2d.lit.checkpoint_io import newest_valid_checkpoint

    torch.save({"global_step": 3, "state_dict": {}}, tmp_path / "step000003.ckpt")
    torch.save({"global_step": 5, "state_dict": {"w": torch.zeros(1000)}}, tmp_path / "last.ckpt")
    assert newest_valid_checkpoint(tmp_path) == (tmp_path / "last.ckpt", 5)
    data = (tmp_path / "last.ckpt").read_bytes()
    (tmp_path / "last.ckpt").write_bytes(data[: len(data) // 2])      # a half-written last.ckpt
    with caplog.at_level("WARNING"):
        assert newest_valid_checkpoint(tmp_path) == (tmp_path / "step000003.ckpt", 3)
    assert "last.ckpt is unreadable" in caplog.text
    assert newest_valid_checkpoint(tmp_path / "empty") == (None, 0)  # first launch: start from scratch


def test_checkpoint_write_that_fails_midway_keeps_the_previous_one(tmp_path, monkeypatch):
    from s2d.lit.checkpoint_io import AtomicCheckpointIO

    io_ = AtomicCheckpointIO()
    target = tmp_path / "last.ckpt"
    io_.save_checkpoint({"global_step": 1}, target)
    real_save = torch.save

    def half_then_fail(obj, f, *a, **k):
        real_save(obj, f, *a, **k)
        f.truncate(f.tell() // 2)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", half_then_fail)
    with pytest.raises(OSError, match="No space left"):
        io_.save_checkpoint({"global_step": 2, "big": torch.zeros(10_000)}, target)
    monkeypatch.setattr(torch, "save", real_save)
    assert torch.load(target, weights_only=True)["global_step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]   # no temp file a resolver could pick


@pytest.mark.parametrize("kind, error, match", [
    ("nan", FloatingPointError, r"non-finite loss at step 1 .*terms \['injected_nan'\].*videos \["),
    ("raise", RuntimeError, "injected failure at step 1 on rank 0"),
])
def test_fault_injector_stops_the_run_with_a_named_error(sparse_data, tmp_path, kind, error, match):
    from s2d.lit.fault_injector import FaultInjector

    module, data = _module_and_data(sparse_data)
    with pytest.raises(error, match=match):
        _trainer(tmp_path, 1, callbacks=[FaultInjector(kind, step=1)], enable_checkpointing=False).fit(module, data)


class TermRecorder(L.Callback):
    """The names of the loss terms each step logged."""

    def __init__(self):
        self.terms: dict[int, set[str]] = {}

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        self.terms[trainer.global_step - 1] = {k for k in trainer.callback_metrics if k.startswith("train/")}


def test_distill_warmup_keeps_the_teacher_out_until_its_step(sparse_data, tmp_path):
    """distill.distill_warmup=3: steps 0..2 train on the keymasks alone, step 3 on adds the teacher's term
    (a teacher of 0.5 threshold and momentum 0.9 gives targets from the first step, so only the warm-up keeps
    them out)."""
    from s2d.data.clips import AugmentConfig
    from s2d.data.datamodules import ClipDataModule
    from s2d.lit.distillation import DistillationModule

    ds, gt = sparse_data
    torch.manual_seed(0)
    module = DistillationModule(TINY, LOSS, OPTIM, ema_momentum=0.9, teacher_score=0.0, distill_warmup=3, seed=0)
    data = ClipDataModule(ds, gt, "sparse", batch_size=2, seed=0, augment=AugmentConfig(size=(48, 64)))
    rec = TermRecorder()
    L.Trainer(max_steps=5, accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
              enable_model_summary=False, enable_checkpointing=False, default_root_dir=str(tmp_path),
              callbacks=[rec]).fit(module, data)
    assert sorted(rec.terms) == [0, 1, 2, 3, 4]
    for step, names in rec.terms.items():
        has_distill = any(n.startswith("train/distill/") for n in names)
        assert has_distill == (step >= 3), (step, sorted(names))
        assert "train/sparse/loss_mask" in names


@pytest.mark.parametrize("teacher_score", [0.0, 1.0])
def test_teacher_targets_are_logged_and_a_term_without_any_is_said(sparse_data, tmp_path, caplog, teacher_score):
    """The teacher's targets per clip are logged on the steps its term runs (train/distill/targets); a stage whose
    teacher never reached the threshold (1.0: no query can) says so when it ends, one that had targets does not."""
    from s2d.data.clips import AugmentConfig
    from s2d.data.datamodules import ClipDataModule
    from s2d.lit.distillation import DenseModule

    ds, gt = sparse_data
    torch.manual_seed(0)
    module = DenseModule(TINY, LOSS, OPTIM, ema_momentum=0.9, teacher_score=teacher_score, distill_warmup=2, seed=0)
    data = ClipDataModule(ds, gt, "dense", batch_size=2, seed=0, augment=AugmentConfig(size=(48, 64)))
    seen = {}

    class Targets(L.Callback):
        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            if "train/distill/targets" in trainer.callback_metrics:
                seen[trainer.global_step - 1] = float(trainer.callback_metrics["train/distill/targets"])

    with caplog.at_level("WARNING", logger="s2d.lit.distillation"):
        L.Trainer(max_steps=4, accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                  enable_model_summary=False, enable_checkpointing=False, default_root_dir=str(tmp_path),
                  callbacks=[Targets()]).fit(module, data)
    assert sorted(seen) == [2, 3]                                        # from the warm-up's end only
    said = [r.getMessage() for r in caplog.records if "had no target" in r.getMessage()]
    if teacher_score == 0.0:   # every query with a pixel is a target: the tiny model's 10 queries, 2 clips a step
        assert all(v > 0 for v in seen.values()) and not said
    else:
        assert all(v == 0 for v in seen.values())
        assert said == ["final stage: the teacher's term had no target in any of its 2 steps: no query of the EMA "
                        "teacher reached the score 1.00 (distill.teacher_score; final.teacher_score in the final "
                        "stage)"]


def _counts(rank: int, world: int) -> tuple:
    from s2d.losses.criterion import global_count

    # one target in the whole batch, on rank 1 only: each rank divides by half of max(1, 1)
    share, _ = global_count(1.0 if rank == 1 else 0.0, "cpu")
    none, _ = global_count(0.0, "cpu")  # no target anywhere: still a finite share
    many, flags = global_count(6.0, "cpu", flag=rank == 0)
    return float(share), float(none), float(many), flags


@pytest.mark.ddp
@pytest.mark.timeout(120)
def test_loss_normaliser_on_two_ranks_averages_to_the_one_process_value():
    """Fewer targets than ranks: dividing each rank's sum by (max(total, 1) / world) makes the mean over ranks
    (what DDP's averaged gradient follows) equal to the one-process loss sum / max(total, 1)."""
    from _gloo import on_two_ranks

    from s2d.losses.criterion import global_count

    out = on_two_ranks(_counts)
    for rank in (0, 1):
        assert out[rank] == (0.5, 0.5, 6.0, 1)
    # the loss: 7.0 on the rank with the target, 0 on the other -> mean (7/0.5 + 0) / 2 = 7 = one process's 7 / 1
    assert (7.0 / out[1][0] + 0.0) / 2 == 7.0 / float(global_count(1.0, "cpu")[0])


def test_ema_and_optimizer_updates_are_the_per_tensor_arithmetic_exactly():
    """The fused EMA (two multi-tensor calls) and the multi-tensor AdamW give, bit for bit, what a loop over the
    tensors gives: teacher.mul_(m).add_(student, alpha=1 - m), and torch's one-tensor-at-a-time AdamW."""
    from s2d.lit.distillation import DistillationModule

    torch.manual_seed(0)
    module = DistillationModule(TINY, LOSS, OPTIM, ema_momentum=0.9, teacher_score=0.5, distill_warmup=0, seed=0)
    with torch.no_grad():
        for p in module.student.parameters():
            p.add_(torch.randn_like(p))
    # the per-tensor loop the fused calls replace (alpha folds the product into the add: not t * m + s * (1 - m))
    want = [t.detach().clone().mul_(0.9).add_(s.detach(), alpha=1 - 0.9)
            for t, s in zip(module.teacher.parameters(), module.student.parameters())]
    module._ema_update()
    got = list(module.teacher.parameters())
    assert len(got) == len(want) > 100 and all(torch.equal(g, w) for g, w in zip(got, want))
    # the buffers are copied, not averaged
    assert all(torch.equal(t, s) for t, s in zip(module.teacher.buffers(), module.student.buffers()))

    params = [p for p in module.student.parameters() if p.requires_grad]
    copies = [p.detach().clone().requires_grad_() for p in params]
    fused = module.configure_optimizers()["optimizer"]
    assert all(g["foreach"] for g in fused.param_groups)
    names = [n for n, p in module.student.named_parameters() if p.requires_grad]
    by_group = [[c for n, c in zip(names, copies) if not n.startswith("backbone.")],
                [c for n, c in zip(names, copies) if n.startswith("backbone.")]]
    loop = torch.optim.AdamW([{"params": by_group[0], "lr": 1e-3}, {"params": by_group[1], "lr": 1e-4}],
                             lr=1e-3, weight_decay=0.05, foreach=False)
    for step in range(3):
        grads = [torch.randn_like(p) for p in params]
        for p, c, g in zip(params, copies, grads):
            p.grad, c.grad = g.clone(), g.clone()
        fused.step()
        loop.step()
    assert all(torch.equal(p, c) for p, c in zip(params, copies))
