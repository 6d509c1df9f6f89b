"""Labelsets: per-video instance masks in the YouTube-VIS json format.

One format serves every stage: ground truth, single-frame masks, the sparse keymask labelset (null on frames
without a keymask), the dense labelset and model predictions.
"""
from s2d.labelset.types import Instance, Labelset, VideoLabels
from s2d.labelset.ytvis import (labelset_from_json, labelset_to_json, predictions_from_json,
                                predictions_to_json, read_json_file, read_labelset_json)
from s2d.labelset.store import LabelsetStore, read_labelset

__all__ = ["Instance", "Labelset", "VideoLabels", "LabelsetStore", "read_labelset", "labelset_from_json",
           "labelset_to_json", "predictions_from_json", "predictions_to_json", "read_json_file",
           "read_labelset_json"]
