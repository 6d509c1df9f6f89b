"""Whole videos with their ground truth, for validation during training (video AP of the EMA teacher).

Videos are split over ranks as names[rank::world] (no padding: the metric gathers every rank's videos and
counts each once), so validation costs 1/world of the set per rank.
"""
from __future__ import annotations

from torch.utils.data import Dataset

from s2d.data.sources import Dataset as VideoDataset


class WholeVideoDataset(Dataset):
    def __init__(self, videos: VideoDataset, names: list[str]):
        missing = [n for n in names if n not in videos.names]
        if missing:
            raise KeyError(f"validation videos not in the data set: {missing[:10]}")
        self.videos, self.names = videos, list(names)

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int) -> dict:
        r = self.videos[self.names[index]]
        if r.gt is None:
            raise ValueError(f"video '{r.name}' has no ground truth to validate against")
        return {"video": r.name, "frames": r.video.frames(), "gt": r.gt}  # frames (T, H, W, 3) uint8


def first_item(batch: list[dict]) -> dict:
    """Collate for batch size 1: the item itself (videos differ in length and size)."""
    return batch[0]
