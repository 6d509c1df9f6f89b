"""The torchmetrics wrapper: same AP as the pure evaluator, each video counted once across DDP ranks."""
from __future__ import annotations


import numpy as np
import pytest

from s2d.evaluation import evaluate_ap
from s2d.labelset.types import Labelset, VideoLabels
from s2d.lit.video_ap_metric import VideoAPMetric


def _videos(n=5, seed=0):
    rng = np.random.default_rng(seed)
    gts, preds = [], []
    for i in range(n):
        m = np.zeros((2, 3, 16, 16), bool)
        m[0, :, 2:8, 2:8] = True
        m[1, :, 9:15, 8:14] = True
        g = VideoLabels.from_masks(f"v{i}", m)
        g.id = i + 1
        noisy = m ^ (rng.random(m.shape) < 0.1 * (i + 1) / n)
        p = VideoLabels.from_masks(f"v{i}", noisy, scores=list(rng.random(2)))
        p.id = i + 1
        gts.append(g)
        preds.append(p)
    return gts, preds


def test_metric_equals_pure_evaluator_and_rejects_mispairing():
    gts, preds = _videos()
    m = VideoAPMetric()
    for g, p in zip(gts, preds):
        m.update(p, g)
    out = m.compute()
    ref = evaluate_ap(Labelset(gts), Labelset(preds))
    assert int(out["num_videos"]) == 5
    for k, v in ref.items():
        assert float(out[k]) == pytest.approx(v, abs=1e-12)
    with pytest.raises(ValueError, match="paired with ground truth"):
        m.update(preds[0], gts[1])


def _rank_metrics(rank: int, world: int) -> dict:
    gts, preds = _videos()
    # a DistributedSampler over 5 videos on 2 ranks pads rank 1 with a repeat of video 0
    mine = [0, 2, 4] if rank == 0 else [1, 3, 0]
    m = VideoAPMetric()
    for i in mine:
        m.update(preds[i], gts[i])
    return {k: float(v) for k, v in m.compute().items()}


@pytest.mark.ddp
@pytest.mark.timeout(120)
def test_two_rank_gloo_counts_each_video_once():
    from _gloo import on_two_ranks

    results = on_two_ranks(_rank_metrics)
    gts, preds = _videos()
    ref = evaluate_ap(Labelset(gts), Labelset(preds))
    for rank in (0, 1):
        assert isinstance(results[rank], dict), results[rank]
        assert results[rank]["num_videos"] == 5
        for k, v in ref.items():
            assert results[rank][k] == pytest.approx(v, abs=1e-12)
