"""Typed schemas for every config group. Hydra merges ``conf/*.yaml`` onto these, so a typo in a key
(``data.shortside=3``) or a wrong type (``data.short_side=abc``) fails at start-up with the key named, and
``validate_config`` checks ranges and combinations before any work starts.

Registration is a function, not an import side effect: ``register_configs()`` is called by the entry point
and by the test fixtures.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, List, Optional

from s2d.choices import (DataKind, Device, FaultKind, FinalInit, ImportFormat, MaskFeatures, MaskSource, MonitorMode,
                         OnError, WandbMode)
from s2d.data.demo import DemoConfig
from s2d.data.shots import ShotParams
from s2d.errors import ConfigError
from s2d.keymasks.discover import KeymaskParams
from s2d.lit.params import DistillParams
from s2d.losses.criterion import LossParams
from s2d.masks.motion import MotionParams
from s2d.models.params import ModelParams
from s2d.tracking.params import FlowParams, TrackerParams


@dataclass
class DataSchema:
    kind: DataKind = DataKind.demo     # demo | ytvis | davis | frames | mp4 | sav
    root: Optional[str] = None         # data set folder (demo: generated under paths.artifacts when null)
    ann_file: Optional[str] = None     # ytvis: the json (default <root>/annotations.json)
    short_side: Optional[int] = None   # working resolution: short side in pixels
    max_side: Optional[int] = None     # ... and/or cap on the long side
    max_videos: Optional[int] = None
    videos: Optional[List[str]] = None
    stride: int = 1                    # keep every stride-th frame of a video (long mp4s)
    max_frames: Optional[int] = None   # ... and at most this many frames per video
    # ytvis: a folder with every frame of each video (YouTube-VIS's <split>_all_frames/JPEGImages), which the motion
    # masks and the tracker read between the json's frames, every 5th (masks.full_rate, tracker.full_rate)
    all_frames: Optional[str] = None
    demo: DemoConfig = field(default_factory=DemoConfig)  # the generator's own parameters
    shots: ShotParams = field(default_factory=ShotParams)  # videos cut at shot cuts (s2d/data/shots.py)


@dataclass
class PathsSchema:
    output_root: str = "outputs"
    artifacts: str = "${paths.output_root}/artifacts"  # stage outputs, one folder per (stage, fingerprint)
    runs: str = "${paths.output_root}/runs"            # one stable folder per run id (no timestamps)


@dataclass
class MasksSchema:
    source: MaskSource = MaskSource.maskcut  # maskcut | motion | motion_maskcut | import
    features: MaskFeatures = MaskFeatures.color  # color (weight-free) | dino
    max_masks: int = 10                # K masks per frame at most
    min_score: float = 0.35            # masks scoring lower are dropped (the method's detector threshold)
    min_area: float = 0.002            # fraction of the frame a mask keeps after painting
    # motion_maskcut: a MaskCut mask joins the motion masks when at least this share of it lies outside them (the
    # part outside is added; s2d.masks.motion.merge_with_maskcut). 0.25 also finds objects half hidden by a moving
    # one: better keymasks, a worse final model on the demo (docs/RESULTS.md, "Tried and not adopted")
    maskcut_outside: float = 0.5
    patch: int = 8                     # feature grid cell in pixels (weight-free features)
    tau: float = 0.2                   # affinity threshold of the normalized cut (MaskCut)
    cuts: int = 4                      # normalized cuts per frame (one object each)
    refine: bool = True                # GrabCut refinement of the patch masks to pixel accuracy
    dino_checkpoint: Optional[str] = None
    dino_arch: str = "vit_small"
    import_path: Optional[str] = None  # COCO json or folder of label-map PNGs
    import_format: ImportFormat = ImportFormat.coco  # coco | png
    motion: MotionParams = field(default_factory=MotionParams)  # masks from motion (source motion*)
    # motion from the recording's frames between the video's, where the data has them (SA-V's 24 fps between its
    # annotated frames, data.all_frames, data.stride on image folders; s2d/data/full_rate.py)
    full_rate: bool = True


TrackerSchema = TrackerParams  # every tracker setting is TrackerParams' (s2d/tracking/params.py)
FlowSchema = FlowParams        # the dense flow the motion masks and the flow tracker share (the same file)


@dataclass
class KeymasksSchema(KeymaskParams):  # every discovery setting is KeymaskParams' (s2d/keymasks/discover.py)
    baseline_iou: float = 0.5          # the IoU-linker baseline reported beside the keymasks
    overlays: bool = True              # write an overlay gif per video


@dataclass
class EvalSchema:
    predictions: Optional[str] = None  # s2d eval: a YouTube-VIS results json
    out: Optional[str] = None          # where metrics.json/metrics.md go (default: the run folder)
    davis_jf: bool = True              # also compute DAVIS J&F
    workers: Optional[int] = None      # processes for video AP (null: automatic, 1: no worker processes)


@dataclass
class PredictSchema:  # s2d predict: a (pretrained) model on a data set, official post-processing
    out: Optional[str] = None          # the YouTube-VIS results json (default: <run>/predictions.json)
    topk: int = 10                     # instances per video: the top-k queries by score, as the official model
    # auto (cuda when available) | cpu | cuda: where every inference runs (dense labelset, the final model's
    # predictions, s2d demo, s2d predict)
    device: Device = Device.auto


ModelSchema = ModelParams  # every model setting is defined in s2d/models/params.py


LossSchema = LossParams  # every loss setting is defined in s2d/losses/criterion.py


@dataclass
class OptimSchema:
    lr: float = 1.0e-3
    weight_decay: float = 0.05
    # the backbone's rate, a multiple of lr (the method's 0.1, for a pretrained backbone). 1.0 for the tiny model
    # trained from scratch: demo final AP50 / J&F 98.2 / 86.2 -> 100.0 / 95.5 (seed 0), but on 15 real DAVIS clips
    # the seeds split (J&F 41.6 -> 32.6 and 38.8 -> 44.6; docs/RESULTS.md, "Why the learned stages lost their
    # labels"); kept at 0.1
    backbone_lr_mult: float = 0.1
    milestones: List[int] = field(default_factory=list)  # steps where the lr is multiplied by gamma
    gamma: float = 0.1


@dataclass
class TrainSchema:
    max_steps: int = 1200              # per learning stage (the CPU demo schedule; experiment=paper: 32k)
    batch_size: int = 4                # global, over all processes
    clip_length: int = 3
    # data-loader worker processes: the clips and the learned numbers are the same with any count (a worker runs on
    # one thread, and the augmentation does not depend on the thread count); on 2 cores 0 is fastest
    num_workers: int = 0
    # decoded training frames kept in memory, per process: a run reads every frame many times, and decoding it
    # again is a large share of a CPU step on small data (0: no cache). Data-loader workers are forked anew each
    # epoch, so with num_workers > 0 a worker's cache lasts one epoch (a frame is in ~clip_length clips of it)
    frame_cache_mb: float = 1024
    accelerator: str = "auto"
    devices: Any = 1
    num_nodes: int = 1
    strategy: str = "auto"             # e.g. ddp, ddp_spawn
    precision: str = "32-true"         # bf16-mixed / 16-mixed on GPUs (the method trains with AMP)
    # false | true | warn: PyTorch's deterministic kernels. On CUDA true becomes warn (s2d/lit/determinism.py:
    # the point-sampled mask loss's grid_sample backward has no deterministic CUDA kernel)
    deterministic: Any = False
    gradient_clip_val: float = 0.01
    log_every_n_steps: int = 5
    checkpoint_every_n_steps: int = 50  # ~15 s of CPU training: what SIGKILL can cost; saving is ~0.1 s
    crop_size: List[int] = field(default_factory=lambda: [96, 128])  # H, W after augmentation
    crop_scale: List[float] = field(default_factory=lambda: [0.6, 1.0])
    rotation: float = 15.0
    fallback_radius: int = 20
    on_error: OnError = OnError("raise")  # unreadable frame in a training clip: raise | substitute (quarantine.jsonl)
    substitute_retries: int = 3        # with on_error=substitute: at most this many stand-in clips per clip
    val_every_n_steps: Optional[int] = None  # video AP of the EMA teacher every N steps (needs ground truth)
    val_videos: Optional[int] = None   # validate on the first N videos (null: all)
    monitor: Optional[str] = None      # e.g. val/AP: also keep best-step<k>.ckpt, the best value so far
    monitor_mode: MonitorMode = MonitorMode.max
    # the learned stages (distill, dense labelset, final model) learn from the recording's frames between the
    # video's, where keymask discovery ran over them (masks=motion, s2d/data/full_rate.py): the keymasks of every
    # frame, and the model labels and predicts on every frame; their labelsets are scored on the video's frames.
    # SA-V's layout, 5 seeds: final model AP75 10.0 -> 25.0, J&F +0.7, AP50 within the seeds' spread
    # (docs/RESULTS.md, "The learned stages on the recording")
    full_rate: bool = True


DistillSchema = DistillParams  # every distillation setting is defined in s2d/lit/params.py


@dataclass
class LabelSchema:
    # teacher queries kept for the dense labelset. 0.5 for the CPU schedule: a tiny model trained from scratch for
    # 1200 steps is less sure of itself than the method's pretrained one, and at 0.75 it drops real objects
    # (demo, 3 seeds: dense AP50 72.4 vs 60.2, docs/RESULTS.md); experiment=paper uses the method's 0.75
    score_thr: float = 0.5
    nms_iou: Optional[float] = 0.75    # tube NMS at this tube IoU (null: no NMS)
    # frames resized by this factor for the model; null: the scale the model trained at (train.crop_size over the
    # share of the frame a crop covers, s2d/inference/scale.py; 1 on the demo, 0.89 with data=davis's crops)
    input_scale: Optional[float] = None
    window: int = 12                   # frames per inference window (long videos are clip-stitched)
    overlap: int = 2                   # frames shared by consecutive windows, used to link them
    link_iou: float = 0.5
    eval_score_thr: float = 0.05       # the final model's predictions kept for evaluation
    # each inference window is also seen mirrored left to right, and the two passes' queries paired by mask IoU are
    # averaged (s2d/inference/flip.py): the dense labelset, the final model's predictions and s2d demo, at twice
    # the inference time. Off: with the GrabCut refinement it moved the DAVIS clips' J&F by -0.9 to +0.3 over 3
    # seeds (docs/RESULTS.md, "Tried and not adopted")
    flip: bool = False
    # GrabCut each mask of the dense labelset on its frame (s2d/masks/refine.py; its core kept, the boundary moved
    # at most 8 px): the model's masks are coarse at the boundary, its labels need not be (3 seeds, with
    # final.refine, J&F of the final model: demo 56.6 -> 73.6, DAVIS 46.5 -> 57.3, docs/RESULTS.md). The final
    # model's predictions: final.refine.
    # experiment=paper: false (the method's dense labelset is the teacher's masks as they are)
    refine: bool = True
    # CutLER's self-training merge (its IoU 0.5): an instance of the labels the teacher learned from (the keymasks;
    # in round r > 1 the last round's dense labelset) that no teacher tube matches at tube IoU >= keep_iou, over
    # the instance's own frames, is kept in the dense labelset, scored below every tube
    # (s2d/inference/keep_labels.py), so that an object the teacher lost is still taught to the final model (demo,
    # 3 seeds: docs/RESULTS.md). null: the teacher's tubes only (experiment=paper, the method's dense labelset).
    keep_iou: Optional[float] = 0.5
    # a teacher tube whose masks match one instance of those labels on some frames and another on others, the two
    # visible at the same time, holds two objects in turn (a query that handed over from an object leaving the
    # view to one entering it): it keeps only the frames of the instance it matches most
    # (s2d/inference/identity.py; docs/RESULTS.md). experiment=paper: false (the method's dense labelset)
    one_identity: bool = True
    # a teacher tube whose mask on a frame falls into separate parts that hold different instances of those labels
    # (half of an instance's mask inside a part) holds those objects apart at once (a query covering two children
    # or several walkers): it is split into one tube per instance, each part of each frame going to one of them by
    # the labels and by overlap with the neighbouring frames (s2d/inference/apart.py; docs/RESULTS.md). Touching
    # objects make one part and are left together. experiment=paper: false (the method's dense labelset)
    split_apart: bool = True
    # the score tubes are ranked by in the dense labelset and the final model's predictions
    # (s2d/inference/rescore.py; thresholds and NMS still go by the foreground probability, so no mask changes and
    # a model trained on the labelset is not trained again when these change):
    # mask_score multiplies it by the mean mask probability inside the mask (Mask2Former's instance score; not
    # adopted: demo final AP50 94.0 -> 94.0, DAVIS AP 12.5 -> 10.8 on seed 0);
    # overlap_decay by the share of the tube's pixels no higher-ranked tube of its video covers, so duplicates and
    # fragments rank below the true tubes of other videos (3 seeds, final AP / AP50: demo 89.0 / 94.0 -> 91.0 / 95.6,
    # DAVIS 17.5 / 60.8 -> 17.8 / 62.2; docs/RESULTS.md). experiment=paper: false (VideoMask2Former's ranking)
    # fragments_last: the decay goes through the tubes by that score, except that a tube repeating a longer one on
    # most of its own frames (a query that held an object for one window and did not link on) comes after it, so
    # the fragment is ranked down, not the tube that holds the object throughout (s2d/inference/rescore.py). A
    # tube that switches objects would pass for the container of the second object's own tube; one_identity cuts
    # those first. Demo, 3 seeds, both on against both off: dense AP50 90.5 -> 97.7, final 93.7 -> 96.4 (alone,
    # the final model lost: 93.7 -> 92.2; docs/RESULTS.md). DAVIS clips: no tube is a fragment, no change.
    mask_score: bool = False
    overlap_decay: bool = True
    fragments_last: bool = True
    # a teacher tube that matches a keymask instance (tube IoU >= 0.5 over its own frames) takes the instance's
    # masks on its keymask frames, the teacher's own elsewhere (s2d/inference/keymask_frames.py; round 1 only):
    # on real video the tiny teacher's masks there are worse than the keymasks (J 0.603-0.617 vs 0.640 on the
    # DAVIS clips, 3 seeds), and with the key the final model gains J&F and AR10 (DAVIS, 3 seeds: 58.4 -> 59.8,
    # 30.7 -> 36.0, AP50 72.1 -> 70.9; 15 clips outside the development set, seed 1: J&F 35.5 -> 37.3, AP50
    # 43.3 -> 46.1; docs/RESULTS.md). data=demo: false (its teacher's masks are the better ones, 0.975 vs 0.940).
    # experiment=paper: false (the method's dense labelset)
    keymask_frames: bool = True
    # the tubes that took a keymask instance's masks (keymask_frames) go first in the overlap decay, ahead of
    # tubes the keymasks do not support: of two tubes on one object, the duplicate is ranked down, not the tube
    # the point tracker checked (s2d/inference/rescore.py). Not the default: on 15 DAVIS clips outside the
    # development set (2 seeds) the dense labelset gains (AP50 +2.6 / +1.4, J&F +4.3 / +2.7) and the final model
    # trained on it loses (AP50 -15.2 / -9.2, J&F -1.7 / +0.6); docs/RESULTS.md, "Tried and not adopted"
    keymask_first: bool = False


@dataclass
class DemoVideoSchema:
    video: Optional[str] = None        # s2d demo VIDEO.mp4 (a video file, a folder of them, or of frame folders)
    checkpoint: Optional[str] = None   # default: the newest <run folder>/checkpoints/final-*/last.ckpt
    out: Optional[str] = None          # default: <run folder>/demo/<video>_s2d.mp4
    # tubes drawn from this score. A final model taught its labelset's scores (final.score_targets) scores a true
    # object that another covers in part, or a kept keymask instance, below 0.5: on the demo's 3 seeds 0.5 drew
    # 29 of the 36 objects, 0.3 drew 33 and nothing more elsewhere (2 false tubes either way; docs/RESULTS.md)
    score_thr: float = 0.3
    short_side: int = 240
    max_frames: Optional[int] = None
    fps: float = 10.0
    shots: bool = True                 # objects followed within each shot, the video cut where data.shots finds cuts


@dataclass
class LoggerSchema:
    wandb: bool = False                # W&B beside the CSV logger (the CSV logger is always on)
    project: str = "s2d"
    entity: Optional[str] = None
    mode: WandbMode = WandbMode.offline  # offline | online | disabled (WANDB_MODE, if set, wins)


@dataclass
class FaultSchema:
    # raise | nan | nan_weights | overflow | sigusr1 | sigterm | sigkill (debug=fault). A string checked against
    # FaultKind in validate_config, not the Enum: the command line reads a bare `nan` as a float, which a string key
    # turns back into "nan" but an Enum key refuses
    kind: Optional[str] = None
    step: int = 3
    rank: int = 0


@dataclass
class ResumeSchema:
    checkpoint: Optional[str] = None   # resume a learning stage from this checkpoint (default: its own folder)
    allow_config_change: bool = False  # accept a checkpoint whose model config differs from this run's


@dataclass
class TableSchema:
    root: Optional[str] = None         # folder of finished runs (e.g. outputs/multirun/<name>)
    row: str = "sparse keymasks"       # which metrics row of each run goes into the table
    metrics: List[str] = field(default_factory=lambda: ["AP", "AP50", "AP75", "AR10"])
    any_version: bool = False          # include runs made by another code version
    # another row of the same runs (e.g. "dense labelset (distilled teacher)" under row="final model"): a second
    # table gives the row minus it, run by run, as mean ± std over seeds and in how many seeds it is >= 0
    baseline: Optional[str] = None


@dataclass
class FinalSchema:  # stage "final" (no YAML group: these defaults are the only definition)
    rounds: int = 1                    # self-training rounds: teacher -> dense labelset -> student, N times
    # where each round's student and teacher start: teacher (the weights of the teacher that made its labels) or
    # scratch (the weights the distill stage starts from: model.pretrained, else random), so the model learns
    # the refined, cleaned labels and nothing of the teacher's own raw masks. Not adopted: final AP / AP50 / J&F,
    # DAVIS development clips (3 seeds) 25.6 / 69.5 / 59.8 -> 23.3 / 65.0 / 59.7, 15 clips outside them (seed 0)
    # 17.8 / 52.1 / 43.6 -> 13.4 / 36.8 / 43.1 (docs/RESULTS.md, "Tried and not adopted")
    init: FinalInit = FinalInit.teacher
    # steps before the teacher's term in the final stage; null: distill.distill_warmup. The final stage's teacher
    # starts as the distilled one, yet 0 measured worse on the demo than the distill stage's 600 (docs/RESULTS.md)
    distill_warmup: Optional[int] = None
    # the final stage's learning rate; null: optim.lr. For fine-tuning from a trained teacher with another solver;
    # a tenth of the CPU schedule's rate measured worse on the demo (final AP50 63.6 vs 68.2, docs/RESULTS.md)
    lr: Optional[float] = None
    # the steps of the final stage where its learning rate is multiplied by optim.gamma; null: optim.milestones.
    # The method's step (x0.1 at 63 % of the schedule, [760] of 1200) measured level: DAVIS clips, final J&F 59.8 ->
    # 60.4 over 3 seeds, 43.6 -> 43.7 on 15 clips outside them (docs/RESULTS.md, "Tried and not adopted")
    milestones: Optional[List[int]] = None
    # the foreground probability from which a query of the final stage's EMA teacher is a target of its term; null:
    # distill.teacher_score. Taught the labelset's scores (score_targets), the final teacher stays under the
    # method's 0.75 on real video, and the term has no target (the report says so). 0.5 (label.score_thr) makes it
    # run; not adopted: final J&F, one seed each, 15 DAVIS clips outside the development set +1.5 and 0.0, the
    # development clips -1.4, demo AP50 98.2 -> 91.1 (docs/RESULTS.md, "Tried and not adopted")
    teacher_score: Optional[float] = None
    # GrabCut each mask of the final model's predictions on its frame, as label.refine does for the labels it learned
    # from: without it the report compares the model's raw masks with refined labels (demo, 3 seeds, J&F of the
    # final model 65.2 -> 72.7 when first measured, docs/RESULTS.md). experiment=paper: false (the masks as they are)
    refine: bool = True
    # an empty frame of a teacher tube in the dense labelset is taught as absent (the teacher saw that frame and no
    # object there); false: Temporal DropLoss drops it like a frame without a keymask. Kept keymask instances
    # (label.keep_iou) stay sparse either way. Demo, 3 seeds: final AP50 89.5 -> 94.4, J&F 87.5 -> 91.3
    # (docs/RESULTS.md). experiment=paper: false (the method's rule drops every empty frame)
    teach_absent: bool = True
    # true: except the frames label.one_identity cut from a tube (its query held another object there, which says
    # nothing of this one), dropped like a keymask instance's empty frames. Not adopted: demo, 5 seeds, final
    # AP / AP50 / J&F 88.8 / 97.6 / 91.2 against 89.2 / 97.7 / 91.0 (docs/RESULTS.md, "Tried and not adopted")
    drop_cut_frames: bool = False
    # the class target of each dense labelset tube is its score in the labelset (the teacher's confidence, as ranked
    # by label.*), not 1: soft pseudo-labels, so that a tube the teacher was unsure of is not learned as a sure
    # object. Final model AP50, 3 seeds: DAVIS clips 62.2 -> 74.7, demo 95.6 -> 97.0 (J&F 90.9 -> 89.1;
    # docs/RESULTS.md). experiment=paper: false (the method's hard labels: every tube taught as certain)
    score_targets: bool = True
    # with score_targets: the class target of a teacher tube is the teacher's foreground probability for it, before
    # label.* ranked it (the overlap decay takes a duplicate's score to near 0), instead of its ranked score. The
    # ranking orders a video's tubes for video AP; the matcher cannot tell two tubes with the same masks apart, and
    # taught the ranked scores, two queries on one object learn "object" and "no object" from the same mask.
    # Kept keymask instances (label.keep_iou) keep their labelset score either way. Not adopted: 15 DAVIS clips
    # outside the development set, 2 seeds, final AP50 42.3 -> 34.4, J&F 40.2 -> 41.5 (its false tubes come first:
    # docs/RESULTS.md, "Tried and not adopted")
    teacher_scores: bool = False
    # a dense labelset target whose masks over a training clip's frames repeat those of a higher-scored target of
    # the clip (clip IoU >= this; label.nms_iou's 0.75 is the value tried) is left out of that clip, so its query is
    # taught "no object" and is free for another object (s2d/data/repeated_targets.py). Crowded video: on a campus
    # clip (seed 0) the final model held 10 walker tubes from score 0.3 instead of 4, and one tube held walkers apart
    # on 8 % of its frames instead of 20 %. Not the default: 3 seeds, final AP / AP50 / J&F, demo 95.2 / 100.0 /
    # 92.4 -> 91.0 / 97.0 / 91.1, DAVIS clips 24.0 / 76.0 / 57.9 -> 22.3 / 74.1 / 57.6 (docs/RESULTS.md). null: every
    # tube is a target of every clip it is in (the method's targets)
    repeat_iou: Optional[float] = None


@dataclass
class S2DConfig:
    stage: str = "run"
    name: str = "default"
    seed: int = 0
    run_id: str = "${name}-seed${seed}"
    progress: bool = True
    data: DataSchema = field(default_factory=DataSchema)
    paths: PathsSchema = field(default_factory=PathsSchema)
    masks: MasksSchema = field(default_factory=MasksSchema)
    tracker: TrackerSchema = field(default_factory=TrackerSchema)
    flow: FlowSchema = field(default_factory=FlowSchema)
    keymasks: KeymasksSchema = field(default_factory=KeymasksSchema)
    eval: EvalSchema = field(default_factory=EvalSchema)
    predict: PredictSchema = field(default_factory=PredictSchema)
    table: TableSchema = field(default_factory=TableSchema)
    model: ModelSchema = field(default_factory=ModelSchema)
    loss: LossSchema = field(default_factory=LossSchema)
    optim: OptimSchema = field(default_factory=OptimSchema)
    train: TrainSchema = field(default_factory=TrainSchema)
    distill: DistillSchema = field(default_factory=DistillSchema)
    label: LabelSchema = field(default_factory=LabelSchema)
    final: FinalSchema = field(default_factory=FinalSchema)
    demo: DemoVideoSchema = field(default_factory=DemoVideoSchema)
    logger: LoggerSchema = field(default_factory=LoggerSchema)
    fault: FaultSchema = field(default_factory=FaultSchema)
    resume: ResumeSchema = field(default_factory=ResumeSchema)


def register_configs() -> None:
    from hydra.core.config_store import ConfigStore

    cs = ConfigStore.instance()
    cs.store(name="s2d_schema", node=S2DConfig)


def _require(cond: bool, key: str, msg: str) -> None:
    if not cond:
        raise ConfigError(key, msg)


def _increasing_steps(steps) -> bool:
    """Whether learning-rate milestones are strictly increasing steps >= 1."""
    return all(m >= 1 for m in steps) and list(steps) == sorted(set(steps))


def validate_config(cfg: Any) -> None:
    """Range and combination checks that a type alone cannot express (a choice outside its Enum already fails when
    the config is composed). Raises ConfigError naming the key."""
    d = cfg.data
    _require(d.kind == "demo" or d.root is not None, "data.root",
             f"data.kind={d.kind} needs data.root (the folder of your videos)")
    _require(d.stride >= 1, "data.stride", f"must be >= 1, got {d.stride}")
    for key in ("short_side", "max_side", "max_videos", "max_frames"):
        v = getattr(d, key)
        _require(v is None or v > 0, f"data.{key}", f"must be positive, got {v}")
    sh = d.shots
    _require(sh.min_change >= 0, "data.shots.min_change", f"must be >= 0, got {sh.min_change}")
    _require(sh.ratio >= 1, "data.shots.ratio", f"must be >= 1, got {sh.ratio}")
    _require(sh.window >= 1, "data.shots.window", f"must be >= 1, got {sh.window}")
    _require(sh.min_len >= 2, "data.shots.min_len", f"must be >= 2, got {sh.min_len}")
    demo = d.demo
    _require(demo.num_videos > 0 and demo.num_frames > 1, "data.demo", "needs >= 1 video and >= 2 frames")
    _require(16 <= demo.height <= 2048 and 16 <= demo.width <= 2048, "data.demo.height",
             "frame size must be within 16..2048")
    _require(0 <= demo.min_objects <= demo.max_objects, "data.demo.min_objects", "must be <= max_objects")
    m = cfg.masks
    mo = m.motion
    for key in ("min_residual", "residual_factor", "fb_threshold", "ransac_px"):
        _require(mo[key] > 0, f"masks.motion.{key}", f"must be positive, got {mo[key]}")
    for key in ("smooth_beta", "border", "max_moving"):
        _require(0.0 <= mo[key] < 1.0, f"masks.motion.{key}", f"must be within [0, 1), got {mo[key]}")
    _require(-1.0 <= mo.min_score <= 1.0, "masks.motion.min_score", f"must be within [-1, 1], got {mo.min_score}")
    for key in ("grid", "band", "grabcut_iters", "ring", "max_movers", "max_gap", "window"):
        _require(mo[key] >= 1, f"masks.motion.{key}", f"must be >= 1, got {mo[key]}")
    _require(mo.split_px >= 0, "masks.motion.split_px", f"must be >= 0 (0: never split), got {mo.split_px}")
    _require(0.0 <= mo.min_moving_frames <= 1.0, "masks.motion.min_moving_frames",
             f"must be within [0, 1], got {mo.min_moving_frames}")
    for key in ("split_min", "split_fit"):
        _require(0.0 < mo[key] <= 1.0, f"masks.motion.{key}", f"must be within (0, 1], got {mo[key]}")
    _require(1 <= m.max_masks <= 100, "masks.max_masks", f"must be within 1..100, got {m.max_masks}")
    _require(0.0 <= m.min_score <= 1.0, "masks.min_score", f"must be within [0, 1], got {m.min_score}")
    _require(0.0 <= m.min_area < 1.0, "masks.min_area", f"must be within [0, 1), got {m.min_area}")
    _require(0.0 < m.maskcut_outside <= 1.0, "masks.maskcut_outside",
             f"must be within (0, 1], got {m.maskcut_outside}")
    _require(0.0 < m.tau < 1.0, "masks.tau", f"must be within (0, 1), got {m.tau}")
    _require(m.patch >= 2, "masks.patch", f"must be >= 2, got {m.patch}")
    _require(1 <= m.cuts <= 20, "masks.cuts", f"must be within 1..20, got {m.cuts}")
    _require(m.source != "import" or m.import_path is not None, "masks.import_path",
             "masks.source=import needs masks.import_path")
    t = cfg.tracker
    _require(t.window >= 3 and t.levels >= 0, "tracker.window", "window must be >= 3 and levels >= 0")
    _require(t.fb_threshold > 0, "tracker.fb_threshold", f"must be positive, got {t.fb_threshold}")
    _require(0.0 <= t.fb_relative <= 1.0, "tracker.fb_relative", f"must be within [0, 1], got {t.fb_relative}")
    # DIS stops at the coarsest level of its pyramid; level 3 is an eighth of the frame (30 px rows at 240p)
    _require(0 <= cfg.flow.finest_scale <= 3, "flow.finest_scale",
             f"must be a pyramid level within [0, 3] (0: the frames' resolution), got {cfg.flow.finest_scale}")
    k = cfg.keymasks
    for key in ("gamma_thr", "vis_eps", "member_frac", "range_frac", "lambda_j", "one_to_many_j", "baseline_iou"):
        v = k[key]
        _require(0.0 <= v <= 1.0, f"keymasks.{key}", f"must be within [0, 1], got {v}")
    _require(k.grid >= 2 and k.vis_min_samples >= 1, "keymasks.grid", "grid must be >= 2, min_samples >= 1")
    _require(k.window == 0 or k.window >= 8, "keymasks.window",
             f"must be 0 (the whole video at once) or at least 8 frames, got {k.window}")
    _require(k.min_window == 0 or k.min_window >= 8, "keymasks.min_window",
             f"must be 0 (off) or at least 8 frames, got {k.min_window}")
    _require(k.stitch_gap >= 0, "keymasks.stitch_gap", f"must be >= 0 (0: off), got {k.stitch_gap}")
    _require(1 <= k.prop_grid_min <= k.prop_grid_max, "keymasks.prop_grid_min", "must be within 1..prop_grid_max")
    lo = cfg.loss
    _require(0.0 <= lo.drop_rate <= 1.0, "loss.drop_rate", f"must be within [0, 1], got {lo.drop_rate}")
    _require(lo.num_points >= 1, "loss.num_points", "must be >= 1")
    _require(cfg.model.hidden_dim % cfg.model.nheads == 0, "model.hidden_dim",
             f"{cfg.model.hidden_dim} is not divisible by model.nheads={cfg.model.nheads}")
    _require(cfg.predict.topk >= 1, "predict.topk", f"must be >= 1, got {cfg.predict.topk}")
    _require(cfg.model.size_divisibility >= 0, "model.size_divisibility",
             f"must be >= 0 (0: no padding), got {cfg.model.size_divisibility}")
    _require(0.0 <= cfg.model.dropout < 1.0, "model.dropout", f"must be within [0, 1), got {cfg.model.dropout}")
    _require(cfg.optim.lr > 0, "optim.lr", f"must be positive, got {cfg.optim.lr}")
    _require(cfg.train.batch_size >= 1 and cfg.train.max_steps >= 1, "train.batch_size", "batch and steps >= 1")
    _require(0.0 <= cfg.distill.ema_momentum < 1.0, "distill.ema_momentum", "must be within [0, 1)")
    _require(0.0 <= cfg.distill.teacher_score <= 1.0, "distill.teacher_score", "must be within [0, 1]")
    _require(cfg.eval.workers is None or cfg.eval.workers >= 1, "eval.workers",
             f"must be >= 1 or null (automatic), got {cfg.eval.workers}")
    _require(cfg.train.substitute_retries >= 0, "train.substitute_retries", "must be >= 0")
    tr = cfg.train
    try:
        from s2d.lit.determinism import parse

        parse(tr.deterministic)
    except ValueError as e:
        raise ConfigError("train.deterministic", str(e)) from None
    _require(tr.val_every_n_steps is None or tr.val_every_n_steps >= 1, "train.val_every_n_steps", "must be >= 1")
    _require(tr.monitor is None or tr.val_every_n_steps is not None, "train.monitor",
             f"'{tr.monitor}' is only logged with validation: set train.val_every_n_steps")
    la = cfg.label
    _require(0.0 <= la.score_thr <= 1.0, "label.score_thr", f"must be within [0, 1], got {la.score_thr}")
    _require(la.window >= 1 and 0 <= la.overlap < la.window, "label.overlap", "must be within 0..window-1")
    _require(la.nms_iou is None or 0.0 <= la.nms_iou <= 1.0, "label.nms_iou",
             f"must be within [0, 1] or null (no NMS), got {la.nms_iou}")
    _require(la.input_scale is None or 0.05 <= la.input_scale <= 8, "label.input_scale",
             f"must be within [0.05, 8] or null (the scale the model trained at), got {la.input_scale}")
    _require(0.0 <= la.link_iou <= 1.0, "label.link_iou", f"must be within [0, 1], got {la.link_iou}")
    _require(la.keep_iou is None or 0.0 < la.keep_iou <= 1.0, "label.keep_iou",
             f"must be within (0, 1] or null (keep no earlier label), got {la.keep_iou}")
    _require(not la.keymask_first or (la.keymask_frames and la.overlap_decay), "label.keymask_first",
             "ranks the tubes that label.keymask_frames gives keymasks first in the overlap decay: it needs "
             "label.keymask_frames=true (off on the demo) and label.overlap_decay=true")
    _require(0.0 <= la.eval_score_thr <= 1.0, "label.eval_score_thr",
             f"must be within [0, 1], got {la.eval_score_thr}")
    _require(tr.clip_length >= 1, "train.clip_length", f"must be >= 1, got {tr.clip_length}")
    _require(tr.num_workers >= 0, "train.num_workers", f"must be >= 0, got {tr.num_workers}")
    _require(tr.frame_cache_mb >= 0, "train.frame_cache_mb", f"must be >= 0 (0: no cache), got {tr.frame_cache_mb}")
    _require(len(tr.crop_size) == 2 and min(tr.crop_size) >= 32, "train.crop_size",
             f"must be [H, W] with both >= 32, got {list(tr.crop_size)}")
    for key in ("class_weight", "mask_weight", "dice_weight", "cutler_iou"):
        _require(lo[key] >= 0, f"loss.{key}", f"must be >= 0, got {lo[key]}")
    _require(0.0 <= lo.no_object_weight <= 1.0, "loss.no_object_weight",
             f"must be within [0, 1], got {lo.no_object_weight}")
    op = cfg.optim
    _require(op.weight_decay >= 0, "optim.weight_decay", f"must be >= 0, got {op.weight_decay}")
    _require(op.backbone_lr_mult >= 0, "optim.backbone_lr_mult", f"must be >= 0, got {op.backbone_lr_mult}")
    _require(op.gamma > 0, "optim.gamma", f"must be positive, got {op.gamma}")
    _require(_increasing_steps(op.milestones), "optim.milestones",
             f"must be increasing steps >= 1, got {list(op.milestones)}")
    di = cfg.distill
    _require(di.distill_weight >= 0 and di.distill_class_weight >= 0, "distill.distill_weight",
             "distill weights must be >= 0")
    _require(not cfg.final.teacher_scores or cfg.final.score_targets, "final.teacher_scores",
             "chooses which score final.score_targets teaches: it needs final.score_targets=true")
    _require(cfg.final.distill_warmup is None or cfg.final.distill_warmup >= 0, "final.distill_warmup",
             f"must be >= 0 steps or null, got {cfg.final.distill_warmup}")
    _require(cfg.final.lr is None or cfg.final.lr > 0, "final.lr", f"must be positive or null, got {cfg.final.lr}")
    fm = cfg.final.milestones
    _require(fm is None or _increasing_steps(fm), "final.milestones",
             f"must be increasing steps >= 1 or null, got {None if fm is None else list(fm)}")
    _require(cfg.final.teacher_score is None or 0.0 <= cfg.final.teacher_score <= 1.0, "final.teacher_score",
             f"must be within [0, 1] or null, got {cfg.final.teacher_score}")
    _require(1 <= cfg.final.rounds <= 20, "final.rounds", f"must be within 1..20, got {cfg.final.rounds}")
    _require(cfg.final.repeat_iou is None or 0.0 < cfg.final.repeat_iou <= 1.0, "final.repeat_iou",
             f"must be within (0, 1] or null, got {cfg.final.repeat_iou}")
    _require(di.distill_warmup >= 0, "distill.distill_warmup", f"must be >= 0 steps, got {di.distill_warmup}")
    if di.distill_weight > 0 and di.distill_warmup >= cfg.train.max_steps:
        import logging

        logging.getLogger("s2d").warning("distill.distill_warmup=%d >= train.max_steps=%d: the teacher's term never "
                                         "runs", di.distill_warmup, cfg.train.max_steps)
    _require(cfg.fault.kind is None or cfg.fault.kind in FaultKind.values(), "fault.kind",
             f"'{cfg.fault.kind}' is not {FaultKind.names()}")
    _require(tr.gradient_clip_val >= 0, "train.gradient_clip_val", f"must be >= 0, got {tr.gradient_clip_val}")
    _require(tr.log_every_n_steps >= 1 and tr.checkpoint_every_n_steps >= 1, "train.checkpoint_every_n_steps",
             "log_every_n_steps and checkpoint_every_n_steps must be >= 1")
    _require(len(tr.crop_scale) == 2 and 0 < tr.crop_scale[0] <= tr.crop_scale[1] <= 1, "train.crop_scale",
             f"must be [lo, hi] with 0 < lo <= hi <= 1, got {list(tr.crop_scale)}")
    _require(0 <= tr.rotation <= 180 and tr.fallback_radius >= 0, "train.rotation",
             "rotation must be within 0..180 degrees and fallback_radius >= 0")
    _require(t.window_len >= 2, "tracker.window_len", f"must be >= 2, got {t.window_len}")
    _require(cfg.fault.step >= 0 and cfg.fault.rank >= 0, "fault.step", "step and rank must be >= 0")
    dv = cfg.demo
    _require(0.0 <= dv.score_thr <= 1.0, "demo.score_thr", f"must be within [0, 1], got {dv.score_thr}")
    _require(dv.short_side >= 16, "demo.short_side", f"must be >= 16, got {dv.short_side}")
    _require(dv.max_frames is None or dv.max_frames >= 1, "demo.max_frames", f"must be >= 1, got {dv.max_frames}")
    _require(dv.fps > 0, "demo.fps", f"must be positive, got {dv.fps}")
