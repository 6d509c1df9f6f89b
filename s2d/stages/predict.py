"""Stage "predict": a model (typically published weights via ``model.pretrained``) on every video of a data
set, the official way, written as a YouTube-VIS results json; scored when the data set has ground truth.

Frames are read at the data config's size (``data.short_side``: the official test-time short side is 360 for
YouTube-VIS), each video goes through the model in one pass, the top ``predict.topk`` queries are kept and their
masks are brought back to the original frame size (``VideoMask2Former.masks_at``). Scores are computed at the
original resolution against the data set's own annotations.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from s2d.compute import compute_env
from s2d.io.atomic import atomic_write_json
from s2d.labelset import rle
from s2d.labelset.types import Instance, Labelset, VideoLabels

log = logging.getLogger(__name__)


def run(cfg: Any, run_dir: Path) -> dict:
    from tqdm import tqdm

    from s2d.data.shots import cut_like
    from s2d.data.sources import Dataset, open_dataset
    from s2d.inference.device import resolve_device
    from s2d.inference.video_predict import predict_topk
    from s2d.labelset.ytvis import predictions_to_json
    from s2d.models import VideoMask2Former
    from s2d.stages.data import data_root, load_data
    from s2d.stages.evaluate import format_table, score

    if cfg.model.pretrained is None:
        log.warning("model.pretrained is not set: predicting with randomly initialised weights")
    device = resolve_device(cfg.predict.device)
    model = VideoMask2Former.from_config(dict(cfg.model)).eval().to(device)
    ds = load_data(cfg)
    # ground truth is scored at the original resolution: only then is the data set opened a second time
    full = None
    if ds.has_gt:
        files = sorted({r.source for r in ds})
        full = open_dataset(cfg.data.kind, data_root(cfg), cfg.data.ann_file, None, None, None, files,
                            cfg.data.stride, cfg.data.max_frames)
        full = Dataset(cut_like(full.records, ds.records), full.kind, full.root)  # cut as the working set (data.shots)
    gt = full.gt_labelset() if full is not None else None
    # class-agnostic: every prediction gets the first declared category, so the reference counts it
    category = min(int(c["id"]) for c in gt.categories) if gt is not None else 1
    videos = []
    for r in tqdm(list(ds), desc="predict", unit="video", disable=not cfg.progress):
        H0, W0 = r.video.stored_size
        masks, scores = predict_topk(model, r.video.frames(), cfg.predict.topk, (H0, W0), device)
        v = VideoLabels(r.name, H0, W0, len(r.video), r.video.frame_names(), [], r.id)
        v.instances = [Instance([rle.encode(m) for m in tube], float(s), category) for tube, s in zip(masks, scores)]
        videos.append(v)
    pred = Labelset(videos)
    out = Path(cfg.predict.out) if cfg.predict.out else run_dir / "predictions.json"
    atomic_write_json(out, predictions_to_json(pred))
    log.info("predictions of %d videos written to %s", len(videos), out)
    result: dict = {"predictions": str(out)}
    if gt is not None:
        voids = {r.name: r.void for r in full if r.void is not None}  # type: ignore[union-attr]
        metrics = score(gt, pred, voids, cfg.eval.davis_jf, workers=cfg.eval.workers)
        atomic_write_json(run_dir / "metrics.json", {"predictions": str(out), "metrics": metrics,
                                                     "compute": compute_env()}, indent=1)
        table = format_table({out.name: metrics})
        print(table)
        result["metrics"] = metrics
    return result
