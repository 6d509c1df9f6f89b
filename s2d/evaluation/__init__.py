"""Class-agnostic video instance segmentation metrics: YouTube-VIS video AP/AR and DAVIS-2017 J&F.

``ytvis_ap.evaluate`` equals the YouTube-VIS cocoapi (``ytvoseval.py``, ``useCats=0``) to floating-point
precision; ``reference.py`` is a line-by-line port of that evaluator's structure, kept as the test oracle and
as the baseline that ``benchmarks/eval_speed.py`` times against.
"""
from s2d.evaluation.davis_jf import davis_jf, proposals_from_predictions
from s2d.evaluation.params import STAT_NAMES
from s2d.evaluation.ytvis_ap import evaluate_ap

__all__ = ["evaluate_ap", "STAT_NAMES", "davis_jf", "proposals_from_predictions"]
