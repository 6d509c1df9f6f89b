"""CoTracker3 (offline) from a local clone of the co-tracker repository and a local checkpoint.

Nothing is downloaded: ``repo`` is a folder containing the ``cotracker`` package (a git clone of
facebookresearch/co-tracker) and ``checkpoint`` the weights file (e.g. ``scaled_offline.pth``). The model is
called once per video with every query of the video, with backward tracking on, as the method prescribes.
"""
from __future__ import annotations

import importlib
import inspect
import sys
from pathlib import Path

import numpy as np
import torch

from s2d.errors import ConfigError
from s2d.tracking.base import Tracks, check_queries
from s2d.tracking.params import TrackerParams


class CoTrackerTracker:
    def __init__(self, repo: str | None, checkpoint: str | None, device: str = TrackerParams.device,
                 window_len: int = TrackerParams.window_len,
                 visibility_threshold: float = 0.5):
        if not repo or not (Path(repo) / "cotracker" / "predictor.py").is_file():
            raise ConfigError("tracker.cotracker_repo", f"{repo!r} is not a local clone of the co-tracker repository "
                              "(expected <repo>/cotracker/predictor.py)")
        if not checkpoint or not Path(checkpoint).is_file():
            raise ConfigError("tracker.cotracker_checkpoint", f"checkpoint file {checkpoint!r} does not exist "
                              "(e.g. checkpoints/scaled_offline.pth from the CoTracker3 release)")
        repo_s = str(Path(repo).resolve())
        if repo_s not in sys.path:
            sys.path.insert(0, repo_s)
        try:
            predictor = importlib.import_module("cotracker.predictor")
        except Exception as e:
            raise ConfigError("tracker.cotracker_repo", f"cannot import cotracker.predictor from {repo}: {e}") from None
        cls = predictor.CoTrackerPredictor
        accepted = inspect.signature(cls.__init__).parameters
        kwargs = {k: v for k, v in dict(checkpoint=str(checkpoint), offline=True, window_len=window_len).items()
                  if k in accepted}
        self.model = cls(**kwargs).to(device).eval()
        self.device = device
        self.visibility_threshold = visibility_threshold

    @torch.no_grad()
    def track(self, frames: np.ndarray, queries: np.ndarray) -> Tracks:
        T, H, W = frames.shape[:3]
        q = check_queries(queries, T, H, W)
        if len(q) == 0:
            return Tracks(np.zeros((T, 0, 2), np.float32), np.zeros((T, 0), bool))
        video = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2)[None].float().to(self.device)
        tracks, vis = self.model(video, queries=torch.from_numpy(q)[None].to(self.device), backward_tracking=True)
        vis = vis[0]
        if vis.dtype != torch.bool:
            vis = vis > self.visibility_threshold
        return Tracks(tracks[0].float().cpu().numpy(), vis.cpu().numpy())
