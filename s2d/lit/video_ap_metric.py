"""``VideoAPMetric``: class-agnostic video AP/AR as a torchmetrics ``Metric`` for Lightning validation.

Each rank adds the (prediction, ground truth) pairs of the videos it evaluated. At ``compute`` the pairs of
all ranks are gathered (each serialised to a byte tensor, since torchmetrics can only sync tensors) and
de-duplicated by video name, so that a video a DistributedSampler padded onto two ranks counts once. The AP
itself is computed by the pure ``s2d.evaluation.evaluate_ap``.
"""
from __future__ import annotations

import json

import torch
from torchmetrics import Metric

from s2d.evaluation import evaluate_ap
from s2d.labelset.types import Labelset, VideoLabels
from s2d.labelset.ytvis import labelset_from_json, labelset_to_json


def _to_tensor(obj) -> torch.Tensor:
    # one JSON document per line: after the DDP sync the records of all ranks arrive concatenated into one
    # tensor, and json.dumps never writes a raw newline, so "\n" separates them unambiguously
    return torch.frombuffer(bytearray(json.dumps(obj).encode() + b"\n"), dtype=torch.uint8).clone()


def _records(state) -> list:
    tensors = state if isinstance(state, list) else [state]
    if not tensors:
        return []
    blob = torch.cat([t.reshape(-1) for t in tensors]).cpu().numpy().tobytes()
    return [json.loads(line) for line in blob.split(b"\n") if line]


class VideoAPMetric(Metric):
    full_state_update = False
    higher_is_better = True

    def __init__(self, workers: int | None = 1, **kwargs):
        # One process by default: inside a training run every rank computes the metric, and forking a
        # process that holds CUDA contexts and data-loader workers is best left to the user's choice.
        super().__init__(**kwargs)
        self.workers = workers
        self.add_state("pairs", default=[], dist_reduce_fx="cat")

    def update(self, predictions: VideoLabels, ground_truth: VideoLabels) -> None:  # type: ignore[override]
        if predictions.name != ground_truth.name:
            raise ValueError(f"prediction for '{predictions.name}' paired with ground truth of "
                             f"'{ground_truth.name}'")
        pred = labelset_to_json(Labelset([predictions]))
        gt = labelset_to_json(Labelset([ground_truth]))
        self.pairs.append(_to_tensor({"pred": pred, "gt": gt}))

    def compute(self) -> dict[str, torch.Tensor]:
        seen: dict[str, tuple[VideoLabels, VideoLabels]] = {}
        for p in _records(self.pairs):
            g = labelset_from_json(p["gt"]).videos[0]
            d = labelset_from_json(p["pred"]).videos[0]
            seen.setdefault(g.name, (g, d))  # first copy wins; padded duplicates are dropped
        names = sorted(seen)
        gt = Labelset([seen[n][0] for n in names])
        pred = Labelset([seen[n][1] for n in names])
        stats = evaluate_ap(gt, pred, workers=self.workers)
        out = {k: torch.tensor(v, dtype=torch.float64) for k, v in stats.items()}
        out["num_videos"] = torch.tensor(len(names))
        return out
