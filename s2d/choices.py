"""Every setting that is one of a fixed set of names, as an Enum: the config schema types its keys with these, so
``masks.source=optical`` fails when the config is composed, naming the key and the allowed values, and the code
that dispatches on a choice reads the same list.

A member is its own name as a string (``MaskSource("motion") == "motion"``): YAML files, command lines, JSON
fingerprints and checkpoints all hold the plain string, so artifacts made before these types existed keep their
fingerprints. Built with the functional form because some names are Python keywords (``import``, ``raise``).
"""
from __future__ import annotations

from enum import Enum


class Choice(str, Enum):
    """A named option whose value is its name. Prints as the bare name (``f"{x}"`` -> ``motion``), not as
    ``MaskSource.motion``, so messages and file names read as the user typed them."""

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)

    @classmethod
    def values(cls) -> tuple[str, ...]:
        """Every allowed name, in order (for membership checks of plain strings)."""
        return tuple(m.value for m in cls)

    @classmethod
    def names(cls) -> str:
        """``a|b|c``, for messages."""
        return "|".join(cls.values())


def _choice(name: str, *values: str) -> type[Choice]:
    return Choice(name, [(v, v) for v in values], module=__name__, qualname=name)  # type: ignore[return-value]


DataKind = _choice("DataKind", "demo", "ytvis", "davis", "frames", "mp4", "sav")          # data.kind: the reader
MaskSource = _choice("MaskSource", "maskcut", "motion", "motion_maskcut", "import")  # masks.source
MaskFeatures = _choice("MaskFeatures", "color", "dino")             # masks.features: MaskCut's patch features
ImportFormat = _choice("ImportFormat", "coco", "png")               # masks.import_format
TrackerKind = _choice("TrackerKind", "flow", "lk", "cotracker")     # tracker.kind
Device = _choice("Device", "auto", "cpu", "cuda")                   # predict.device (auto: cuda when available)
Backbone = _choice("Backbone", "tiny", "resnet18", "resnet34", "resnet50", "dino_vits8", "dino_vitb8")  # model.backbone
Which = _choice("Which", "teacher", "student")                      # model.pretrained_which
FinalInit = _choice("FinalInit", "teacher", "scratch")               # final.init: where the final model starts
LossVariant = _choice("LossVariant", "temporal", "cutler")          # loss.variant: which DropLoss
OnError = _choice("OnError", "raise", "substitute")                 # train.on_error: unreadable training frame
MonitorMode = _choice("MonitorMode", "max", "min")                  # train.monitor_mode
WandbMode = _choice("WandbMode", "offline", "online", "disabled")   # logger.mode
FaultKind = _choice("FaultKind", "raise", "nan", "nan_weights", "overflow", "sigusr1", "sigterm", "sigkill")  # fault.kind
