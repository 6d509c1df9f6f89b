"""Matching and losses for class-agnostic video mask prediction (pure torch)."""
from s2d.losses.criterion import LossParams, VideoSetCriterion
from s2d.losses.matcher import HungarianMatcher

__all__ = ["LossParams", "VideoSetCriterion", "HungarianMatcher"]
