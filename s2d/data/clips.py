"""Training clips: frames + per-instance masks, with clip-consistent augmentation (s2d/data/augment.py).

An item is (video, frame indices). Everything random about an item — fallback frames and augmentation
parameters — is drawn from a generator seeded by (seed, epoch, item index), so the same item looks the same
on any rank, in any worker, after a resume, and different in the next epoch.

Unreadable frames: with ``on_error="raise"`` (default) the error names the video and frame and stops the run;
with ``on_error="substitute"`` the next items (index + 1, + 2, ... at most ``retries``) stand in, each failure
is appended to ``quarantine`` (one JSON line: video, frame, error, epoch, substitute) and the item is flagged
so that training logs ``data/substituted``. The substitute is a function of the index, so it stays
deterministic across ranks, workers and resumes.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from s2d.data.augment import AugmentConfig, augment_clip
from s2d.data.clip_sampling import fallback_frames, keymask_windows, pad_frames
from s2d.data.frame_cache import FrameCache
from s2d.data.repeated_targets import repeated_targets
from s2d.data.sources import Dataset as VideoDataset
from s2d.errors import ConfigError, VideoError
from s2d.labelset import rle as rle_utils
from s2d.labelset.types import Labelset
from s2d.seeds import item_seed


class ClipDataset(Dataset):
    def __init__(self, videos: VideoDataset, labels: Labelset, length: int = 3, mode: str = "sparse",
                 fallback_radius: int = 20, fallback_per_video: int = 1, augment: AugmentConfig = AugmentConfig(),
                 seed: int = 0, on_error: str = "raise", retries: int = 3, quarantine: str | Path | None = None,
                 teach_absent: bool = False, frame_cache_mb: float = 0, score_targets: bool = False,
                 drop_cut_frames: bool = False, repeat_iou: float | None = None, teacher_scores: bool = False):
        """``frame_cache_mb``: decoded frames kept in memory per process (s2d/data/frame_cache.py; 0: none).
        ``score_targets`` (dense mode): each item also gives its instances' labelset scores (``target_scores``),
        the class targets of soft pseudo-labels; with ``teacher_scores`` a teacher tube's target is its
        foreground probability before the ranking (``extra["teacher_score"]``); a kept keymask instance keeps its score.
        ``teach_absent`` (dense mode): a tube's empty frame is the labeller saying the object is absent, and the
        item flags it so (``known_empty``), except for instances marked ``kept`` (sparse keymask instances the
        dense labelset carries over: their empty frames are unknown, as in the distill stage). ``known_empty`` is
        (N, T): with ``drop_cut_frames`` a tube's ``cut_frames`` (frames ``label.one_identity`` gave to another
        object) are unknown too. ``repeat_iou`` (dense mode): a target whose masks over the clip repeat a
        higher-scored target's at this IoU is left out of the item (``s2d.data.repeated_targets``; None: none)."""
        if on_error not in ("raise", "substitute"):
            raise ValueError(f"on_error must be raise|substitute, got '{on_error}'")
        self.videos, self.labels, self.length, self.mode = videos, labels, length, mode
        self.radius, self.augment, self.seed = fallback_radius, augment, seed
        self.on_error, self.retries, self.quarantine = on_error, retries, quarantine
        self.teach_absent = teach_absent and mode != "sparse"
        self.drop_cut_frames = drop_cut_frames
        self.score_targets = score_targets and mode != "sparse"
        self.teacher_scores = teacher_scores and self.score_targets
        self.repeat_iou = repeat_iou if mode != "sparse" else None
        self.epoch = 0
        self.frame_cache = FrameCache(int(frame_cache_mb * 2 ** 20))
        self.items: list[tuple[str, int | None]] = []  # (video, window start) or (video, None) = fallback
        for name in videos.names:
            if name not in labels:
                raise KeyError(f"video '{name}' has no labels in the labelset (pairing is by video name)")
            lv = labels[name]
            if mode == "sparse":
                starts = keymask_windows(lv, length)
                self.items += [(name, s) for s in starts] or [(name, None)] * fallback_per_video
            else:
                self.items += [(name, s) for s in range(max(1, lv.length - length + 1))]
            if self.teacher_scores:
                missing = [k for k, i in enumerate(lv.instances)
                           if not i.extra.get("kept") and "teacher_score" not in i.extra]
                if missing:  # a labelset made before the probabilities were written down, or by another tool
                    raise ConfigError("final.teacher_scores", f"video '{name}': instance(s) {missing[:5]} of the "
                                      "dense labelset hold no teacher_score (made before it was recorded): "
                                      "delete the labelset's folder to make it again, or set "
                                      "final.teacher_scores=false")

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.items)

    def frames_of(self, index: int, rng: np.random.Generator) -> list[int]:
        name, start = self.items[index]
        T = self.labels[name].length
        if start is None:
            return fallback_frames(T, self.length, self.radius, rng)
        return pad_frames(list(range(start, min(start + self.length, T))), self.length)

    def __getitem__(self, index: int) -> dict:
        if self.on_error == "raise":
            return {**self._item(index), "substituted": 0}
        errors = []
        for k in range(self.retries + 1):
            j = (index + k) % len(self.items)
            try:
                return {**self._item(j), "substituted": int(k > 0)}
            except VideoError as e:
                errors.append(str(e))
                self._record(e, j, substitute=(index + k + 1) % len(self.items) if k < self.retries else None)
        raise VideoError(f"clip {index} and its {self.retries} substitutes are all unreadable: {errors}",
                         video_id=self.items[index][0])

    def _record(self, e: VideoError, index: int, substitute: int | None) -> None:
        if self.quarantine is None:
            return
        line = json.dumps({"video": e.video_id, "frame": e.frame_index, "error": str(e), "epoch": self.epoch,
                           "item": index, "substitute": substitute}) + "\n"
        # one O_APPEND write per line: lines from several data-loader workers never interleave
        fd = os.open(self.quarantine, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)

    def _item(self, index: int) -> dict:
        rng = np.random.default_rng(item_seed(self.seed, self.epoch, index))
        name = self.items[index][0]
        frames = self.frames_of(index, rng)
        video = self.videos[name].video
        lv = self.labels[name]
        stack = np.stack([self.frame_cache.get((name, t), lambda t=t: video[t]) for t in frames])  # (T, H, W, 3)
        imgs = torch.from_numpy(stack).permute(0, 3, 1, 2).float() / 255  # (T, 3, H, W)
        masks, known, scores = [], [], []
        for inst in lv.instances:
            segs = [inst.segmentations[t] for t in frames]
            if any(s is not None for s in segs):
                masks.append(rle_utils.decode_many(segs, lv.height, lv.width))
                kept = inst.extra.get("kept", False)  # an earlier label carried over, not a teacher tube
                absent = self.teach_absent and not kept
                cut = set(inst.extra.get("cut_frames", ())) if self.drop_cut_frames else set()
                known.append([absent and t not in cut for t in frames])
                teacher = self.teacher_scores and not kept
                scores.append(min(max(float(inst.extra["teacher_score"] if teacher else inst.score), 0.0), 1.0))
        tgt = torch.from_numpy(np.stack(masks)).float() if masks else torch.zeros(0, len(frames), lv.height, lv.width)
        if self.augment.enabled:
            imgs, tgt = augment_clip(imgs, tgt, self.augment, int(rng.integers(2 ** 31)))
        # A tube the crop left empty on every frame is no object in this clip (the official data path drops it
        # too): as a target it would teach "object" to a query with no mask, and several such targets tie in
        # the Hungarian matching, where float noise decides which query gets which one's score.
        present = tgt.flatten(1).any(1)                                                         # (N,)
        if self.repeat_iou is not None:  # after the crop: what repeats is judged on what the model is shown
            score_t = torch.tensor(scores, dtype=torch.float32)
            present &= ~repeated_targets(tgt, score_t, self.repeat_iou)
        known_t = torch.tensor(known, dtype=torch.bool).reshape(-1, len(frames))[present]              # (N, T)
        item = {"clip": imgs, "targets": tgt[present], "known_empty": known_t, "video": name,
                "frames": frames, "index": index}
        if self.score_targets:
            item["target_scores"] = torch.tensor(scores, dtype=torch.float32)[present]  # (N,)
        return item


def collate(items: list[dict]) -> dict:
    extra = {"target_scores": [i["target_scores"] for i in items]} if "target_scores" in items[0] else {}
    return {**extra, "clips": torch.stack([i["clip"] for i in items]), "targets": [i["targets"] for i in items],
            "known_empty": [i["known_empty"] for i in items],
            "videos": [i["video"] for i in items], "frames": [i["frames"] for i in items],
            "indices": torch.tensor([i["index"] for i in items]),
            "substituted": sum(i.get("substituted", 0) for i in items)}
