"""Stage "label": the distilled teacher on every whole training video -> the DENSE labelset (score >=
``label.score_thr``, optional tube NMS at IoU 0.75, masks GrabCut-refined with ``label.refine``, a tube whose mask
falls apart into several objects of the labels the teacher learned from split into one tube per object with
``label.split_apart``, a tube that holds two of them in turn cut to one with ``label.one_identity``, plus those
labels' instances that none of its tubes matches, with ``label.keep_iou``), fingerprinted by the checkpoint it came
from."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any


from s2d.data.sources import Dataset, VideoRecord
from s2d.fingerprint import fingerprint
from s2d.io.atomic import sha256_file
from s2d.labelset.types import Labelset, VideoLabels
from s2d.stages.common import StageOutput, artifact_dir, run_per_video, section
from s2d.stages.distill import drops_cut_frames, scores_as_targets

log = logging.getLogger(__name__)
VERSION = 1
# GrabCut of a learned model's masks (``s2d.masks.refine``): the boundary moves at most 8 px either way. On the
# DAVIS clips, letting the cut reach the whole mask (the single-frame masks' setting) took white panels off the
# final model's car; keeping the core raised the final model's AP50 from 55.1 to 73.0 (the same models' masks)
# and to 60.8 with the final stage trained again on labels refined so (3 seeds, docs/RESULTS.md). Enters the
# fingerprint of every stage it refines.
MODEL_MASK_REFINE = {"band": 8, "iters": 3, "keep_core": True}
# settings that change how tubes are ranked (``s2d.inference.rescore``), not which masks they hold
RANKING_KEYS = ("mask_score", "overlap_decay", "fragments_last", "keymask_first")


def load_model(cfg: Any, ckpt: Path, which: str = "teacher"):
    """(model, crops): the teacher (or student) of a learning stage's checkpoint (``s2d.models.weights``), on the
    device inference runs on (``predict.device``: a GPU when there is one), and
    the training crops it learned from (the checkpoint's stamped config; the current ``train`` section when it
    has none), at whose scale inference shows it its frames (``s2d.inference.scale``)."""
    from s2d.data.clips import AugmentConfig
    from s2d.inference.device import resolve_device
    from s2d.inference.scale import checkpoint_crop
    from s2d.models import VideoMask2Former

    model = VideoMask2Former.from_checkpoint(ckpt, which).to(resolve_device(cfg.predict.device))
    return model, checkpoint_crop(ckpt, AugmentConfig.of(cfg.train))


def refine_tubes(tubes: list, frames, workers: int | None = None) -> list:
    """New tubes with each mask GrabCut-refined on its frame (frames (T, H, W, 3) uint8) with
    ``MODEL_MASK_REFINE``; a mask the cut empties is dropped from its tube, a tube
    left without masks is dropped. New tubes, so no RLE encoded before refinement (tube NMS) is carried over.
    ``workers`` threads (default: the CPU threads PyTorch was given, this process's share of the machine)."""
    import torch

    from s2d.inference.video_predict import Tube
    from s2d.masks.refine import grabcut_refine_many

    jobs = [(i, t) for i, tb in enumerate(tubes) for t in tb.masks]
    refined = grabcut_refine_many([(frames[t], tubes[i].masks[t]) for i, t in jobs],
                                  workers or torch.get_num_threads(), **MODEL_MASK_REFINE)
    per_tube: list[dict] = [{} for _ in tubes]
    for (i, t), m in zip(jobs, refined):
        if m.any():
            per_tube[i][t] = m
    return [Tube(masks, tb.scores, tb.mask_scores, cut=set(tb.cut)) for tb, masks in zip(tubes, per_tube) if masks]


def predictions(cfg: Any, ds: Dataset, model, crop, score_thr: float, nms: float | None, stage: str, fp: str,
                root: Path, refine: bool = False, previous: Labelset | None = None, sparse: bool = False
                ) -> Labelset:
    """The model's tubes on every video (a labelset store at ``root``). With ``previous`` (the labels the model
    learned from): ``label.split_apart`` splits a tube whose parts hold different instances of it into one tube per
    instance (``s2d.inference.apart``), ``label.one_identity`` cuts a tube that holds two of its instances in turn
    down to one (``s2d.inference.identity``), and ``label.keep_iou`` adds the instances of ``previous`` that no tube matches
    (``s2d.inference.keep_labels``), scored ``score_thr`` x their own score so that they rank below every tube. When
    ``previous`` is the ``sparse`` keymasks, ``label.keymask_frames`` gives a tube that matches a keymask instance
    that instance's masks on its keymask frames (``s2d.inference.keymask_frames``)."""
    from s2d.inference.scale import input_scale
    from s2d.inference.video_predict import predict_video, tube_instances
    from s2d.inference.keep_labels import keep_missed
    from s2d.inference.identity import one_identity
    from s2d.inference.apart import split_apart
    from s2d.inference.keymask_frames import take_keymask_frames
    from s2d.inference.rescore import ranking_scores

    lab = cfg.label

    def produce(r: VideoRecord) -> VideoLabels:
        frames = r.video.frames()
        scale = input_scale(frames.shape[1:3], crop, lab.input_scale)
        tubes = predict_video(model, frames, score_thr, lab.window, lab.overlap, lab.link_iou, nms, scale=scale,
                              mask_scores=lab.mask_score, flip=lab.flip)
        if refine:
            tubes = refine_tubes(tubes, frames)
        if previous is not None and lab.split_apart:
            tubes, split = split_apart(tubes, previous[r.name])
            if split:
                log.info("label: %s: %d teacher tube(s) hold objects of the labels they learned from apart, in "
                         "separate parts of a frame; each is split into one tube per object (label.split_apart)",
                         r.name, split)
        if previous is not None and lab.one_identity:
            tubes, cut = one_identity(tubes, len(frames), previous[r.name])
            if cut:
                log.info("label: %s: %d teacher tube(s) hold two objects of the labels they learned from in turn; "
                         "each keeps the frames of the one it matches most (label.one_identity)", r.name, cut)
        taken: list[int] = []
        if previous is not None and sparse and lab.keymask_frames:
            tubes, taken = take_keymask_frames(tubes, previous[r.name])
            log.debug("label: %s: %d teacher tube(s) take their keymask instance's masks on its keymask frames "
                      "(label.keymask_frames)", r.name, len(taken))
        out = ds.skeleton(r.name)
        out.instances = tube_instances(tubes, len(frames), ranking_scores(
            tubes, lab.mask_score, lab.overlap_decay, lab.fragments_last, taken if lab.keymask_first else ()))
        if previous is not None and lab.keep_iou is not None:
            out.instances += keep_missed(out, previous[r.name], lab.keep_iou, score_thr)
        return out

    return run_per_video(stage, root, fp, ds, produce, cfg.progress, info={"stage": stage})


def refines(cfg: Any, stage: str) -> bool:
    """Whether a stage GrabCut-refines its masks: ``label.refine`` for the dense labelset ("label"),
    ``final.refine`` for the final model's predictions ("predict")."""
    return bool(cfg.label.refine if stage == "label" else cfg.final.refine)


def label_settings(cfg: Any, stage: str = "label", sparse: bool = True) -> dict:
    """The ``label`` section as it enters a stage's fingerprint, ``refine`` standing for the refinement that acts
    in that stage (``refines``: its settings) and present only when on, so runs made before the keys existed keep
    their fingerprints. ``sparse``: the dense labelset is made from the sparse keymasks (round 1)."""
    lab = section(cfg, "label")
    lab.pop("refine", None)
    for key in (*RANKING_KEYS, "flip"):  # present only when on, like refine
        if not lab.get(key):
            lab.pop(key, None)
    if not lab.get("overlap_decay"):  # the order of a decay that does not happen changes nothing
        lab.pop("fragments_last", None)
    if refines(cfg, stage):
        lab["refine"] = dict(MODEL_MASK_REFINE)
    if stage != "label" or lab.get("keep_iou") is None:  # only the dense labelset keeps earlier labels
        lab.pop("keep_iou", None)
    if stage != "label" or not lab.get("split_apart"):  # ... and reads their identities; present only when on
        lab.pop("split_apart", None)
    else:  # the rule's version and constants: a labelset split by another rule is not reused
        from s2d.inference import apart

        lab["split_apart"] = {"version": apart.VERSION, "hold_share": apart.HOLD_SHARE,
                              "duplicate_share": apart.DUPLICATE_SHARE}
    if stage != "label" or not sparse or not lab.get("keymask_frames"):  # only round 1's labelset takes them
        lab.pop("keymask_frames", None)
    if "keymask_frames" not in lab or not lab.get("overlap_decay") or not lab.get("keymask_first"):
        lab.pop("keymask_first", None)  # ... and ranks the tubes that took them first, where there is a decay
    if stage != "label" or not lab.get("one_identity"):
        lab.pop("one_identity", None)
    elif drops_cut_frames(cfg, "dense"):
        # the final stage reads the frames the labelset names as cut, which a labelset made before did not name
        lab["one_identity"] = {"cut_frames": True}
    return lab


def compute(cfg: Any, ds: Dataset, ckpt: Path, data_fp: str, previous: tuple[Labelset, str] | None = None,
            sparse: bool = True) -> StageOutput:
    """The dense labelset of the teacher in ``ckpt``. ``previous``: (labels, fingerprint) of the labels the teacher
    learned from (the keymasks; the last round's dense labelset in later rounds): their identities cut a teacher
    tube that holds several apart (``label.split_apart``) or switches objects (``label.one_identity``), and they
    are kept where the teacher misses them (``label.keep_iou``). ``sparse``: they are the sparse keymasks (round 1),
    whose masks the teacher's tubes take on their frames with ``label.keymask_frames``."""
    keep = previous if (cfg.label.keep_iou is not None or cfg.label.one_identity or cfg.label.split_apart
                        or (sparse and cfg.label.keymask_frames)) else None
    settings = label_settings(cfg, sparse=sparse)
    ranking = {k: settings.pop(k) for k in RANKING_KEYS if k in settings}
    fp = fingerprint("label", VERSION, data_fp, sha256_file(ckpt), settings, *([keep[1]] if keep is not None else []))
    # The ranking keys change the instances' scores, never a mask. With hard class targets
    # (final.score_targets=false) training reads the masks only (tests/test_rescore.py): the labelset's folder is
    # named by every setting, the fingerprint a model trained on it inherits by the masks' settings, so ranking
    # another way re-ranks without training again. With the scores as class targets (the default) the model
    # learns the ranking, and inherits the folder's fingerprint.
    folder_fp = fingerprint(fp, ranking) if ranking else fp
    root = artifact_dir(cfg, "label", folder_fp)
    model, crop = load_model(cfg, ckpt, "teacher")
    labels = predictions(cfg, ds, model, crop, cfg.label.score_thr, cfg.label.nms_iou, "label", folder_fp, root,
                         refine=refines(cfg, "label"), previous=keep[0] if keep else None, sparse=sparse)
    if keep is not None:
        kept = [v.name for v in labels for i in v.instances if i.extra.get("kept")]
        log.info("label: %d instance(s) of the labels the teacher learned from kept, no tube of it matching them "
                 "(label.keep_iou=%s)%s", len(kept), cfg.label.keep_iou,
                 f", in {sorted(set(kept))[:10]}" if kept else "")
        if kept and len(kept) == sum(len(v.instances) for v in labels):
            log.warning("label: no prediction of the teacher reached label.score_thr=%s; the dense labelset is only "
                        "the %d earlier labels kept (label.keep_iou); train longer (train.max_steps) or lower "
                        "label.score_thr", cfg.label.score_thr, len(kept))
    return StageOutput(labels, root, folder_fp if scores_as_targets(cfg, "dense") else fp)
