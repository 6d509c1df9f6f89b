"""Hungarian matching of predicted tubes to target tubes on point-sampled BCE + Dice costs over all frames
(the method's class cost is 0: the pseudo-labels carry no class, so the masks alone decide).

Targets equal at every sampled point (duplicates, or tubes too small for any point to fall on) cost the same for
every query; they are handed to their queries in index order, so the float noise in the other costs never decides
which of them a query learns (``canonical_ties``).

Costs never reach SciPy when they are not finite: a NaN/inf cost raises FloatingPointError naming the clip,
the cost term and the shapes (a NaN from the model would otherwise surface as SciPy's bare ValueError).
"""
from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment

from s2d.losses.point_sample import point_sample


def batch_bce_cost(pred: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
    """pred (Q, P) logits, tgt (N, P) {0,1} -> (Q, N) mean BCE."""
    P = pred.shape[1]
    pos = F.binary_cross_entropy_with_logits(pred, torch.ones_like(pred), reduction="none")
    neg = F.binary_cross_entropy_with_logits(pred, torch.zeros_like(pred), reduction="none")
    return (pos @ tgt.T + neg @ (1 - tgt).T) / P


def batch_dice_cost(pred: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
    """pred (Q, P) logits, tgt (N, P) -> (Q, N) 1 - Dice."""
    p = pred.sigmoid()
    num = 2 * p @ tgt.T
    den = p.sum(-1)[:, None] + tgt.sum(-1)[None, :]
    return 1 - (num + 1) / (den + 1)


@functools.lru_cache(maxsize=8)
def _key_weights(width: int, device: str) -> torch.Tensor:
    """(2, width) int64 in [1, 2^24): fixed random weights of the row keys, the same in every process."""
    g = torch.Generator().manual_seed(0)
    return torch.randint(1, 1 << 24, (2, width), generator=g).to(device)


def equal_rows(tm: torch.Tensor) -> list[int]:
    """tm (N, P) float -> for each row, the lowest index of a row equal to it at every element (its own if none).

    Where tm lives: torch.unique over rows on a CPU; integer keys on a GPU (``rows_by_key``), where torch.unique
    compares rows one thread per pair and, with long runs of equal values (empty frames), took 75 ms a call on an
    H200, 95 % of the paper model's training step (benchmarks/gpu_tier.sh, profile.log). The two agree exactly
    (tests); on a CPU torch.unique is the faster (benchmarks/matcher_speed.py)."""
    return rows_by_key(tm) if tm.is_cuda else rows_by_unique(tm)


def rows_by_unique(tm: torch.Tensor) -> list[int]:
    """``equal_rows`` by torch.unique over rows (the CPU's way)."""
    _, inverse = torch.unique(tm, dim=0, return_inverse=True)
    first: dict[int, int] = {}
    return [first.setdefault(g, j) for j, g in enumerate(inverse.tolist())]


def rows_by_key(tm: torch.Tensor) -> list[int]:
    """``equal_rows`` in O(N P) where tm lives: each row gets an integer key from its values' bits (two 16-bit
    halves times fixed weights, summed in int64: exact, so equal rows get equal keys whatever order the sum runs
    in, and no overflow below 2^22 columns); only the N keys cross to the host, and rows that share a key are
    compared element by element, so a collision never merges rows."""
    bits = (tm.float() + 0.0).contiguous().view(torch.int32).long()   # + 0.0: -0.0 equals 0.0, as in ==
    w = _key_weights(tm.shape[1], str(tm.device))
    keys = ((bits & 0xFFFF) * w[0] + ((bits >> 16) & 0xFFFF) * w[1]).sum(1).tolist()   # (N,) one host sync
    first: list[int] = []
    seen: dict[int, list[int]] = {}
    for j, k in enumerate(keys):
        same = next((i for i in seen.get(k, ()) if torch.equal(tm[i], tm[j])), None)
        if same is None:
            seen.setdefault(k, []).append(j)
        first.append(j if same is None else same)
    return first


def canonical_ties(rows: np.ndarray, cols: np.ndarray, tm: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """An optimal assignment (rows: queries ascending, cols: their targets) -> the same assignment with targets
    the matcher cannot tell apart (equal values at every sampled point ``tm`` (N, P), e.g. two small tubes no point
    falls on, or duplicates) handed to their queries in index order: the lowest target to the lowest query.

    Any order among such targets costs the same, so the solver's choice follows float noise in the other costs
    (a batch split over DDP ranks changes it); the targets differ in what the matcher does not see (their
    scores as class targets, their masks between the points), so the choice must not."""
    group_of = equal_rows(tm)
    if all(g == j for j, g in enumerate(group_of)):
        return rows, cols
    groups: dict[int, list[int]] = {}
    for j, g in enumerate(group_of):
        groups.setdefault(g, []).append(j)
    query_of = dict(zip(cols.tolist(), rows.tolist()))  # target -> query
    for group in groups.values():
        taken = [j for j in group if j in query_of]
        if len(group) < 2 or not taken:
            continue
        queries = sorted(query_of.pop(j) for j in taken)
        query_of.update(zip(sorted(group)[: len(taken)], queries))  # unmatched (N > Q): the highest ones
    pairs = sorted((q, j) for j, q in query_of.items())
    return np.array([q for q, _ in pairs], dtype=rows.dtype), np.array([j for _, j in pairs], dtype=cols.dtype)


class HungarianMatcher:
    def __init__(self, cost_mask: float = 5.0, cost_dice: float = 5.0, num_points: int = 12544):
        self.cost_mask, self.cost_dice, self.num_points = cost_mask, cost_dice, num_points

    @torch.no_grad()
    def __call__(self, pred_logits: torch.Tensor, pred_masks: torch.Tensor, targets: list[torch.Tensor],
                 generators: list[torch.Generator] | None = None, context: str = ""
                 ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """pred_logits (B, Q, 2) (unused: class cost 0), pred_masks (B, Q, T, h, w), targets[b] (N_b, T, h, w)
        -> [(pred idx, tgt idx)] per clip."""
        out = []
        B, Q, T = pred_masks.shape[:3]
        for b in range(B):
            tgt = targets[b].float()
            if len(tgt) == 0:
                out.append((torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long)))
                continue
            coords = torch.rand(1, self.num_points, 2, device=pred_masks.device,
                                generator=None if generators is None else generators[b])
            pm = point_sample(pred_masks[b].float(), coords.expand(Q, -1, -1)).flatten(1)   # (Q, T*P)
            tm = point_sample(tgt, coords.expand(len(tgt), -1, -1)).flatten(1)             # (N, T*P)
            terms = {"mask": self.cost_mask * batch_bce_cost(pm, tm), "dice": self.cost_dice * batch_dice_cost(pm, tm)}
            for name, c in terms.items():
                if not torch.isfinite(c).all():
                    raise FloatingPointError(f"matcher{(' ' + context) if context else ''}: non-finite {name} cost "
                                             f"for clip {b} (Q={Q}, targets={len(tgt)}, frames={T}); the "
                                             f"predictions contain NaN/inf")
            C = sum(terms.values()).cpu().numpy()
            r, c = canonical_ties(*linear_sum_assignment(C), tm)
            out.append((torch.as_tensor(r, dtype=torch.long), torch.as_tensor(c, dtype=torch.long)))
        return out
