"""Loading weights into a ``VideoMask2Former`` from every file a user is likely to hold, with a report.

Files understood (the kind is recognised from the names inside, not from the file name):
  s2d            a state dict in s2d names, or an s2d Lightning checkpoint (``state_dict`` with ``student.`` and
                 ``teacher.`` copies)
  official       a detectron2 checkpoint of (Video)Mask2Former / CutLER / VideoCutLER: ``{"model": {...}}`` in
                 ``.pth`` (torch) or ``.pkl`` (pickled numpy arrays, as detectron2 writes them); the loss buffer
                 ``criterion.empty_weight`` and non-model entries (optimizer, scheduler, iteration) are dropped,
                 the old ``static_query`` name is read as ``query_feat``
  s2d-official   S2D's teacher-student checkpoints: ``student.0.`` / ``teacher.0.`` (backbone) and ``.1.``
                 (``sem_seg_head``) in official names; the teacher by default, as S2D evaluates the teacher
  backbone       a ResNet alone, torchvision names (``conv1``, ``layer1``; e.g. DINO ResNet-50) or detectron2
                 names (``stem.conv1``, ``res2``); only the backbone is filled, the rest keeps its initialisation
Nothing is downloaded. ``to_official`` writes a model back in official names (round trip tested).
"""
from __future__ import annotations

import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from s2d.errors import ConfigError

# ---- name mapping: official (detectron2 checkpoint["model"]) <-> s2d -------------------------------------
# Each rule is (official regex, s2d replacement, s2d regex, official replacement); a replacement is a template
# or a function of the match. Stage numbers differ by one between the two ResNet namings (res2 = layer1).
_Rule = tuple[str, Any, str, Any]


def _stage_to_s2d(fmt: str) -> Callable[[re.Match], str]:
    return lambda m: fmt.format(s=int(m["s"]) - 1, **{k: v for k, v in m.groupdict().items() if k != "s"})


def _stage_to_official(fmt: str) -> Callable[[re.Match], str]:
    return lambda m: fmt.format(s=int(m["s"]) + 1, **{k: v for k, v in m.groupdict().items() if k != "s"})


_BN = r"(?P<p>weight|bias|running_mean|running_var)"
RULES: list[_Rule] = [
    # backbone (detectron2 ResNet <-> torchvision ResNet inside s2d's ResNetBackbone)
    (r"backbone\.stem\.conv1\.weight", "backbone.stem.0.weight", r"backbone\.stem\.0\.weight",
     "backbone.stem.conv1.weight"),
    (rf"backbone\.stem\.conv1\.norm\.{_BN}", r"backbone.stem.1.\g<p>", rf"backbone\.stem\.1\.{_BN}",
     r"backbone.stem.conv1.norm.\g<p>"),
    (r"backbone\.res(?P<s>[2-5])\.(?P<b>\d+)\.conv(?P<k>[1-3])\.weight",
     _stage_to_s2d("backbone.layer{s}.{b}.conv{k}.weight"),
     r"backbone\.layer(?P<s>[1-4])\.(?P<b>\d+)\.conv(?P<k>[1-3])\.weight",
     _stage_to_official("backbone.res{s}.{b}.conv{k}.weight")),
    (rf"backbone\.res(?P<s>[2-5])\.(?P<b>\d+)\.conv(?P<k>[1-3])\.norm\.{_BN}",
     _stage_to_s2d("backbone.layer{s}.{b}.bn{k}.{p}"),
     rf"backbone\.layer(?P<s>[1-4])\.(?P<b>\d+)\.bn(?P<k>[1-3])\.{_BN}",
     _stage_to_official("backbone.res{s}.{b}.conv{k}.norm.{p}")),
    (r"backbone\.res(?P<s>[2-5])\.(?P<b>\d+)\.shortcut\.weight",
     _stage_to_s2d("backbone.layer{s}.{b}.downsample.0.weight"),
     r"backbone\.layer(?P<s>[1-4])\.(?P<b>\d+)\.downsample\.0\.weight",
     _stage_to_official("backbone.res{s}.{b}.shortcut.weight")),
    (rf"backbone\.res(?P<s>[2-5])\.(?P<b>\d+)\.shortcut\.norm\.{_BN}",
     _stage_to_s2d("backbone.layer{s}.{b}.downsample.1.{p}"),
     rf"backbone\.layer(?P<s>[1-4])\.(?P<b>\d+)\.downsample\.1\.{_BN}",
     _stage_to_official("backbone.res{s}.{b}.shortcut.norm.{p}")),
    # pixel decoder
    (r"sem_seg_head\.pixel_decoder\.input_proj\.(?P<r>.*)", r"pixel_decoder.input_proj.\g<r>",
     r"pixel_decoder\.input_proj\.(?P<r>.*)", r"sem_seg_head.pixel_decoder.input_proj.\g<r>"),
    (r"sem_seg_head\.pixel_decoder\.transformer\.level_embed", "pixel_decoder.level_embed",
     r"pixel_decoder\.level_embed", "sem_seg_head.pixel_decoder.transformer.level_embed"),
    (r"sem_seg_head\.pixel_decoder\.transformer\.encoder\.layers\.(?P<i>\d+)\.self_attn\.(?P<r>.*)",
     r"pixel_decoder.layers.\g<i>.attn.\g<r>", r"pixel_decoder\.layers\.(?P<i>\d+)\.attn\.(?P<r>.*)",
     r"sem_seg_head.pixel_decoder.transformer.encoder.layers.\g<i>.self_attn.\g<r>"),
    (r"sem_seg_head\.pixel_decoder\.transformer\.encoder\.layers\.(?P<i>\d+)\.(?P<n>norm[12])\.(?P<r>.*)",
     r"pixel_decoder.layers.\g<i>.\g<n>.\g<r>", r"pixel_decoder\.layers\.(?P<i>\d+)\.(?P<n>norm[12])\.(?P<r>.*)",
     r"sem_seg_head.pixel_decoder.transformer.encoder.layers.\g<i>.\g<n>.\g<r>"),
    (r"sem_seg_head\.pixel_decoder\.transformer\.encoder\.layers\.(?P<i>\d+)\.linear1\.(?P<r>.*)",
     r"pixel_decoder.layers.\g<i>.ffn.0.\g<r>", r"pixel_decoder\.layers\.(?P<i>\d+)\.ffn\.0\.(?P<r>.*)",
     r"sem_seg_head.pixel_decoder.transformer.encoder.layers.\g<i>.linear1.\g<r>"),
    (r"sem_seg_head\.pixel_decoder\.transformer\.encoder\.layers\.(?P<i>\d+)\.linear2\.(?P<r>.*)",
     r"pixel_decoder.layers.\g<i>.ffn.3.\g<r>", r"pixel_decoder\.layers\.(?P<i>\d+)\.ffn\.3\.(?P<r>.*)",
     r"sem_seg_head.pixel_decoder.transformer.encoder.layers.\g<i>.linear2.\g<r>"),
    (r"sem_seg_head\.pixel_decoder\.adapter_1\.weight", "pixel_decoder.lateral.0.weight",
     r"pixel_decoder\.lateral\.0\.weight", "sem_seg_head.pixel_decoder.adapter_1.weight"),
    (r"sem_seg_head\.pixel_decoder\.adapter_1\.norm\.(?P<r>.*)", r"pixel_decoder.lateral.1.\g<r>",
     r"pixel_decoder\.lateral\.1\.(?P<r>.*)", r"sem_seg_head.pixel_decoder.adapter_1.norm.\g<r>"),
    (r"sem_seg_head\.pixel_decoder\.layer_1\.weight", "pixel_decoder.output.0.weight",
     r"pixel_decoder\.output\.0\.weight", "sem_seg_head.pixel_decoder.layer_1.weight"),
    (r"sem_seg_head\.pixel_decoder\.layer_1\.norm\.(?P<r>.*)", r"pixel_decoder.output.1.\g<r>",
     r"pixel_decoder\.output\.1\.(?P<r>.*)", r"sem_seg_head.pixel_decoder.layer_1.norm.\g<r>"),
    (r"sem_seg_head\.pixel_decoder\.mask_features\.(?P<r>.*)", r"pixel_decoder.mask_features.\g<r>",
     r"pixel_decoder\.mask_features\.(?P<r>.*)", r"sem_seg_head.pixel_decoder.mask_features.\g<r>"),
    # video transformer decoder
    (r"sem_seg_head\.predictor\.(?P<n>query_feat|query_embed|level_embed)\.weight", r"decoder.\g<n>.weight",
     r"decoder\.(?P<n>query_feat|query_embed|level_embed)\.weight", r"sem_seg_head.predictor.\g<n>.weight"),
    (r"sem_seg_head\.predictor\.transformer_cross_attention_layers\.(?P<i>\d+)\.multihead_attn\.(?P<r>.*)",
     r"decoder.layers.\g<i>.cross.\g<r>", r"decoder\.layers\.(?P<i>\d+)\.cross\.(?P<r>.*)",
     r"sem_seg_head.predictor.transformer_cross_attention_layers.\g<i>.multihead_attn.\g<r>"),
    (r"sem_seg_head\.predictor\.transformer_cross_attention_layers\.(?P<i>\d+)\.norm\.(?P<r>.*)",
     r"decoder.layers.\g<i>.norms.0.\g<r>", r"decoder\.layers\.(?P<i>\d+)\.norms\.0\.(?P<r>.*)",
     r"sem_seg_head.predictor.transformer_cross_attention_layers.\g<i>.norm.\g<r>"),
    (r"sem_seg_head\.predictor\.transformer_self_attention_layers\.(?P<i>\d+)\.self_attn\.(?P<r>.*)",
     r"decoder.layers.\g<i>.self_attn.\g<r>", r"decoder\.layers\.(?P<i>\d+)\.self_attn\.(?P<r>.*)",
     r"sem_seg_head.predictor.transformer_self_attention_layers.\g<i>.self_attn.\g<r>"),
    (r"sem_seg_head\.predictor\.transformer_self_attention_layers\.(?P<i>\d+)\.norm\.(?P<r>.*)",
     r"decoder.layers.\g<i>.norms.1.\g<r>", r"decoder\.layers\.(?P<i>\d+)\.norms\.1\.(?P<r>.*)",
     r"sem_seg_head.predictor.transformer_self_attention_layers.\g<i>.norm.\g<r>"),
    (r"sem_seg_head\.predictor\.transformer_ffn_layers\.(?P<i>\d+)\.linear1\.(?P<r>.*)",
     r"decoder.layers.\g<i>.ffn.0.\g<r>", r"decoder\.layers\.(?P<i>\d+)\.ffn\.0\.(?P<r>.*)",
     r"sem_seg_head.predictor.transformer_ffn_layers.\g<i>.linear1.\g<r>"),
    (r"sem_seg_head\.predictor\.transformer_ffn_layers\.(?P<i>\d+)\.linear2\.(?P<r>.*)",
     r"decoder.layers.\g<i>.ffn.3.\g<r>", r"decoder\.layers\.(?P<i>\d+)\.ffn\.3\.(?P<r>.*)",
     r"sem_seg_head.predictor.transformer_ffn_layers.\g<i>.linear2.\g<r>"),
    (r"sem_seg_head\.predictor\.transformer_ffn_layers\.(?P<i>\d+)\.norm\.(?P<r>.*)",
     r"decoder.layers.\g<i>.norms.2.\g<r>", r"decoder\.layers\.(?P<i>\d+)\.norms\.2\.(?P<r>.*)",
     r"sem_seg_head.predictor.transformer_ffn_layers.\g<i>.norm.\g<r>"),
    (r"sem_seg_head\.predictor\.decoder_norm\.(?P<r>.*)", r"decoder.norm.\g<r>", r"decoder\.norm\.(?P<r>.*)",
     r"sem_seg_head.predictor.decoder_norm.\g<r>"),
    (r"sem_seg_head\.predictor\.class_embed\.(?P<r>.*)", r"decoder.class_head.\g<r>",
     r"decoder\.class_head\.(?P<r>.*)", r"sem_seg_head.predictor.class_embed.\g<r>"),
    (r"sem_seg_head\.predictor\.mask_embed\.(?P<r>.*)", r"decoder.mask_embed.\g<r>",
     r"decoder\.mask_embed\.(?P<r>.*)", r"sem_seg_head.predictor.mask_embed.\g<r>"),
]
_TO_S2D = [(re.compile(a), b) for a, b, _, _ in RULES]
_TO_OFFICIAL = [(re.compile(c), d) for _, _, c, d in RULES]
# Names of the official file that hold no model weight (loss buffers, detectron2 bookkeeping).
_DROP = re.compile(r"^(criterion\.|distill_criterion\.)|num_batches_tracked$|^pixel_(mean|std)$")


def _apply(rules, key: str) -> str | None:
    for pattern, repl in rules:
        if pattern.fullmatch(key):
            return pattern.sub(repl, key)
    return None


def official_to_s2d(key: str) -> str | None:
    """An official checkpoint name -> the s2d name (None when it has no s2d counterpart)."""
    key = key.replace(".predictor.static_query.", ".predictor.query_feat.")  # Mask2Former before version 2
    return _apply(_TO_S2D, key)


def s2d_to_official(key: str) -> str | None:
    """An s2d name -> the official checkpoint name (None for a backbone without official names)."""
    return _apply(_TO_OFFICIAL, key)


# ---- reading files ----------------------------------------------------------------------------------------
class _NumpyOnly(pickle.Unpickler):
    """detectron2 ``.pkl`` checkpoints are pickled dicts of numpy arrays: allow numpy's array reconstruction
    and nothing else, so a hostile file cannot run code."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
               ("numpy._core.multiarray", "scalar"), ("collections", "OrderedDict")}

    def find_class(self, module: str, name: str):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: only numpy arrays are expected")


def read_checkpoint(path: str | Path, key: str = "model.pretrained") -> dict[str, torch.Tensor]:
    """The flat {name: tensor} of a checkpoint file: torch files with ``weights_only=True``, ``.pkl`` with numpy
    arrays only. Nested ``state_dict`` (Lightning), ``model`` (detectron2) or ``blobs`` are unwrapped."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(key, f"file {p} does not exist (expected a local checkpoint: nothing is downloaded)")
    try:
        if p.suffix == ".pkl":
            with open(p, "rb") as f:
                obj = _NumpyOnly(f, encoding="latin1").load()
        else:
            obj = torch.load(p, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(key, f"{p} cannot be read as a checkpoint of tensors ({first}). If you trust the file, "
                               "save its weights alone: torch.save(torch.load(f, weights_only=False)['model'], "
                               "'weights.pth')") from None
    for wrapper in ("state_dict", "model", "blobs"):
        if isinstance(obj, dict) and isinstance(obj.get(wrapper), dict):
            obj = obj[wrapper]
            break
    if not isinstance(obj, dict):
        raise ConfigError(key, f"{p} holds a {type(obj).__name__}, not a dict of tensors")
    out = {}
    for k, v in obj.items():
        if isinstance(v, np.ndarray):
            v = torch.from_numpy(np.ascontiguousarray(v))
        if isinstance(v, torch.Tensor):
            out[str(k)] = v
    if not out:
        raise ConfigError(key, f"{p} holds no tensors")
    return out


# ---- recognising the kind and normalising to s2d names -------------------------------------------------
def _strip(sd: dict, prefixes: tuple[str, ...]) -> dict:
    for pre in prefixes:
        if sd and all(k.startswith(pre) for k in sd):
            sd = {k[len(pre):]: v for k, v in sd.items()}
    return sd


def _torchvision_backbone(k: str) -> str | None:
    for a, b in (("conv1.", "stem.0."), ("bn1.", "stem.1.")):
        if k.startswith(a):
            return "backbone." + b + k[len(a):]
    return "backbone." + k if re.match(r"layer[1-4]\.", k) else None


def normalise(sd: dict[str, torch.Tensor], which: str = "teacher") -> tuple[dict[str, torch.Tensor], str, list[str]]:
    """A checkpoint's tensors -> (tensors in s2d names, kind, names dropped on purpose)."""
    if which not in ("teacher", "student"):
        raise ConfigError("model.pretrained_which", f"must be 'teacher' or 'student', got {which!r}")
    sd = _strip(dict(sd), ("module.", "model."))
    dropped = sorted(k for k in sd if _DROP.search(k))
    sd = {k: v for k, v in sd.items() if k not in dropped}
    if any(k.startswith(("student.", "teacher.")) for k in sd):
        pre = which + "."
        other = sorted(k for k in sd if not k.startswith(pre))
        dropped += other
        sd = {k[len(pre):]: v for k, v in sd.items() if k.startswith(pre)}
        if any(k.startswith(("0.", "1.")) for k in sd):  # S2D: student.0 = backbone, student.1 = sem_seg_head
            sd = {("backbone." + k[2:] if k.startswith("0.") else "sem_seg_head." + k[2:]): v for k, v in sd.items()}
    official = any(k.startswith("sem_seg_head.") or k.startswith(("backbone.res", "backbone.stem.conv1"))
                   for k in sd)
    if official:
        out, unknown = {}, []
        for k, v in sd.items():
            s = official_to_s2d(k)
            (unknown.append(k) if s is None else out.__setitem__(s, v))
        kind = "official" if any(k.startswith("sem_seg_head.") for k in sd) else "backbone (detectron2)"
        return {**out, **{k: sd[k] for k in unknown}}, kind, dropped
    if any(k.startswith(("stem.conv1", "res2.")) for k in sd):  # detectron2 ResNet without prefix
        return normalise({"backbone." + k: v for k, v in sd.items()}, which)[0], "backbone (detectron2)", dropped
    if any(k.startswith(("conv1.", "layer1.")) for k in sd):  # torchvision ResNet (e.g. DINO ResNet-50)
        out = {}
        for k, v in sd.items():
            s = _torchvision_backbone(k)
            if s is None:
                dropped.append(k)  # fc.*: the classifier head
            else:
                out[s] = v
        return out, "backbone (torchvision)", dropped
    return sd, "s2d", dropped


# ---- loading with a report ------------------------------------------------------------------------------
GROUPS = ("backbone", "pixel_decoder", "decoder")


@dataclass
class LoadReport:
    path: str
    kind: str
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)     # in the model, not in the file (kept at initialisation)
    unexpected: list[str] = field(default_factory=list)  # in the file, not in the model (ignored)
    reshaped: list[str] = field(default_factory=list)    # in both with different shapes
    dropped: list[str] = field(default_factory=list)     # non-model entries left out on purpose

    def summary(self) -> str:
        """One line per name group: loaded / missing / unexpected / reshaped."""
        lines = [f"{self.path} ({self.kind}): {len(self.loaded)} tensors loaded, {len(self.dropped)} non-model "
                 f"entries dropped"]
        for g in (*GROUPS, "other"):
            def count(names):
                return sum(1 for n in names if (n.split(".")[0] if n.split(".")[0] in GROUPS else "other") == g)
            c = [count(x) for x in (self.loaded, self.missing, self.unexpected, self.reshaped)]
            if any(c):
                lines.append(f"  {g:14s} loaded {c[0]:4d}  missing {c[1]:4d}  unexpected {c[2]:4d}  reshaped {c[3]:4d}")
        return "\n".join(lines)


def load_pretrained(model: nn.Module, path: str | Path, which: str = "teacher", key: str = "model.pretrained",
                    allow_missing: tuple[str, ...] = (), scope: str = "",
                    tensors: dict[str, torch.Tensor] | None = None) -> LoadReport:
    """Fill ``model`` (a VideoMask2Former) from ``path``; refuses naming the tensor when one the file should
    provide is missing or has another shape. A backbone-only file must fill the whole backbone and leaves the
    heads as they are; any other file must fill everything except names starting with ``allow_missing``.
    ``scope``: only names starting with it are read from the file and required (e.g. ``"backbone."``).
    ``tensors``: the file's tensors when the caller has read them already (``read_checkpoint``'s result)."""
    sd, kind, dropped = normalise(tensors if tensors is not None else read_checkpoint(path, key), which)
    own = model.state_dict()
    if scope:
        dropped += sorted(k for k in sd if not k.startswith(scope))
        sd = {k: v for k, v in sd.items() if k.startswith(scope)}
        own = {k: v for k, v in own.items() if k.startswith(scope)}
    required = [k for k in own if not k.startswith(allow_missing)]
    if kind.startswith("backbone"):
        required = [k for k in required if k.startswith("backbone.")]
    rep = LoadReport(str(path), kind, dropped=dropped)
    rep.missing = sorted(k for k in own if k not in sd)
    rep.unexpected = sorted(k for k in sd if k not in own)
    rep.reshaped = sorted(k for k in sd if k in own and tuple(sd[k].shape) != tuple(own[k].shape))
    absent = [k for k in required if k not in sd]
    if absent or rep.reshaped:
        detail = [f"missing {k}" for k in absent[:5]] + [
            f"{k}: file {tuple(sd[k].shape)} vs model {tuple(own[k].shape)}" for k in rep.reshaped[:5]]
        raise ConfigError(key, f"{path} ({kind}) does not fit this model: {len(absent)} required tensors "
                               f"missing, {len(rep.reshaped)} with another shape; " + "; ".join(detail))
    fill = {k: v.to(own[k].dtype) for k, v in sd.items() if k in own}
    model.load_state_dict(fill, strict=False)
    rep.loaded = sorted(fill)
    return rep


def to_official(model: nn.Module, no_object_weight: float | None = 0.1) -> dict[str, torch.Tensor]:
    """The model's tensors in official checkpoint names (``{"model": ...}`` of a detectron2 file), with the
    loss buffer ``criterion.empty_weight`` = [1, no_object_weight] unless that is None."""
    out = {}
    for k, v in model.state_dict().items():
        name = s2d_to_official(k)
        if name is None:
            raise ValueError(f"{k} has no official name (only the ResNet backbones do)")
        out[name] = v.detach().clone()
    if no_object_weight is not None:
        out["criterion.empty_weight"] = torch.tensor([1.0, no_object_weight])
    return out
