"""``DistillationModule``: student VideoMask2Former + EMA teacher, L = L_TempDrop + L_Distill (S2D stage 2),
and ``DenseModule`` (stage 3: the final model on the dense labelset, with optional self-distillation).

The teacher is an exponential moving average of the student (momentum 0.999 per step), sees the same
augmented clip, and its queries with foreground score >= 0.75 and mask logits > 0 become dense targets for the
student (a query whose tube has no pixel is none). From scratch (the demo, no pretrained weights) the teacher
starts random, so ``distill_warmup`` steps of keymask loss alone come first: a random teacher's confident blobs
would otherwise be learned as objects.
Point sampling is seeded by (seed, global step, clip): a resumed run continues the same loss sequence and a batch
split over ranks samples the same points as one process. Dropout is seeded by (seed, global step, rank), so
with dropout on (``model.dropout`` > 0) a DDP run is reproducible but not equal to one process.
A non-finite loss on any rank stops every rank at that step with an error naming the step, the loss terms
and the videos.
"""
from __future__ import annotations

import copy
import logging
from typing import Any

import lightning as L
import torch
import torch.distributed as dist

from s2d.data.clips import AugmentConfig
from s2d.inference.scale import input_scale
from s2d.inference.rescore import ranking_scores
from s2d.inference.video_predict import predict_video, tube_instances
from s2d.labelset.types import VideoLabels
from s2d.lit.params import DistillParams
from s2d.lit.video_ap_metric import VideoAPMetric
from s2d.losses import VideoSetCriterion
from s2d.models import VideoMask2Former
from s2d.seeds import seed_torch, step_seed

log = logging.getLogger(__name__)


class DistillationModule(L.LightningModule):
    LABELS = "sparse"  # which labelset the stage trains on: the prefix of its loss terms in the logs

    def __init__(self, model: dict[str, Any], loss: dict[str, Any], optim: dict[str, Any],
                 ema_momentum: float = DistillParams.ema_momentum, teacher_score: float = DistillParams.teacher_score,
                 distill_weight: float = DistillParams.distill_weight,
                 distill_class_weight: float = DistillParams.distill_class_weight,
                 distill_warmup: int = DistillParams.distill_warmup, seed: int = 0,
                 val: dict[str, Any] | None = None):
        """``val``: whole-video inference settings for validation (score_thr, window, overlap, link_iou,
        nms_iou); validation scores the EMA teacher, the model that labels the videos."""
        super().__init__()
        self.save_hyperparameters()
        self.student = VideoMask2Former.from_config(model)
        self.teacher = copy.deepcopy(self.student).requires_grad_(False).eval()
        self.criterion = VideoSetCriterion(**loss)
        self.distill_criterion = VideoSetCriterion(**{**loss, "class_weight": distill_class_weight})
        self.val_ap = VideoAPMetric()  # its state is not part of the state dict
        # steps with the teacher's term since this process started training, and the teacher's targets per clip
        # summed over them (means over ranks): a term that never had a target is said at the end
        self._teacher_steps, self._teacher_targets = 0, 0.0

    def forward(self, clips: torch.Tensor) -> dict:
        return self.student(clips)

    @torch.no_grad()
    def teacher_targets(self, clips: torch.Tensor) -> list[torch.Tensor]:
        """Teacher queries with score >= teacher_score and at least one pixel -> binary tube targets (N, T, h, w)
        per clip. An empty tube is no object (detectron2's data loaders drop empty instances the same way): as a
        target it would only teach a class with no mask, and several of them tie in the Hungarian matching, where
        float noise (a batch split over DDP ranks) decides which query gets which."""
        out = self.teacher(clips)
        scores = VideoMask2Former.scores(out["pred_logits"])  # (B, Q)
        targets = []
        for b in range(clips.shape[0]):
            t = (out["pred_masks"][b][scores[b] >= self.hparams.teacher_score] > 0).float()  # (N, T, h, w)
            targets.append(t[t.flatten(1).any(1)])
        return targets

    def _generators(self, batch: dict) -> list[torch.Generator]:
        return [torch.Generator(device=self.device).manual_seed(step_seed(self.hparams.seed, self.global_step, int(i)))
                for i in batch["indices"]]

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        seed_torch(step_seed(self.hparams.seed, self.global_step, self.global_rank, 7))  # dropout
        clips, targets = batch["clips"], batch["targets"]
        out = self.student(clips)
        targets = self.student.pad_targets(targets, out["image_size"])  # frames not divisible by 32 were padded
        gens = self._generators(batch)
        context = f"step {self.global_step}, videos {batch['videos']}"
        failure, n_targets = None, None
        try:
            terms = {f"{self.LABELS}/{k}": v for k, v in
                     self.criterion(out, targets, gens, context, batch.get("known_empty"),
                                   batch.get("target_scores")).items()}
            if self.hparams.distill_weight > 0 and self.global_step >= self.hparams.distill_warmup:
                dist_t = self.teacher_targets(clips)
                n_targets = sum(len(t) for t in dist_t) / len(dist_t)  # per clip, logged as a diagnostic
                gens = self._generators(batch)
                terms.update({f"distill/{k}": self.hparams.distill_weight * v
                              for k, v in self.distill_criterion(out, dist_t, gens, context).items()})
            loss = sum(terms.values())
        except FloatingPointError as e:
            # the loss refused non-finite predictions (the criterion on every rank at once, or the matcher on
            # this rank alone): the collective below tells the other ranks, so none waits for this one
            failure, terms, loss = str(e), {}, out["pred_logits"].sum() * float("nan")
        if getattr(self, "inject_nan_at", None) == self.global_step:  # FaultInjector(kind="nan")
            terms["injected_nan"] = loss * float("nan")
            loss = terms["injected_nan"]
        if getattr(self, "inject_overflow_at", None) == self.global_step:  # FaultInjector(kind="overflow")
            loss = loss * 2.0 ** 100
        self._check_finite(loss, terms, batch, failure)
        main = {f"train/{k}": v.detach() for k, v in terms.items() if "_aux" not in k}
        main["train/loss"] = loss.detach()
        if n_targets is not None:
            # the loss's shape: the ranks' values are stacked into one collective with the loss terms
            main["train/distill/targets"] = torch.full_like(main["train/loss"], n_targets)
        main = self._rank_mean(main)
        if n_targets is not None:
            self._teacher_steps += 1
            self._teacher_targets += float(main["train/distill/targets"])
        self.log_dict({k: v for k, v in main.items() if k != "train/loss"}, batch_size=clips.shape[0])
        self.log("train/loss", main["train/loss"], prog_bar=True, batch_size=clips.shape[0])
        if batch.get("substituted"):  # clips replaced because a frame was unreadable (train.on_error=substitute)
            self.log("data/substituted", float(batch["substituted"]), reduce_fx="sum", batch_size=clips.shape[0])
        return loss

    @staticmethod
    def _rank_mean(values: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Each rank's loss is its share of the global batch's loss: the mean over ranks is the loss of the whole
        batch, so the logged numbers do not depend on the number of processes (one collective for all)."""
        if not (dist.is_available() and dist.is_initialized()) or not values:
            return values
        names = sorted(values)  # the same order on every rank (every rank computes the same terms)
        t = torch.stack([values[k].float() for k in names])
        dist.all_reduce(t)
        return dict(zip(names, t / dist.get_world_size()))

    def _check_finite(self, loss: torch.Tensor, terms: dict, batch: dict, failure: str | None = None) -> None:
        bad = torch.tensor([0.0 if torch.isfinite(loss) else 1.0], device=loss.device)
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(bad)  # every rank learns that some rank went non-finite: all stop, none hangs
        if bad.item() > 0:
            bad_terms = sorted(k for k, v in terms.items() if not torch.isfinite(v))
            where = failure or bad_terms or "finite here, NaN on another rank"
            raise FloatingPointError(f"non-finite loss at step {self.global_step} (stage {type(self).__name__}, "
                                     f"rank {self.global_rank}): {'' if failure else 'terms '}{where}"
                                     f"; videos {batch['videos']}, frames {batch['frames']}")

    def on_train_end(self) -> None:
        if self._teacher_steps and not self._teacher_targets and self.global_rank == 0:
            # On real video a final model taught its labelset's scores (final.score_targets) stays under the
            # method's 0.75 on every query (its labels rank most tubes lower), and its term then does nothing
            log.warning("%s stage: the teacher's term had no target in any of its %d steps: no query of the EMA "
                        "teacher reached the score %.2f (distill.teacher_score; final.teacher_score in the final "
                        "stage)", "distill" if self.LABELS == "sparse" else "final", self._teacher_steps,
                        self.hparams.teacher_score)

    def optimizer_step(self, *args, **kwargs) -> None:
        super().optimizer_step(*args, **kwargs)
        # The teacher follows right after the optimizer step, not in on_train_batch_end: Lightning runs the
        # callbacks' on_train_batch_end (periodic and SLURM checkpoints) before the module's, so a checkpoint
        # written there would miss this step's EMA update and a resumed run would drift from an uninterrupted one.
        self._ema_update()

    @torch.no_grad()
    def _ema_update(self) -> None:
        m = self.hparams.ema_momentum
        # t.mul_(m).add_(s, alpha=1 - m) for all parameters in two multi-tensor calls: the same arithmetic, element
        # for element, as a loop over the tensors, without a Python round per tensor (the tiny model has 122)
        teacher, student = list(self.teacher.parameters()), [p.detach() for p in self.student.parameters()]
        torch._foreach_mul_(teacher, m)
        torch._foreach_add_(teacher, student, alpha=1 - m)
        for t, s in zip(self.teacher.buffers(), self.student.buffers()):
            t.copy_(s)

    @torch.no_grad()
    def validation_step(self, item: dict, batch_idx: int) -> None:
        """One whole video (``s2d.data.whole_videos``): the teacher's tubes against its ground truth."""
        gt = item["gt"]
        v = self.val_settings()
        tubes = self.val_tubes(item)
        scores = ranking_scores(tubes, v["mask_score"], v["overlap_decay"], v["fragments_last"])
        pred = VideoLabels(gt.name, gt.height, gt.width, gt.length, [], tube_instances(tubes, len(item["frames"]),
                                                                                      scores), gt.id)
        self.val_ap.update(pred, gt)

    def val_settings(self) -> dict:
        """The inference settings validation uses: ``val`` over the defaults of a module built without it."""
        crop = AugmentConfig()  # the default training crops, for a module built without them in ``val``
        return {"score_thr": 0.05, "window": 12, "overlap": 2, "link_iou": 0.5, "nms_iou": 0.75, "input_scale": None,
                "crop_size": crop.size, "crop_scale": crop.crop_scale, "mask_score": False, "overlap_decay": False,
                "fragments_last": False,
                **(self.hparams.val or {})}

    def val_tubes(self, item: dict) -> list:
        v = self.val_settings()
        scale = input_scale(item["frames"].shape[1:3], AugmentConfig.of(v), v["input_scale"])
        return predict_video(self.teacher, item["frames"], v["score_thr"], v["window"], v["overlap"],
                             v["link_iou"], v["nms_iou"], device=self.device, scale=scale, mask_scores=v["mask_score"])

    def on_validation_epoch_end(self) -> None:
        stats = self.val_ap.compute()  # gathers every rank's videos, each counted once
        self.val_ap.reset()
        # identical on every rank after the gather; sync_dist keeps a monitored value unanimous regardless
        self.log_dict({f"val/{k}": stats[k].float() for k in ("AP", "AP50", "AP75", "AR1", "AR10")},
                      sync_dist=True)

    def configure_optimizers(self):
        o = self.hparams.optim
        backbone = [p for n, p in self.student.named_parameters() if n.startswith("backbone.") and p.requires_grad]
        rest = [p for n, p in self.student.named_parameters() if not n.startswith("backbone.") and p.requires_grad]
        opt = torch.optim.AdamW([{"params": rest, "lr": o["lr"]},
                                 {"params": backbone, "lr": o["lr"] * o.get("backbone_lr_mult", 0.1)}],
                                lr=o["lr"], weight_decay=o.get("weight_decay", 0.05),
                                # the multi-tensor update (the default on GPUs) on the CPU too: the same
                                # arithmetic per element, bit-identical weights, half the time of one per tensor
                                foreach=True)
        sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=list(o.get("milestones", [])),
                                                     gamma=o.get("gamma", 0.1))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


class DenseModule(DistillationModule):
    """The final model on the dense labelset; ``distill_weight`` > 0 adds a round of EMA self-distillation."""

    LABELS = "dense"
