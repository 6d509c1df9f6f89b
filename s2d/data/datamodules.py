"""LightningDataModules over clip datasets. Shuffling is a function of (seed, epoch) and items are split
over ranks as perm[rank::world], so a global batch is the same clips whatever the number of processes."""
from __future__ import annotations

import lightning as L
import torch
from torch.utils.data import DataLoader, Sampler

from s2d.data.clips import AugmentConfig, ClipDataset, collate
from s2d.data.sources import Dataset as VideoDataset
from s2d.errors import ConfigError
from s2d.labelset.types import Labelset


class EpochShuffleSampler(Sampler[int]):
    def __init__(self, n: int, seed: int, rank: int = 0, world: int = 1, dataset: ClipDataset | None = None):
        self.n, self.seed, self.rank, self.world, self.epoch = n, seed, rank, world, 0
        self.dataset = dataset
        # equal counts per rank; the tail that does not fill a round is left out (like drop_last), so an epoch
        # is the same global batches for any world size. Fewer items than ranks: indices wrap around.
        self.per_rank = max(n // world, 1)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        if self.dataset is not None:
            self.dataset.set_epoch(epoch)

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        perm = torch.randperm(self.n, generator=g).tolist()
        perm = (perm * (self.world * self.per_rank // max(self.n, 1) + 1))[: self.world * self.per_rank]
        return iter(perm[self.rank::self.world])

    def __len__(self) -> int:
        return self.per_rank


class ClipDataModule(L.LightningDataModule):
    """Training clips from a labelset: ``mode="sparse"`` (keymask windows + fallback) or ``"dense"``.

    Its sampler splits clips over ranks itself: build the Trainer with ``use_distributed_sampler=False``.
    """

    def __init__(self, videos: VideoDataset, labels: Labelset, mode: str = "sparse", batch_size: int = 4,
                 clip_length: int = 3, num_workers: int = 0, fallback_radius: int = 20, seed: int = 0,
                 augment: AugmentConfig = AugmentConfig()):
        super().__init__()
        self.videos, self.labels, self.mode = videos, labels, mode
        self.batch_size, self.clip_length, self.num_workers = batch_size, clip_length, num_workers
        self.fallback_radius, self.seed, self.augment = fallback_radius, seed, augment
        self.dataset: ClipDataset | None = None

    def setup(self, stage: str | None = None) -> None:
        world = self.trainer.world_size if self.trainer is not None else 1
        if self.batch_size % world:
            raise ConfigError("data.batch_size", f"global batch {self.batch_size} is not divisible by the "
                              f"{world} processes")
        self.dataset = ClipDataset(self.videos, self.labels, self.clip_length, self.mode, self.fallback_radius,
                                   augment=self.augment, seed=self.seed)

    def train_dataloader(self) -> DataLoader:
        assert self.dataset is not None
        world = self.trainer.world_size if self.trainer is not None else 1
        rank = self.trainer.global_rank if self.trainer is not None else 0
        sampler = EpochShuffleSampler(len(self.dataset), self.seed, rank, world, self.dataset)
        return DataLoader(self.dataset, batch_size=self.batch_size // world, sampler=sampler, collate_fn=collate,
                          num_workers=self.num_workers, drop_last=True, persistent_workers=False)


def KeymaskSparseDataModule(videos: VideoDataset, labels: Labelset, **kwargs) -> ClipDataModule:  # noqa: N802
    return ClipDataModule(videos, labels, mode="sparse", **kwargs)


def DenseVideoDataModule(videos: VideoDataset, labels: Labelset, **kwargs) -> ClipDataModule:  # noqa: N802
    return ClipDataModule(videos, labels, mode="dense", **kwargs)
