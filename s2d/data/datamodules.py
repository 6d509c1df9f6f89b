"""LightningDataModules over clip datasets. Shuffling is a function of (seed, epoch) and items are split
over ranks as perm[rank::world], so a global batch is the same clips whatever the number of processes.

Resume: the data position is a function of the optimizer step count alone. Every epoch has the same number of
batches and every step takes one batch, so when the loader starts iterating at global step k it serves epoch
k // batches_per_epoch from its (k % batches_per_epoch)-th batch on. A run resumed from any checkpoint (mid-epoch,
after an exception, SIGTERM or SLURM's signal, or one that stopped at ``max_steps`` mid-epoch and now runs longer)
sees exactly the batches of an uninterrupted run, whatever Lightning's own epoch counter says.
"""
from __future__ import annotations

import signal
from typing import Callable

import lightning as L
import torch
from torch.utils.data import DataLoader, Sampler

from s2d.seeds import epoch_seed
from s2d.data.clips import AugmentConfig, ClipDataset, collate
from s2d.data.sources import Dataset as VideoDataset
from s2d.data.whole_videos import WholeVideoDataset, first_item
from s2d.errors import ConfigError
from s2d.labelset.types import Labelset


class EpochShuffleSampler(Sampler[int]):
    def __init__(self, n: int, seed: int, rank: int = 0, world: int = 1, dataset: ClipDataset | None = None):
        self.n, self.seed, self.rank, self.world, self.epoch = n, seed, rank, world, 0
        self.dataset = dataset
        self.skip = 0  # items of this rank's share of the epoch already trained on (resume)
        # equal counts per rank; the tail that does not fill a round is left out (like drop_last), so an epoch
        # is the same global batches for any world size. Fewer items than ranks: indices wrap around.
        self.per_rank = max(n // world, 1)

    def set_position(self, epoch: int, items_done: int = 0) -> None:
        """Serve ``epoch``'s order from its ``items_done``-th item (of this rank's share) on."""
        self.epoch, self.skip = epoch, items_done
        if self.dataset is not None:
            self.dataset.set_epoch(epoch)

    def __iter__(self):
        g = torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch))
        perm = torch.randperm(self.n, generator=g).tolist()
        perm = (perm * (self.world * self.per_rank // max(self.n, 1) + 1))[: self.world * self.per_rank]
        return iter(perm[self.rank::self.world][self.skip:])

    def __len__(self) -> int:
        return self.per_rank


def _worker_ignores_job_signals(worker_id: int) -> None:
    """Data-loader workers are forked with the trainer's Python signal handlers. SLURM may signal every process
    of the job: only the main process may checkpoint and requeue, so workers ignore SIGUSR1/SIGTERM (they end
    with the main process anyway)."""
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


class ResumableDataLoader(DataLoader):
    """Serves the batches of global step k on (see the module docstring). ``global_step`` is a callable that
    returns the trainer's optimizer step count, bound by the data module. The sampler has no ``set_epoch`` on
    purpose: Lightning's epoch counter is not the data position (it closes an epoch when a run stops at
    ``max_steps`` mid-epoch)."""

    global_step: Callable[[], int] = staticmethod(lambda: 0)

    def __iter__(self):
        epoch, done = divmod(self.global_step(), len(self))
        # before super().__iter__(): worker processes are forked there, with the dataset's epoch as it is now
        self.sampler.set_position(epoch, done * self.batch_size)
        return super().__iter__()

    # state_dict/load_state_dict make Lightning treat the loader as resumable; the position itself follows from
    # the restored step count, the state only guards against a changed epoch length
    def state_dict(self) -> dict:
        return {"batches_per_epoch": len(self)}

    def load_state_dict(self, state: dict) -> None:
        if state.get("batches_per_epoch", len(self)) != len(self):
            raise ConfigError("train.batch_size", f"the checkpoint was written with {state['batches_per_epoch']} "
                              f"batches per epoch, this run has {len(self)}: the data, the batch size or the "
                              "number of processes changed, so the run cannot continue where it stopped")


class ClipDataModule(L.LightningDataModule):
    """Training clips from a labelset: ``mode="sparse"`` (keymask windows + fallback) or ``"dense"``.

    Its sampler splits clips over ranks itself: build the Trainer with ``use_distributed_sampler=False``.
    """

    def __init__(self, videos: VideoDataset, labels: Labelset, mode: str = "sparse", batch_size: int = 4,
                 clip_length: int = 3, num_workers: int = 0, fallback_radius: int = 20, seed: int = 0,
                 augment: AugmentConfig = AugmentConfig(), on_error: str = "raise", retries: int = 3,
                 quarantine: str | None = None, val_videos: list[str] | None = None, teach_absent: bool = False,
                 frame_cache_mb: float = 0, score_targets: bool = False, drop_cut_frames: bool = False,
                 repeat_iou: float | None = None, val_data: VideoDataset | None = None, teacher_scores: bool = False):
        super().__init__()
        self.val_data = videos if val_data is None else val_data  # the videos validation reads (with ground truth)
        self.repeat_iou = repeat_iou  # dense mode: a target repeating a higher-scored one of its clip is none
        self.drop_cut_frames = drop_cut_frames  # dense mode: frames label.one_identity cut stay unknown
        self.score_targets = score_targets  # dense mode: the labelset's scores are the class targets
        self.teacher_scores = teacher_scores  # ... the teacher's foreground probabilities, not the ranked scores
        self.teach_absent = teach_absent  # dense mode: empty frames of the labeller's tubes taught as absent
        self.videos, self.labels, self.mode = videos, labels, mode
        self.batch_size, self.clip_length, self.num_workers = batch_size, clip_length, num_workers
        self.fallback_radius, self.seed, self.augment = fallback_radius, seed, augment
        self.on_error, self.retries, self.quarantine = on_error, retries, quarantine
        self.val_videos = val_videos  # whole videos with ground truth, scored during training (None: no validation)
        self.frame_cache_mb = frame_cache_mb  # decoded frames kept per process (s2d/data/frame_cache.py)
        self.dataset: ClipDataset | None = None

    def setup(self, stage: str | None = None) -> None:
        world = self.trainer.world_size if self.trainer is not None else 1
        if self.batch_size % world:
            raise ConfigError("train.batch_size", f"global batch {self.batch_size} is not divisible by the "
                              f"{world} processes")
        self.dataset = ClipDataset(self.videos, self.labels, self.clip_length, self.mode, self.fallback_radius,
                                   augment=self.augment, seed=self.seed, on_error=self.on_error,
                                   retries=self.retries, quarantine=self.quarantine, teach_absent=self.teach_absent,
                                   frame_cache_mb=self.frame_cache_mb, score_targets=self.score_targets,
                                   drop_cut_frames=self.drop_cut_frames, repeat_iou=self.repeat_iou,
                                   teacher_scores=self.teacher_scores)

    def train_dataloader(self) -> DataLoader:
        assert self.dataset is not None
        world = self.trainer.world_size if self.trainer is not None else 1
        rank = self.trainer.global_rank if self.trainer is not None else 0
        sampler = EpochShuffleSampler(len(self.dataset), self.seed, rank, world, self.dataset)
        loader = ResumableDataLoader(self.dataset, batch_size=self.batch_size // world, sampler=sampler,
                                     collate_fn=collate, num_workers=self.num_workers, drop_last=True,
                                     persistent_workers=False, worker_init_fn=_worker_ignores_job_signals)
        if self.trainer is not None:
            trainer = self.trainer
            loader.global_step = lambda: trainer.global_step
        return loader


    def val_dataloader(self) -> DataLoader:
        if not self.val_videos:
            return []  # Lightning skips validation
        world = self.trainer.world_size if self.trainer is not None else 1
        rank = self.trainer.global_rank if self.trainer is not None else 0
        return DataLoader(WholeVideoDataset(self.val_data, self.val_videos[rank::world]), batch_size=1,
                          collate_fn=first_item, num_workers=0)
