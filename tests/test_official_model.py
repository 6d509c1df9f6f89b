"""s2d's VideoMask2Former against the official modules (reference data in ../shared/reference/videomask2former)
and every checkpoint kind ``s2d.models.weights`` reads. The tests write their own checkpoint files."""
from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch

from s2d.errors import ConfigError
from s2d.models import VideoMask2Former
from s2d.models.position import sine_2d, sine_3d
from s2d.models.weights import official_to_s2d, read_checkpoint, s2d_to_official, to_official
REF = Path(__file__).resolve().parents[2] / "shared" / "reference" / "videomask2former"
PAPER = dict(backbone="resnet50", hidden_dim=256, mask_dim=256, num_queries=100, nheads=8, dim_feedforward=2048,
             dec_layers=9, enc_layers=6, enc_dim_feedforward=1024, enc_points=4, dropout=0.3)
SMALL = dict(backbone="tiny", hidden_dim=32, mask_dim=32, num_queries=6, nheads=4, dim_feedforward=64, dec_layers=2,
             enc_layers=1, enc_dim_feedforward=64, enc_points=2)


def _need(path):
    if not path.exists():
        pytest.skip(f"reference data not found at {path}")
    return path


@pytest.fixture(scope="module")
def fixture_small():
    return torch.load(_need(REF / "fixture_small.pt"), map_location="cpu", weights_only=True)


def _official_tsv():
    rows = [line.split("\t") for line in _need(REF / "keys_r50_full.tsv").read_text().splitlines()[1:]]
    return [(r[0], tuple(int(x) for x in r[1].split("x"))) for r in rows]


def test_positional_encodings_equal_the_official_ones(fixture_small):
    inter = fixture_small["intermediates"]
    for pos in inter["pixel_decoder_pos"]:                      # (C, h, w) for res5, res4, res3
        c, h, w = pos.shape
        assert torch.equal(sine_2d(h, w, c), pos)
    T = fixture_small["config"]["T"]
    for pos, (h, w) in zip(inter["decoder_pos"], [(2, 3), (4, 6), (8, 12)]):  # (T*h*w, C) in (t, y, x) order
        ours = sine_3d(T, h, w, pos.shape[1]).permute(1, 2, 3, 0).reshape(-1, pos.shape[1])
        assert torch.equal(ours, pos)


@pytest.mark.parametrize("case", ["b1", "b2"])
def test_outputs_equal_the_official_modules(fixture_small, tmp_path, case):
    """Official-name weights through s2d's own loader; every output and aux output within 1e-4 (bit-equal with
    one thread). b1: one video of 2 frames (eval); b2: 2 videos x 2 frames (the official training grouping)."""
    cfg = fixture_small["config"]
    model = VideoMask2Former(backbone="resnet50", hidden_dim=cfg["hidden_dim"], mask_dim=cfg["mask_dim"],
                             num_queries=cfg["num_queries"], nheads=cfg["nheads"],
                             dim_feedforward=cfg["dim_feedforward"], dec_layers=cfg["dec_layers"],
                             enc_layers=cfg["enc_layers"], enc_dim_feedforward=cfg["enc_dim_feedforward"],
                             enc_points=cfg["enc_n_points"], dropout=cfg["enc_dropout"]).eval()
    torch.save({"model": fixture_small["state_dict"], "iteration": 7}, tmp_path / "official.pth")
    report = model.load_pretrained(tmp_path / "official.pth", allow_missing=("backbone.",))
    assert report.kind == "official" and len(report.loaded) == len(fixture_small["state_dict"]) == 138
    assert report.unexpected == [] and report.reshaped == []
    inputs, expected = ((fixture_small["inputs"], fixture_small["outputs"]) if case == "b1" else
                        (fixture_small["case_b2"]["inputs"], fixture_small["case_b2"]["outputs"]))
    with torch.no_grad():
        mask_features, maps = model.pixel_decoder({k: inputs[k] for k in ("res2", "res3", "res4", "res5")})
        out = model.decoder(maps, mask_features, cfg["T"])
    close = dict(atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(out["pred_logits"], expected["pred_logits"], **close)
    torch.testing.assert_close(out["pred_masks"], expected["pred_masks"], **close)
    assert len(out["aux_outputs"]) == len(expected["aux_outputs"]) == cfg["dec_layers"]
    for ours, ref in zip(out["aux_outputs"], expected["aux_outputs"]):
        torch.testing.assert_close(ours["pred_logits"], ref["pred_logits"], **close)
        torch.testing.assert_close(ours["pred_masks"], ref["pred_masks"], **close)
    if case == "b1":
        torch.testing.assert_close(mask_features, expected["mask_features"], **close)
        for ours, ref in zip(maps, expected["multi_scale_features"]):
            torch.testing.assert_close(ours, ref, **close)


def test_paper_model_loads_every_official_tensor_and_round_trips(tmp_path):
    """Random tensors of the 558 official shapes -> model=paper: every parameter and buffer comes from the
    file (none keeps its initial value), and writing the model back in official names gives the same file."""
    rows = _official_tsv()
    assert len(rows) == 558
    g = torch.Generator().manual_seed(0)
    official = {k: torch.randn(shape, generator=g) for k, shape in rows}
    official["criterion.empty_weight"] = torch.tensor([1.0, 0.1])
    torch.save({"model": official, "optimizer": {"state": {}}, "iteration": 90000}, tmp_path / "m2f.pth")
    model = VideoMask2Former(**PAPER)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    report = model.load_pretrained(tmp_path / "m2f.pth")
    assert report.kind == "official" and len(report.loaded) == 557 and report.missing == []
    assert report.unexpected == [] and report.dropped == ["criterion.empty_weight"]
    after = model.state_dict()
    assert len(after) == 557
    for k, v in after.items():
        assert not torch.equal(v, before[k]), f"{k} kept its initial value"
        assert torch.equal(v, official[s2d_to_official(k)])
    back = to_official(model)
    assert back.keys() == official.keys()
    assert all(torch.equal(back[k], official[k]) for k in official)


def test_detectron2_pkl_with_numpy_arrays_and_old_query_name(tmp_path):
    model = VideoMask2Former(**SMALL)
    # a tiny backbone has no official names: write its head in official names, the backbone in s2d names
    sd = {}
    for k, v in model.state_dict().items():
        name = s2d_to_official(k) or k
        if name.endswith("predictor.query_feat.weight"):
            name = name.replace("query_feat", "static_query")  # Mask2Former checkpoints before version 2
        sd[name] = v.numpy() * 0 + 0.5
    with open(tmp_path / "model_final.pkl", "wb") as f:
        pickle.dump({"model": sd, "__author__": "someone", "matching_heuristics": True}, f)
    other = VideoMask2Former(**SMALL)
    report = other.load_pretrained(tmp_path / "model_final.pkl")
    assert report.kind == "official" and report.missing == []
    assert all(torch.all(v == 0.5) for k, v in other.state_dict().items())


def test_pkl_with_anything_but_arrays_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("this must not run",))

    with open(tmp_path / "bad.pkl", "wb") as f:
        pickle.dump({"model": {"x": Evil()}}, f)
    with pytest.raises(ConfigError, match=r"model.pretrained.*bad.pkl cannot be read.*refusing to load builtins.print"):
        read_checkpoint(tmp_path / "bad.pkl")


def test_s2d_teacher_student_checkpoints(tmp_path):
    """S2D's own files: student.0/teacher.0 = backbone, .1 = sem_seg_head, official names; the teacher by default."""
    teacher, student = VideoMask2Former(**SMALL), VideoMask2Former(**SMALL)
    sd = {}
    for prefix, m in (("teacher", teacher), ("student", student)):
        for k, v in m.state_dict().items():
            name = s2d_to_official(k) or k
            part = "0." + name[len("backbone."):] if name.startswith("backbone.") else "1." + name[len("sem_seg_head."):]
            sd[f"{prefix}.{part}"] = v
    sd["criterion.empty_weight"] = torch.tensor([1.0, 0.1])
    torch.save({"model": sd}, tmp_path / "s2d_kd.pth")
    for which, src in (("teacher", teacher), ("student", student)):
        m = VideoMask2Former(**SMALL)
        report = m.load_pretrained(tmp_path / "s2d_kd.pth", which=which)
        assert report.kind == "official" and report.missing == [] and report.unexpected == []
        assert all(torch.equal(v, src.state_dict()[k]) for k, v in m.state_dict().items())
    with pytest.raises(ConfigError, match="model.pretrained_which"):
        VideoMask2Former(**SMALL).load_pretrained(tmp_path / "s2d_kd.pth", which="ema")


def test_s2d_lightning_checkpoint_and_refusals(tmp_path):
    a = VideoMask2Former(**SMALL)
    torch.save({"state_dict": {f"{p}.{k}": v for p in ("student", "teacher") for k, v in a.state_dict().items()}},
               tmp_path / "s2d.ckpt")
    b = VideoMask2Former(**SMALL)
    assert b.load_pretrained(tmp_path / "s2d.ckpt").kind == "s2d"
    x = torch.rand(1, 2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(a.eval()(x)["pred_masks"], b.eval()(x)["pred_masks"])
    with pytest.raises(ConfigError, match=r"model.pretrained.*does not fit.*decoder.query_feat.weight: file \(6, 32\) "
                                          r"vs model \(7, 32\)"):
        VideoMask2Former(**{**SMALL, "num_queries": 7}).load_pretrained(tmp_path / "s2d.ckpt")
    sd = {k: v for k, v in a.state_dict().items() if k != "decoder.norm.weight"}
    torch.save(sd, tmp_path / "partial.pt")
    with pytest.raises(ConfigError, match=r"1 required tensors missing.*missing decoder.norm.weight"):
        VideoMask2Former(**SMALL).load_pretrained(tmp_path / "partial.pt")
    assert VideoMask2Former(**SMALL).load_pretrained(tmp_path / "partial.pt", allow_missing=("decoder.",)).missing == [
        "decoder.norm.weight"]
    with pytest.raises(ConfigError, match=r"model.pretrained.*nowhere.pth does not exist"):
        VideoMask2Former(**SMALL).load_pretrained(tmp_path / "nowhere.pth")


@pytest.mark.parametrize("layout", ["torchvision", "detectron2"])
def test_resnet50_backbones_alone(tmp_path, layout):
    """DINO ResNet-50 (torchvision names, with a classifier) or a detectron2 R-50: the backbone is filled, the
    heads keep their initialisation, and a missing backbone tensor is refused naming it."""
    import torchvision

    ref = torchvision.models.resnet50(weights=None)
    sd = ref.state_dict()
    if layout == "detectron2":
        model = VideoMask2Former(**PAPER)
        sd = {s2d_to_official(k)[len("backbone."):]: v for k, v in model.state_dict().items()
              if k.startswith("backbone.")}
        expected = {k: v for k, v in model.state_dict().items() if k.startswith("backbone.")}
    else:
        expected = None
    torch.save(sd, tmp_path / "r50.pth")
    m = VideoMask2Former(**{**PAPER, "backbone_weights": str(tmp_path / "r50.pth")})
    rep = m.backbone_report
    assert rep.kind.startswith("backbone") and len(rep.loaded) == 265 and rep.unexpected == []
    if expected is None:
        assert torch.equal(m.backbone.stem[0].weight, ref.conv1.weight)
        assert torch.equal(m.backbone.layer3[1].bn2.running_var, ref.layer3[1].bn2.running_var)
        assert set(rep.dropped) == {"fc.bias", "fc.weight", *[k for k in sd if k.endswith("num_batches_tracked")]}
    else:
        assert all(torch.equal(m.state_dict()[k], v) for k, v in expected.items())
    key = next(iter(sd))
    del sd[key]
    torch.save(sd, tmp_path / "partial.pth")
    with pytest.raises(ConfigError, match=r"model.backbone_weights.*1 required tensors missing.*missing backbone\.stem"):
        VideoMask2Former(**{**PAPER, "backbone_weights": str(tmp_path / "partial.pth")})


def test_name_mapping_is_one_to_one_on_the_official_list():
    rows = _official_tsv()
    mapped = {k: official_to_s2d(k) for k, _ in rows}
    assert [k for k, v in mapped.items() if v is None] == ["criterion.empty_weight"]
    names = [v for v in mapped.values() if v is not None]
    assert len(set(names)) == 557
    assert all(s2d_to_official(v) == k for k, v in mapped.items() if v is not None)
    shapes = {official_to_s2d(k): s for k, s in rows if official_to_s2d(k)}
    own = VideoMask2Former(**PAPER).state_dict()
    assert set(own) == set(shapes) and all(tuple(own[k].shape) == shapes[k] for k in own)


def test_padding_to_32_and_official_mask_postprocessing():
    """Frames not divisible by 32 are zero-padded after normalisation (as the official ImageList); the result
    equals running the padded normalised frames, and masks come back at any size via resize-crop-resize."""
    m = VideoMask2Former(**SMALL).eval()
    x = torch.rand(1, 2, 3, 40, 56)
    with torch.no_grad():
        out = m(x)
        assert out["image_size"] == (40, 56) and out["pred_masks"].shape[-2:] == (16, 16)  # 64 / 4
        norm = (x.flatten(0, 1) - m.pixel_mean) / m.pixel_std
        padded = torch.nn.functional.pad(norm, (0, 8, 0, 24))
        mf, maps = m.pixel_decoder(m.backbone(padded))
        ref = m.decoder(maps, mf, 2)
    assert torch.equal(out["pred_masks"], ref["pred_masks"])
    logits = out["pred_masks"][0]                                             # (Q, T, 16, 16)
    full = torch.nn.functional.interpolate(logits, size=(64, 64), mode="bilinear", align_corners=False)[..., :40, :56]
    torch.testing.assert_close(m.masks_at(logits, (40, 56), (40, 56)), full, atol=1e-6, rtol=1e-6)
    assert m.masks_at(logits, (40, 56), (80, 112)).shape == (6, 2, 80, 112)


@pytest.mark.parametrize("arch,dim", [("vit_small", 384), ("vit_base", 768)])
def test_dino_vit8_names_and_shapes_are_the_official_checkpoints(arch, dim, tmp_path):
    """The key list of ``dino_deitsmall8_pretrain.pth`` / ``dino_vitbase8_pretrain.pth`` as the official
    VisionTransformer(patch_size=8, img 224, num_classes=0) defines it: 4 + 12 x 12 + 2 tensors."""
    from s2d.models.dino import DinoViT, load_dino

    expected = {"cls_token": (1, 1, dim), "pos_embed": (1, 28 * 28 + 1, dim),
                "patch_embed.proj.weight": (dim, 3, 8, 8), "patch_embed.proj.bias": (dim,),
                "norm.weight": (dim,), "norm.bias": (dim,)}
    for i in range(12):
        b = f"blocks.{i}."
        expected.update({b + "norm1.weight": (dim,), b + "norm1.bias": (dim,),
                         b + "attn.qkv.weight": (3 * dim, dim), b + "attn.qkv.bias": (3 * dim,),
                         b + "attn.proj.weight": (dim, dim), b + "attn.proj.bias": (dim,),
                         b + "norm2.weight": (dim,), b + "norm2.bias": (dim,),
                         b + "mlp.fc1.weight": (4 * dim, dim), b + "mlp.fc1.bias": (4 * dim,),
                         b + "mlp.fc2.weight": (dim, 4 * dim), b + "mlp.fc2.bias": (dim,)})
    own = {k: tuple(v.shape) for k, v in DinoViT(arch, 8, 28).state_dict().items()}
    assert own == expected
    torch.save({k: torch.randn(s) for k, s in expected.items()}, tmp_path / "dino.pth")
    model, report = load_dino(tmp_path / "dino.pth", arch)
    assert report["loaded"] == len(expected) and report["unexpected"] == [] and report["patch"] == 8
    # the training grid keeps its embedding; another grid is resized to exactly that grid
    assert torch.equal(model._pos(28, 28), model.pos_embed)
    assert model._pos(30, 45).shape == (1, 1 + 30 * 45, dim)


def test_predict_verb_writes_results_at_the_original_size_and_scores_them(tmp_path, compose):
    """`s2d predict` with model.pretrained: the demo frames are read at short side 32, every video goes through
    in one pass, top-k instances per video come back at the original 64x48 size, and the file is scored."""
    import json

    from s2d.data.demo import DemoConfig, write_demo_dataset
    from s2d.stages import predict

    root = tmp_path / "demo"
    write_demo_dataset(root, DemoConfig(num_videos=2, num_frames=5, height=48, width=64, seed=1))
    torch.save(VideoMask2Former(**{**SMALL, "num_queries": 6}).state_dict(), tmp_path / "w.pth")
    cfg = compose("data.kind=ytvis", f"data.root={root}", "data.short_side=32", f"model.pretrained={tmp_path}/w.pth",
                  "model.num_queries=6", "model.hidden_dim=32", "model.dec_layers=2", "predict.topk=4",
                  f"predict.out={tmp_path}/pred.json", "progress=false", stage="predict")
    result = predict.run(cfg, tmp_path / "run")
    preds = json.loads((tmp_path / "pred.json").read_text())
    assert len(preds) == 2 * 4
    assert {p["video_id"] for p in preds} == {1, 2}
    assert all(len(p["segmentations"]) == 5 and p["segmentations"][0]["size"] == [48, 64] for p in preds)
    scores = [p["score"] for p in preds if p["video_id"] == 1]
    assert scores == sorted(scores, reverse=True)
    assert set(result["metrics"]) >= {"AP", "AP50", "J&F-Mean"}
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["metrics"]["AP"] == result["metrics"]["AP"]


def test_targets_are_padded_like_the_frames():
    """A 40 x 56 clip is padded to 64 x 64: its target masks get the same zero rows and columns (bottom, right),
    so the loss compares each prediction cell with the pixels it sees; divisible clips are left alone."""
    m = VideoMask2Former(**SMALL)
    t = torch.ones(2, 3, 40, 56)
    (p,) = m.pad_targets([t], (40, 56))
    assert p.shape == (2, 3, 64, 64) and p[..., :40, :56].all() and p.sum() == t.sum()
    same = torch.ones(1, 3, 64, 96)
    assert m.pad_targets([same], (64, 96))[0] is same
    with torch.no_grad():
        out = m.eval()(torch.rand(1, 3, 3, 40, 56))
    assert out["pred_masks"].shape[-2:] == (16, 16)  # the prediction grid covers the padded 64 x 64 input
