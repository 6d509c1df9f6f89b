"""Configs: every experiment composes, typos and wrong types fail at start-up, ranges are validated."""
from __future__ import annotations

from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf.errors import ConfigAttributeError, ValidationError

from s2d.config import validate_config
from s2d.errors import ConfigError

CONF = Path(__file__).resolve().parent.parent / "conf"


def test_default_is_the_demo(compose):
    cfg = compose()
    assert cfg.data.kind == "demo" and cfg.run_id == "default-seed0"
    validate_config(cfg)


@pytest.mark.parametrize("data, source", [("demo", "motion_maskcut"), ("davis", "motion"), ("mp4", "motion"),
                                          ("frames", "motion"), ("ytvis", "motion"), ("sav", "motion")])
def test_each_data_config_picks_its_masks_and_the_command_line_wins(compose, data, source):
    """Measured choices (README "Masks for each kind of data"): real video gets motion masks, the demo motion
    plus MaskCut; masks=... on the command line still decides."""
    assert compose(f"data={data}", "data.root=/x").masks.source == source
    assert compose(f"data={data}", "data.root=/x", "masks=maskcut").masks.source == "maskcut"
    assert compose("experiment=davis2016").masks.source == "motion"


def test_real_video_refines_the_flow_to_its_frames_and_the_demo_to_half(compose):
    """Measured per kind of data (docs/RESULTS.md, "Optical flow at the frames' resolution"): every real-video
    config keeps the schema's level 0, the demo the preset's level 1; the command line still decides."""
    assert compose().flow.finest_scale == 1
    for data in ("davis", "mp4", "frames", "ytvis", "sav"):
        assert compose(f"data={data}", "data.root=/x").flow.finest_scale == 0
    assert compose("experiment=davis2016").flow.finest_scale == 0
    assert compose("flow.finest_scale=0").flow.finest_scale == 0


def test_davis_trains_near_its_working_resolution_and_paper_keeps_its_crops(compose):
    """data=davis picks 192x256 crops for its 240p frames; the paper schedule, composed after the data, keeps the
    method's crops; the command line still decides."""
    assert list(compose("data=davis", "data.root=/x").train.crop_size) == [192, 256]
    assert list(compose("experiment=davis2016").train.crop_size) == [192, 256]
    assert list(compose("experiment=paper", "data=davis", "data.root=/x").train.crop_size) == [360, 640]
    assert list(compose("experiment=davis2016", "train.crop_size=[96,128]").train.crop_size) == [96, 128]
    assert list(compose().train.crop_size) == [96, 128]


@pytest.mark.parametrize("data, short, crop", [("davis", 240, [192, 256]), ("mp4", 240, [192, 256]),
                                               ("frames", 240, [192, 256]), ("ytvis", 360, [288, 384]),
                                               ("sav", 240, [192, 256])])
def test_every_real_video_config_trains_at_its_own_scale(compose, data, short, crop):
    """Each real-video config's crops teach its own working resolution at half the frame's size or more, so a
    default run never logs the coarse-scale warning (16:9 and 4:3 frames); the demo's crops on 360p video would.
    experiment=paper keeps the method's crops and the method's data resolution for YouTube-VIS."""
    from s2d.data.clips import AugmentConfig
    from s2d.inference.scale import coarse_scale_note

    cfg = compose(f"data={data}", "data.root=/x")
    assert cfg.data.short_side == short and list(cfg.train.crop_size) == crop
    for hw in [(short, short * 16 // 9), (short, short * 4 // 3)]:
        assert coarse_scale_note(hw, AugmentConfig.of(cfg.train)) is None
    assert coarse_scale_note((360, 640), AugmentConfig.of(compose().train)) is not None
    paper = compose("experiment=paper", f"data={data}", "data.root=/x")
    assert list(paper.train.crop_size) == [360, 640] and paper.data.short_side == short


def test_dense_labels_are_refined_except_in_the_method_s_own_setting(compose):
    assert compose().label.refine is True and compose("experiment=davis2016").label.refine is True
    assert compose("experiment=paper").label.refine is False
    assert compose("experiment=paper", "label.refine=true").label.refine is True


@pytest.mark.parametrize("exp", sorted(p.stem for p in (CONF / "experiment").glob("*.yaml")))
def test_every_experiment_composes_and_validates(compose, exp):
    cfg = compose(f"experiment={exp}")
    validate_config(cfg)


@pytest.mark.parametrize("group", ["data", "masks", "debug", "tracker", "model", "loss", "optim", "train", "distill",
                                   "logger", "keymasks", "label"])
def test_every_group_option_composes(compose, group):
    for p in sorted((CONF / group).glob("*.yaml")):
        extra = []
        if group == "data" and p.stem != "demo":
            extra = ["data.root=/tmp"]
        if group == "masks" and p.stem == "maskcut_dino":
            extra = ["masks.dino_checkpoint=/tmp/x.pth"]
        if group == "masks" and p.stem == "imported":
            extra = ["masks.import_path=/tmp/x.json"]
        if group == "tracker" and p.stem == "cotracker":
            extra = ["tracker.cotracker_repo=/tmp/co", "tracker.cotracker_checkpoint=/tmp/c.pth"]
        validate_config(compose(f"{group}={p.stem}", *extra))


def test_typo_in_key_fails(compose):
    with pytest.raises(ConfigCompositionException) as e:
        compose("data.shortside=3")
    assert "shortside" in str(e.value.__cause__ or e.value)


def test_wrong_type_fails(compose):
    with pytest.raises((ConfigCompositionException, ValidationError)) as e:
        compose("data.short_side=abc")
    assert "short_side" in str(e.value) + str(e.value.__cause__)


@pytest.mark.parametrize("override, key", [
    ("data.short_side=-3", "data.short_side"),
    ("masks.min_score=1.5", "masks.min_score"),
    ("masks.max_masks=0", "masks.max_masks"),
    ("masks.tau=0", "masks.tau"),
    ("masks.maskcut_outside=0", "masks.maskcut_outside"),
    ("masks.motion.min_residual=0", "masks.motion.min_residual"),
    ("masks.motion.smooth_beta=1.0", "masks.motion.smooth_beta"),
    ("masks.motion.band=0", "masks.motion.band"),
    ("masks.motion.split_px=-1", "masks.motion.split_px"),
    ("masks.motion.split_fit=1.5", "masks.motion.split_fit"),
    ("masks.motion.max_gap=0", "masks.motion.max_gap"),
    ("masks.motion.window=0", "masks.motion.window"),
    ("masks.motion.min_moving_frames=2", "masks.motion.min_moving_frames"),
    ("data.stride=0", "data.stride"),
    ("data.max_frames=0", "data.max_frames"),
    ("keymasks.stitch_gap=-1", "keymasks.stitch_gap"),
    ("keymasks.min_window=4", "keymasks.min_window"),
    ("predict.topk=0", "predict.topk"),
    ("label.nms_iou=2.0", "label.nms_iou"),
    ("label.keep_iou=0", "label.keep_iou"),
    ("label.keep_iou=1.5", "label.keep_iou"),
    ("label.keymask_first=true", "label.keymask_first"),      # the demo: no keymask frames to rank first
    ("demo.score_thr=-1", "demo.score_thr"),
    ("train.clip_length=0", "train.clip_length"),
    ("fault.kind=oom", "fault.kind"),
    ("final.distill_warmup=-1", "final.distill_warmup"),
    ("final.lr=0", "final.lr"),
    ("final.milestones=[700,600]", "final.milestones"),
    ("final.teacher_score=1.5", "final.teacher_score"),
    ("final.repeat_iou=0", "final.repeat_iou"),
    ("final.teacher_scores=true final.score_targets=false", "final.teacher_scores"),   # hard targets: no score
    ("final.repeat_iou=1.5", "final.repeat_iou"),
    ("flow.finest_scale=-1", "flow.finest_scale"),
    ("flow.finest_scale=4", "flow.finest_scale"),
    ("label.input_scale=0", "label.input_scale"),
])
def test_out_of_range_names_the_key(compose, override, key):
    cfg = compose(*override.split())  # a space separates overrides that conflict only together
    with pytest.raises(ConfigError) as e:
        validate_config(cfg)
    assert e.value.key == key and f"'{key}'" in str(e.value)


@pytest.mark.parametrize("override, key, allowed", [
    ("data.kind=video", "data.kind", "demo, ytvis, davis, frames, mp4, sav"),
    ("masks.source=optical", "masks.source", "maskcut, motion, motion_maskcut, import"),
    ("model.pretrained_which=ema", "model.pretrained_which", "teacher, student"),
    ("loss.variant=plain", "loss.variant", "temporal, cutler"),
    ("train.on_error=skip", "train.on_error", "raise, substitute"),
    ("final.init=random", "final.init", "teacher, scratch"),
])
def test_a_choice_outside_its_enum_fails_at_composition(compose, override, key, allowed):
    with pytest.raises(ConfigCompositionException) as e:
        compose(override)
    msg = str(e.value.__cause__)
    assert f"full_key: {key}" in msg and f"expected one of [{allowed}]" in msg


def test_choices_read_as_plain_strings(compose):
    """A choice compares, formats and serialises as its name, so fingerprints and checkpoints hold plain strings
    (artifacts made before the Enums keep their folders)."""
    import json

    from s2d.choices import MaskSource
    from s2d.stages.common import section

    cfg = compose("masks=motion")
    assert cfg.masks.source is MaskSource.motion and cfg.masks.source == "motion"
    assert f"{cfg.masks.source}/{cfg.masks.features}" == "motion/color"
    sec = section(cfg, "masks")
    assert type(sec["source"]) is str and json.dumps(cfg.masks.source) == '"motion"'
    assert {"motion": 1}[cfg.masks.source] == 1


def test_required_root_is_reported(compose):
    cfg = compose("data=davis")
    with pytest.raises(Exception) as e:
        validate_config(cfg)
    assert "data.root" in str(e.value)


def test_run_folder_is_stable(compose):
    a = compose("seed=3", "name=x")
    assert a.run_id == "x-seed3"
    with pytest.raises(ConfigAttributeError):
        compose().nonexistent_key


@pytest.mark.slow
@pytest.mark.parametrize("exp", sorted(p.stem for p in (CONF / "experiment").glob("*.yaml")))
def test_every_experiment_instantiates_and_takes_a_training_step(compose, exp, tiny_demo, tmp_path):
    """C1: each experiment's model, loss, solver and data module are built from its config; one training
    step runs (fast_dev_run) with the experiment's own settings, except that the paper-sized model is only
    built (a ResNet-50 step is left to GPUs) and the data is the tiny demo."""
    import lightning as L
    import torch

    from s2d.data.sources import open_dataset
    from s2d.stages.distill import build

    cfg = compose(f"experiment={exp}", "train.crop_size=[48,64]", "train.batch_size=2", "train.num_workers=0",
                  "loss.num_points=64")
    ds = open_dataset("ytvis", tiny_demo)
    module, data = build(cfg, ds, ds.gt_labelset())
    assert sum(p.numel() for p in module.student.parameters()) > 0
    if cfg.model.backbone != "tiny":
        return
    L.Trainer(fast_dev_run=True, accelerator="cpu", logger=False, enable_progress_bar=False,
              use_distributed_sampler=False, default_root_dir=str(tmp_path)).fit(module, data)
    assert all(torch.isfinite(p).all() for p in module.student.parameters())


def test_final_distill_warmup_reaches_the_final_stage_and_its_fingerprint(compose, tmp_path):
    """final.distill_warmup replaces the distill stage's warm-up in the final rounds only, and a final round
    trained with another warm-up gets its own checkpoint folder (never resumes one trained with the other)."""
    from s2d.stages.distill import checkpoint_dir
    from s2d.stages.final import stage_config

    same = compose()
    assert stage_config(same) is same                                   # null: the distill stage's warm-up
    cfg = compose("final.distill_warmup=0")
    assert cfg.distill.distill_warmup == 600 and stage_config(cfg).distill.distill_warmup == 0
    assert checkpoint_dir(stage_config(cfg), tmp_path, "final", "fp") != checkpoint_dir(same, tmp_path, "final", "fp")
    assert checkpoint_dir(cfg, tmp_path, "distill", "fp") == checkpoint_dir(same, tmp_path, "distill", "fp")


def test_final_lr_reaches_the_final_stage_and_its_fingerprint(compose, tmp_path):
    """final.lr replaces optim.lr in the final rounds only: the distill stage (and its folder) keep optim.lr."""
    from s2d.stages.distill import checkpoint_dir
    from s2d.stages.final import stage_config

    same = compose()
    cfg = compose("final.lr=0.0001")
    assert cfg.optim.lr == same.optim.lr == 1e-3 and stage_config(cfg).optim.lr == 1e-4
    assert stage_config(cfg).optim.weight_decay == same.optim.weight_decay   # the rest of the solver is kept
    assert checkpoint_dir(stage_config(cfg), tmp_path, "final", "fp") != checkpoint_dir(same, tmp_path, "final", "fp")
    assert checkpoint_dir(cfg, tmp_path, "distill", "fp") == checkpoint_dir(same, tmp_path, "distill", "fp")
    both = stage_config(compose("final.lr=0.0001", "final.distill_warmup=0"))
    assert both.optim.lr == 1e-4 and both.distill.distill_warmup == 0
    steps = compose("final.milestones=[760]")                           # the rate's steps, in the final rounds only
    assert list(stage_config(steps).optim.milestones) == [760] and list(steps.optim.milestones) == []
    assert stage_config(steps).optim.lr == 1e-3
    assert checkpoint_dir(stage_config(steps), tmp_path, "final", "fp") != checkpoint_dir(same, tmp_path, "final", "fp")
    assert checkpoint_dir(steps, tmp_path, "distill", "fp") == checkpoint_dir(same, tmp_path, "distill", "fp")


def test_final_init_enters_the_final_fingerprint_only_when_scratch(compose, tmp_path):
    """final.init=scratch gives the final rounds (dense labels) another checkpoint folder; the distill stage, which
    always starts from scratch, and the default start keep theirs."""
    from s2d.stages.distill import checkpoint_dir, starts_from_scratch

    same, cfg = compose(), compose("final.init=scratch")
    assert not starts_from_scratch(same, "dense") and starts_from_scratch(cfg, "dense")
    assert not starts_from_scratch(cfg, "sparse")
    def folder(c):
        return checkpoint_dir(c, tmp_path, "final", "fp", "dense")

    assert folder(cfg) != folder(same) and folder(compose("final.init=teacher")) == folder(same)
    assert checkpoint_dir(cfg, tmp_path, "distill", "fp") == checkpoint_dir(same, tmp_path, "distill", "fp")


def test_final_teacher_score_reaches_the_final_stage_and_its_fingerprint(compose, tmp_path):
    """final.teacher_score replaces distill.teacher_score in the final rounds only, beside final.distill_warmup;
    the distill stage (and its folder) keep the method's threshold."""
    from s2d.stages.distill import checkpoint_dir
    from s2d.stages.final import stage_config

    same = compose()
    cfg = compose("final.teacher_score=0.5", "final.distill_warmup=300")
    final = stage_config(cfg)
    assert cfg.distill.teacher_score == same.distill.teacher_score == 0.75
    assert final.distill.teacher_score == 0.5 and final.distill.distill_warmup == 300
    assert final.distill.ema_momentum == same.distill.ema_momentum         # the rest of the section is kept
    assert checkpoint_dir(final, tmp_path, "final", "fp") != checkpoint_dir(same, tmp_path, "final", "fp")
    assert checkpoint_dir(cfg, tmp_path, "distill", "fp") == checkpoint_dir(same, tmp_path, "distill", "fp")


def test_final_teach_absent_reaches_the_dense_clips_and_the_final_fingerprint(compose, tmp_path):
    """final.teach_absent flags the dense labelset's tubes (not its kept keymask instances) in the final stage's
    clips, never the keymasks'; it gives the final stage, and only it, another checkpoint folder."""
    from s2d.data.clips import AugmentConfig, ClipDataset
    from s2d.data.demo import DemoConfig, write_demo_dataset
    from s2d.data.sources import open_dataset
    from s2d.stages.distill import checkpoint_dir

    same, cfg = compose("final.teach_absent=false"), compose()
    assert cfg.final.teach_absent and not compose("experiment=paper").final.teach_absent   # the method drops them
    assert checkpoint_dir(cfg, tmp_path, "final", "fp", "dense") != checkpoint_dir(same, tmp_path, "final", "fp",
                                                                                   "dense")
    assert checkpoint_dir(cfg, tmp_path, "distill", "fp") == checkpoint_dir(same, tmp_path, "distill", "fp")
    write_demo_dataset(tmp_path / "d", DemoConfig(num_videos=1, num_frames=6, height=32, width=40, seed=1))
    ds = open_dataset("ytvis", tmp_path / "d")
    labels = ds.gt_labelset()
    v = labels.videos[0]
    assert len(v.instances) >= 2
    v.instances[0].extra["kept"] = True                     # a keymask instance the dense labelset carried over
    aug = AugmentConfig(enabled=False)
    for mode, teach, want in (("dense", True, [False] + [True] * (len(v.instances) - 1)),
                              ("dense", False, [False] * len(v.instances)),
                              ("sparse", True, [False] * len(v.instances))):
        item = ClipDataset(ds, labels, 3, mode, augment=aug, teach_absent=teach)[0]
        present = [i for i, inst in enumerate(v.instances)
                   if any(inst.segmentations[t] is not None for t in item["frames"])]
        assert item["known_empty"].tolist() == [[want[i]] * 3 for i in present], (mode, teach)  # per frame
        assert item["known_empty"].shape == (len(item["targets"]), 3)
    # final.drop_cut_frames: a frame label.one_identity cut from a tube (extra["cut_frames"]) stays unknown
    first = ClipDataset(ds, labels, 3, "dense", augment=aug, teach_absent=True)[0]
    v.instances[1].extra["cut_frames"] = [first["frames"][1]]
    for drop in (True, False):
        item = ClipDataset(ds, labels, 3, "dense", augment=aug, teach_absent=True, drop_cut_frames=drop)[0]
        present = [i for i, inst in enumerate(v.instances)
                   if any(inst.segmentations[t] is not None for t in item["frames"])]
        assert item["frames"] == first["frames"] and 1 in present
        assert item["known_empty"][present.index(1)].tolist() == [True, not drop, True], drop


def test_final_drop_cut_frames_enters_the_final_fingerprint_only_where_it_acts(compose, tmp_path):
    """final.drop_cut_frames changes what the final stage learns only where it teaches empty frames as absent."""
    from s2d.stages.distill import checkpoint_dir, drops_cut_frames

    on, off = compose("final.drop_cut_frames=true"), compose()
    assert drops_cut_frames(on, "dense") and not drops_cut_frames(off, "dense") and not drops_cut_frames(on, "sparse")
    assert checkpoint_dir(on, tmp_path, "final", "fp", "dense") != checkpoint_dir(off, tmp_path, "final", "fp", "dense")
    assert checkpoint_dir(on, tmp_path, "distill", "fp") == checkpoint_dir(off, tmp_path, "distill", "fp")
    quiet = [compose("final.teach_absent=false", f"final.drop_cut_frames={d}") for d in (True, False)]
    assert not drops_cut_frames(quiet[0], "dense")
    assert checkpoint_dir(quiet[0], tmp_path, "final", "fp", "dense") == checkpoint_dir(quiet[1], tmp_path, "final",
                                                                                         "fp", "dense")


def test_the_paper_rate_on_random_weights_is_called_out(compose, tmp_path):
    """experiment=paper's 1e-6 is the method's rate for a trained start: without weights the run is told it will
    not learn, naming the keys; with either weight key, or a from-scratch rate, nothing is said."""
    from s2d.stages.distill import cold_start_note

    cfg = compose("experiment=paper")
    note = cold_start_note(cfg.model, cfg.optim.lr)
    assert note is not None and note.startswith("optim.lr=1e-06 is a rate for a trained start")
    assert "model.pretrained" in note and "model.backbone_weights" in note
    weights = tmp_path / "w.pth"
    for given in (f"model.pretrained={weights}", f"model.backbone_weights={weights}", "optim.lr=1e-4"):
        cfg = compose("experiment=paper", given)
        assert cold_start_note(cfg.model, cfg.optim.lr) is None, given
    cfg = compose()  # the embedded default trains the tiny model from scratch at 1e-3
    assert cold_start_note(cfg.model, cfg.optim.lr) is None
