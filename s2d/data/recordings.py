"""The data set the learned stages read with ``train.full_rate``: each video's recording in its place, where the
data has the frames between its own (s2d.data.full_rate), and the way back from what they made there to the
video's own frames, where the ground truth is (docs/RESULTS.md, "The learned stages on the recording")."""
from __future__ import annotations

from s2d.data.sources import Dataset, VideoRecord
from s2d.labelset.types import Labelset


def recordings(ds: Dataset) -> Dataset:
    """The data set the learned stages read with ``train.full_rate``: each video with frames between its own is
    its recording (same name and id, no ground truth: that is on the kept frames only), the others as they are."""
    return Dataset([r if r.video.full_rate is None else VideoRecord(r.video.full_rate.video, r.id, shot=r.shot)
                    for r in ds], ds.kind, ds.root)


def on_kept_frames(labels: Labelset, ds: Dataset) -> Labelset:
    """A labelset made on the recordings of ``ds``'s videos (``recordings``) on the videos' own frames: each
    video's tubes on its kept frames, named and sized as the video (its frame names, its id). A tube with no mask
    there is left out. Videos without a recording are as they are."""
    out = []
    for v in labels:
        full = ds[v.name].video.full_rate
        if full is None:
            out.append(v)
            continue
        if v.length < full.length:
            raise ValueError(f"labels of '{v.name}' have {v.length} frames, its recording {full.length}")
        kept = v.select(full.at)
        kept.file_names, kept.id = ds.skeleton(v.name).file_names, ds[v.name].id
        out.append(kept)
    return Labelset(out, labels.categories, labels.info)
