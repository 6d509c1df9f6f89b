"""Set criterion for clips: Hungarian matching, then class and mask losses with the DropLoss variants.

variant="temporal" (S2D's Temporal DropLoss): an (instance, frame) pair whose target mask is empty contributes
  no mask loss (times ``1 - drop_rate`` when ``drop_rate`` < 1: the ablation knob; 1 = the method), so the
  model may propagate the instance into frames without a keymask.
variant="cutler" (CutLER's DropLoss, the comparison): every frame counts in the mask losses, and the
  no-object loss of an unmatched prediction whose best IoU with every target is <= ``cutler_iou`` is dropped.
Dropping nothing at all is variant="temporal" with ``drop_rate=0`` (``loss=no_droploss``).
``known_empty`` (per clip, one flag per target, or one per target and frame) marks targets whose empty frames are
known to be empty (a dense labelset's tube: the labeller saw the frame and no object); those frames are taught
as absent under any variant.
Losses are normalised by the number of target instances summed over all DDP ranks, clamped to >= 1; the
all-reduce runs on every rank even when a rank has no targets, so no rank hangs. A batch in which everything
is dropped gives a finite zero loss that still has a graph (every parameter gets a zero gradient).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F

from s2d.choices import LossVariant
from s2d.losses.matcher import HungarianMatcher
from s2d.losses.point_sample import point_sample, uncertain_points
from s2d.losses.temporal_droploss import temporal_droploss_weights


def global_count(n: float | torch.Tensor, device, flag: bool = False) -> tuple[torch.Tensor, int]:
    """A count summed over DDP ranks and clamped to >= 1, then divided by the world size (DDP averages gradients
    over ranks, so each rank normalises by its share), and how many ranks raised ``flag``. Clamping the sum, not
    the share, keeps a batch with fewer targets than ranks equal to one process (one target on 2 ranks: each
    divides by 0.5, the average over ranks is the sum over 1). One collective on every rank, always: the flag
    rides along so that every rank learns of a failure at the same point."""
    t = torch.tensor([float(n), float(flag)], dtype=torch.float32, device=device)
    world = 1
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(t)
        world = dist.get_world_size()
    return t[:1].clamp(min=1.0) / world, int(t[1].item())


@dataclass
class LossParams:
    """Every loss setting and its default, defined here once: the config's ``loss`` section is this dataclass.
    The defaults are the short CPU schedule's; the method uses 12544 points (``experiment=paper``)."""
    class_weight: float = 2.0
    mask_weight: float = 5.0
    dice_weight: float = 5.0
    no_object_weight: float = 0.1
    num_points: int = 2048             # points per mask for the losses and the matching
    variant: LossVariant = LossVariant.temporal  # temporal (S2D; drop_rate=0 drops nothing) | cutler (IoU DropLoss)
    drop_rate: float = 1.0             # Temporal DropLoss rate: 1 = drop every empty (instance, frame) pair
    cutler_iou: float = 0.01           # CutLER: no-object loss dropped for predictions with max IoU <= this
    deep_supervision: bool = True


class VideoSetCriterion:
    def __init__(self, matcher: HungarianMatcher | None = None, **settings):
        """``settings``: any fields of ``LossParams`` (the rest keep its defaults); an unknown one is refused."""
        p = LossParams(**settings)
        if p.variant not in LossVariant.values():
            raise ValueError(f"loss variant '{p.variant}' is not {LossVariant.names()}")
        self.class_weight, self.mask_weight, self.dice_weight = p.class_weight, p.mask_weight, p.dice_weight
        self.no_object_weight, self.num_points = p.no_object_weight, p.num_points
        self.variant, self.drop_rate, self.cutler_iou = p.variant, p.drop_rate, p.cutler_iou
        self.deep_supervision = p.deep_supervision
        self.matcher = matcher or HungarianMatcher(p.mask_weight, p.dice_weight, p.num_points)

    def _class_loss(self, logits, masks, targets, indices, target_scores=None):
        """Weighted cross-entropy, normalised by the weight summed over all ranks (batch-split invariant).
        ``target_scores[b]`` (N_b,): the probability of "object" each target teaches its matched query (soft
        pseudo-labels); None: 1 for every target, the hard label."""
        B, Q = logits.shape[:2]
        obj = torch.zeros(B, Q, device=logits.device)                           # P(object) taught; 0 = no-object
        weight = torch.full((B, Q), self.no_object_weight, device=logits.device)
        for b, (src, tgt_idx) in enumerate(indices):
            obj[b, src] = 1.0 if target_scores is None else target_scores[b].to(obj)[tgt_idx]
            weight[b, src] = 1.0
        if self.variant == "cutler":
            with torch.no_grad():
                for b, (src, _) in enumerate(indices):
                    tgt = targets[b]
                    unmatched = torch.ones(Q, dtype=torch.bool, device=logits.device)
                    unmatched[src] = False
                    if len(tgt) == 0:
                        weight[b, unmatched] = 0.0
                        continue
                    p = (masks[b] > 0).flatten(1).float()                           # (Q, T*h*w)
                    tgt = F.interpolate(tgt.float(), size=masks.shape[-2:], mode="nearest")
                    t = (tgt > 0.5).flatten(1).float()                              # (N, T*h*w)
                    inter = p @ t.T
                    union = p.sum(1)[:, None] + t.sum(1)[None] - inter
                    best = (inter / union.clamp(min=1)).max(1).values               # (Q,)
                    weight[b, unmatched & (best <= self.cutler_iou)] = 0.0
        # class 0 = object, 1 = no-object. Hard targets take the class-index form (the method's arithmetic, bit for
        # bit); soft ones the probability form, which equals it at scores of 1
        target = (1 - obj).long() if target_scores is None else torch.stack([obj, 1 - obj], 1)  # (B, Q) | (B, 2, Q)
        ce = F.cross_entropy(logits.float().transpose(1, 2), target, reduction="none")  # (B, Q)
        return (ce * weight).sum() / global_count(weight.sum().detach(), logits.device)[0]

    def _mask_losses(self, masks, targets, indices, num_instances, generators, known_empty=None):
        """Per (instance, frame) point-sampled BCE and Dice, weighted by the DropLoss rule, summed per clip."""
        bce_sum = masks.sum() * 0.0  # starts as a graph-carrying zero: an all-dropped batch still backpropagates
        dice_sum = masks.sum() * 0.0
        for b, (si, ti) in enumerate(indices):
            if len(si) == 0:
                continue
            src, tgt = masks[b, si], targets[b][ti].to(masks.dtype)  # (n, T, h, w), (n, T, H, W)
            n, T = src.shape[:2]
            s = src.flatten(0, 1)[:, None].float()                    # (n*T, 1, h, w)
            t = tgt.flatten(0, 1)[:, None].float()
            with torch.no_grad():
                coords = uncertain_points(s, self.num_points, generator=None if generators is None else generators[b])
            ps = point_sample(s, coords)[:, 0]                         # (n*T, P)
            pt = point_sample(t, coords)[:, 0]
            bce = F.binary_cross_entropy_with_logits(ps, pt, reduction="none").mean(1)  # (n*T,)
            prob = ps.sigmoid()
            dice = 1 - (2 * (prob * pt).sum(1) + 1) / (prob.sum(1) + pt.sum(1) + 1)    # (n*T,)
            if self.variant == "temporal":
                known = None if known_empty is None else known_empty[b][ti]            # (n,) | (n, T)
                w = temporal_droploss_weights(tgt, self.drop_rate, known)              # (n*T,)
            else:
                w = torch.ones_like(bce)
            # the method's sum over frames of 1(|m| > 0) * L per instance, summed over instances
            bce_sum = bce_sum + (bce * w).sum()
            dice_sum = dice_sum + (dice * w).sum()
        return bce_sum / num_instances, dice_sum / num_instances

    def __call__(self, outputs: dict, targets: list[torch.Tensor], generators: list[torch.Generator] | None = None,
                 context: str = "", known_empty: list[torch.Tensor] | None = None,
                 target_scores: list[torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """outputs: model outputs; targets[b]: (N_b, T, H, W) {0,1} at any resolution (point-sampled);
        known_empty[b]: (N_b,) bool, targets whose empty frames are taught as absent, or (N_b, T) per frame
        (None: none);
        target_scores[b]: (N_b,) in [0, 1], the class target of each (None: 1, the hard label).

        ``generators`` (one per clip) make the random points a function of the clip alone, so a batch split
        over DDP ranks samples the same points as one process.
        """
        device = outputs["pred_masks"].device
        layers = [outputs] + (list(outputs.get("aux_outputs", [])) if self.deep_supervision else [])
        finite = all(bool(torch.isfinite(o["pred_masks"]).all() and torch.isfinite(o["pred_logits"]).all())
                     for o in layers)
        # collective on every rank, always; a rank with NaN/inf predictions stops every rank right here
        num, bad_ranks = global_count(sum(len(t) for t in targets), device, flag=not finite)
        if bad_ranks:
            raise FloatingPointError(f"criterion{(' ' + context) if context else ''}: non-finite predictions "
                                     + ("(the model's outputs contain NaN/inf)" if not finite else
                                        f"on {bad_ranks} other rank(s)"))
        losses: dict[str, torch.Tensor] = {}
        for i, out in enumerate(layers):
            indices = self.matcher(out["pred_logits"], out["pred_masks"], targets, generators, context)
            bce, dice = self._mask_losses(out["pred_masks"], targets, indices, num, generators, known_empty)
            cls = self._class_loss(out["pred_logits"], out["pred_masks"], targets, indices, target_scores)
            sfx = "" if i == 0 else f"_aux{i - 1}"
            losses[f"loss_mask{sfx}"] = self.mask_weight * bce
            losses[f"loss_dice{sfx}"] = self.dice_weight * dice
            losses[f"loss_class{sfx}"] = self.class_weight * cls
        return losses
