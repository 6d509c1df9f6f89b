"""DAVIS-2017 unsupervised J&F, equal to the reference ``davis2017-evaluation``.

J (region) is the per-frame IoU with void pixels excluded (1 where both masks are empty); F (boundary) is the
F-measure of boundary pixels matched within ceil(0.008 * image diagonal) pixels. Each ground-truth object is
assigned one of up to 20 proposals by the Hungarian algorithm on mean (J + F) / 2 over the video.

The reference recomputes both boundaries and both dilations for every (object, proposal) pair; here every
mask's boundary and dilated boundary are computed once per frame and the pairs only count overlaps, which
gives the same numbers for (N + M) instead of 2 N M dilations.

Counting follows the reference's files, not the predictions list: the proposals of a video are labels 1..L of
its result PNGs, L the highest label painted anywhere (a prediction that owns no pixel after painting is no
proposal unless a higher one is painted), and a DAVIS sequence has the objects 1..N, N the highest object id on
its first annotated frame (``objects_from_first_frame``). ``evaluate_davis_folders`` runs the whole protocol on
the reference's own inputs, an annotation folder and a folder of result PNGs.
"""
from __future__ import annotations

import io
import logging
import warnings
from pathlib import Path

import cv2
import numpy as np
from PIL import Image
from scipy.optimize import linear_sum_assignment

from s2d.io.atomic import atomic_write_bytes
from s2d.labelset.types import VideoLabels

log = logging.getLogger(__name__)

MAX_PROPOSALS = 20
BOUND_TH = 0.008


def disk(radius: float) -> np.ndarray:
    """skimage.morphology.disk: points with x^2 + y^2 <= r^2."""
    L = np.arange(-radius, radius + 1)
    X, Y = np.meshgrid(L, L)
    return ((X ** 2 + Y ** 2) <= radius ** 2).astype(np.uint8)


def seg2bmap(seg: np.ndarray) -> np.ndarray:
    """(H, W) mask -> (H, W) bool boundary map, as ``_seg2bmap`` of the reference (same size, no resampling)."""
    seg = seg.astype(bool)
    e = np.zeros_like(seg)
    s = np.zeros_like(seg)
    se = np.zeros_like(seg)
    e[:, :-1] = seg[:, 1:]
    s[:-1, :] = seg[1:, :]
    se[:-1, :-1] = seg[1:, 1:]
    b = seg ^ e | seg ^ s | seg ^ se
    b[-1, :] = seg[-1, :] ^ e[-1, :]
    b[:, -1] = seg[:, -1] ^ s[:, -1]
    b[-1, -1] = 0
    return b


def _boundaries(masks: np.ndarray, void: np.ndarray | None, bound_pix: float):
    """masks (K, T, H, W) -> boundary (K, T, H, W) bool and dilated boundary (K, T, H, W) bool."""
    k_, t_ = masks.shape[:2]
    se = disk(bound_pix)
    bnd = np.zeros(masks.shape, bool)
    dil = np.zeros(masks.shape, bool)
    for k in range(k_):
        for t in range(t_):
            m = masks[k, t] if void is None else masks[k, t] & ~void[t]
            b = seg2bmap(m)
            bnd[k, t] = b
            dil[k, t] = cv2.dilate(b.astype(np.uint8), se) > 0
    return bnd, dil


def _j_matrix(gt: np.ndarray, res: np.ndarray, void: np.ndarray | None) -> np.ndarray:
    """gt (N, T, H, W), res (M, T, H, W) -> J (M, N, T)."""
    n, t = gt.shape[:2]
    keep = np.ones(gt.shape[1:], bool) if void is None else ~void  # (T, H, W)
    g = (gt & keep).reshape(n, t, -1).astype(np.float32)
    r = (res & keep).reshape(res.shape[0], t, -1).astype(np.float32)
    # float32 products of 0/1 are exact integer counts; divide in float64 as the reference does
    inter = np.einsum("mtp,ntp->mnt", r, g).astype(np.float64)
    union = r.sum(-1, dtype=np.float64)[:, None, :] + g.sum(-1, dtype=np.float64)[None, :, :] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        j = inter / union
    j[np.isclose(union, 0)] = 1
    return j


def _f_matrix(gt: np.ndarray, res: np.ndarray, void: np.ndarray | None) -> np.ndarray:
    """gt (N, T, H, W), res (M, T, H, W) -> F (M, N, T)."""
    h, w = gt.shape[-2:]
    bound_pix = BOUND_TH if BOUND_TH >= 1 else np.ceil(BOUND_TH * np.linalg.norm((h, w)))
    gb, gd = _boundaries(gt, void, bound_pix)
    rb, rd = _boundaries(res, void, bound_pix)
    n, t = gt.shape[:2]
    m = res.shape[0]
    flat = lambda x: x.reshape(x.shape[0], t, -1).astype(np.float32)  # noqa: E731
    # exact integer counts (float32 sums of 0/1 products), then float64 ratios as in the reference
    fg_match = np.einsum("mtp,ntp->mnt", flat(rb), flat(gd)).astype(np.float64)  # proposal boundary near gt's
    gt_match = np.einsum("mtp,ntp->mnt", flat(rd), flat(gb)).astype(np.float64)  # gt boundary near proposal's
    n_fg = flat(rb).sum(-1, dtype=np.float64)[:, None, :].repeat(n, 1)          # (M, N, T)
    n_gt = flat(gb).sum(-1, dtype=np.float64)[None, :, :].repeat(m, 0)
    prec = np.where(n_fg > 0, fg_match / np.maximum(n_fg, 1), 1.0)
    rec = np.where(n_gt > 0, gt_match / np.maximum(n_gt, 1), 1.0)
    prec = np.where((n_fg > 0) & (n_gt == 0), 0.0, prec)
    rec = np.where((n_fg == 0) & (n_gt > 0), 0.0, rec)
    with np.errstate(divide="ignore", invalid="ignore"):
        f = np.where(prec + rec == 0, 0.0, 2 * prec * rec / (prec + rec))
    return f


def db_statistics(per_frame: np.ndarray) -> tuple[float, float, float]:
    """Mean, recall (fraction > 0.5) and decay (first quarter minus last quarter), as the reference."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)
        M = np.nanmean(per_frame)
        O = np.nanmean(per_frame > 0.5)
    # uint8 as in the reference: for sequences longer than 256 frames its bin edges wrap, and so do ours
    ids = (np.round(np.linspace(1, len(per_frame), 5) + 1e-10) - 1).astype(np.uint8)
    bins = [per_frame[ids[i]:ids[i + 1] + 1] for i in range(4)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)
        D = np.nanmean(bins[0]) - np.nanmean(bins[3])
    return float(M), float(O), float(D)


def davis_unsupervised_video(gt: np.ndarray, res: np.ndarray, void: np.ndarray | None = None,
                             max_proposals: int = MAX_PROPOSALS) -> tuple[np.ndarray, np.ndarray]:
    """gt (N, T, H, W), res (M, T, H, W) bool -> per-frame J (N, T) and F (N, T) of the assigned pairs, in the
    reference's row order (by proposal, which its per-sequence table names as objects 1..N)."""
    j, f, _ = _assigned(gt, res, void, max_proposals)
    return j, f


def _assigned(gt: np.ndarray, res: np.ndarray, void: np.ndarray | None,
              max_proposals: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """davis_unsupervised_video, plus the ground-truth object (index into gt) of each row."""
    if res.shape[0] > max_proposals:
        raise ValueError(f"{res.shape[0]} proposals, the DAVIS protocol allows at most {max_proposals}")
    if res.shape[0] < gt.shape[0]:
        pad = np.zeros((gt.shape[0] - res.shape[0], *res.shape[1:]), bool)
        res = np.concatenate([res, pad], axis=0)
    # C order, as the reference's np.zeros((M, N, T)) arrays: the means below then add in the same order
    j = np.ascontiguousarray(_j_matrix(gt, res, void))  # (M, N, T)
    f = np.ascontiguousarray(_f_matrix(gt, res, void))
    score = (j.mean(axis=2) + f.mean(axis=2)) / 2  # (M, N)
    row, col = linear_sum_assignment(-score)
    return j[row, col, :], f[row, col, :], col


def label_map(pred: VideoLabels, max_proposals: int = MAX_PROPOSALS) -> np.ndarray:
    """Top-scoring predicted tubes -> (T, H, W) uint8 labels as a DAVIS result PNG holds them: label r is the
    r-th highest score (ties in file order), painted lowest score first so that where tubes overlap the
    higher-scoring one owns the pixel."""
    order = sorted(range(len(pred.instances)), key=lambda i: -pred.instances[i].score)[:max_proposals]
    label = np.zeros((pred.length, pred.height, pred.width), np.uint8)
    if order:
        masks = pred.masks(instances=order)
        for rank in range(len(order) - 1, -1, -1):
            label[masks[rank]] = rank + 1
    return label


def proposals_from_labels(label: np.ndarray) -> np.ndarray:
    """(T, H, W) result labels -> (L, T, H, W) bool proposals, L the highest label present (the reference's
    ``int(np.max(masks))``: labels below it that own no pixel are empty proposals, none above it exist)."""
    n = int(label.max()) if label.size else 0
    return np.stack([label == r for r in range(1, n + 1)]) if n else np.zeros((0, *label.shape), bool)


def proposals_from_predictions(pred: VideoLabels, max_proposals: int = MAX_PROPOSALS) -> np.ndarray:
    """Predicted tubes -> (L, T, H, W) non-overlapping proposals, exactly those a DAVIS result PNG written
    from them (``label_map``) gives the reference."""
    return proposals_from_labels(label_map(pred, max_proposals))


def objects_from_first_frame(gt: VideoLabels) -> np.ndarray:
    """A DAVIS sequence's objects as the reference counts them -> (N, T, H, W) bool.

    The reference takes N = the highest object id on the first frame and evaluates ids 1..N: an id below N that
    is absent from the first frame still counts (empty where it is absent), an object that first appears later
    with a higher id is not evaluated (warned, naming sequence and object). Ground truth without DAVIS ids (any
    other labelset) has no such convention: every instance is an object, in order.
    """
    masks = gt.masks()  # (K, T, H, W)
    ids = [inst.extra.get("davis_id") for inst in gt.instances]
    if not gt.instances or any(i is None for i in ids):
        return masks
    first = [int(i) for i, m in zip(ids, masks) if m[0].any()]
    n = max(first, default=0)
    out = np.zeros((n, *masks.shape[1:]), bool)
    for i, m in zip(ids, masks):
        if int(i) <= n:
            out[int(i) - 1] = m
        else:
            first_t = int(np.flatnonzero(m.reshape(m.shape[0], -1).any(1))[0]) if m.any() else -1
            log.warning("DAVIS sequence '%s': object %d first appears on frame %d, after the first frame; like "
                        "the reference evaluator, J&F counts only the objects 1..%d of the first frame",
                        gt.name, int(i), first_t, n)
    return out


def _dataset_stats(per_video) -> dict[str, float]:
    """Per-object J and F rows of every video (in order) -> the reference's global numbers."""
    stats: dict[str, list[float]] = {k: [] for k in ("J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall",
                                                     "F-Decay")}
    for j, f in per_video:
        for n in range(j.shape[0]):
            for name, arr in (("J", j[n]), ("F", f[n])):
                M, O, D = db_statistics(arr)
                stats[f"{name}-Mean"].append(M)
                stats[f"{name}-Recall"].append(O)
                stats[f"{name}-Decay"].append(D)
    out = {k: float(np.mean(v)) if v else float("nan") for k, v in stats.items()}
    out["J&F-Mean"] = (out["J-Mean"] + out["F-Mean"]) / 2
    return out


def davis_jf(gt_videos: list[VideoLabels], pred_videos: dict[str, VideoLabels],
             voids: dict[str, np.ndarray] | None = None,
             per_object: list[tuple[str, int, float, float]] | None = None) -> dict[str, float]:
    """Data-set J&F: J/F mean, recall, decay over all objects of all videos, and J&F-Mean. ``per_object``, when
    given, receives (video, object id, J-Mean, F-Mean) for every object evaluated, by video and id, from the same
    computation: the reference's per-sequence table, except that it names its rows 1..N in the order of the
    proposals they were assigned, not of the objects they score."""

    def per_video():
        for g in gt_videos:
            gm = objects_from_first_frame(g)
            if not len(gm):
                continue
            p = pred_videos.get(g.name)
            res = proposals_from_predictions(p) if p is not None else np.zeros((0, *gm.shape[1:]), bool)
            j, f, obj = _assigned(gm, res, None if voids is None else voids.get(g.name), MAX_PROPOSALS)
            if per_object is not None:  # named by the object each row scores (the reference names rows 1..N)
                per_object.extend(sorted((g.name, int(obj[n]) + 1, db_statistics(j[n])[0], db_statistics(f[n])[0])
                                         for n in range(j.shape[0])))
            yield j, f

    return _dataset_stats(per_video())


def _read_png_stack(files: list[Path]) -> np.ndarray:
    arrs = []
    for f in files:
        with Image.open(f) as im:
            arrs.append(np.array(im))
    return np.stack(arrs)


def evaluate_davis_folders(annotations: str | Path, results: str | Path,
                           sequences: list[str] | None = None) -> dict[str, float]:
    """The unsupervised DAVIS protocol on its own files: ``annotations/<seq>/*.png`` (palette PNGs, 255 void)
    and ``results/<seq>/<same stem>.png`` (labels 1..L). ``sequences``: the order of the image-set file (the
    global means add objects in that order); default sorted folder names. Numbers as the reference prints them.
    """
    annotations, results = Path(annotations), Path(results)
    seqs = sequences if sequences is not None else sorted(d.name for d in annotations.iterdir() if d.is_dir())

    def per_video():
        for seq in seqs:
            files = sorted((annotations / seq).glob("*.png"))
            if not files:
                raise FileNotFoundError(f"no annotation PNGs in {annotations / seq}")
            masks = _read_png_stack(files).astype(np.int64)  # (T, H, W)
            void = masks == 255
            masks[void] = 0
            n = int(masks[0].max())
            if n == 0:  # no object on the first frame: the reference evaluates none in this sequence
                continue
            gt = np.stack([masks == i for i in range(1, n + 1)])
            missing = [f.name for f in files if not (results / seq / f.name).is_file()]
            if missing:
                raise FileNotFoundError(f"sequence '{seq}': no result PNG for frame(s) {missing[:5]} in "
                                        f"{results / seq}")
            res = proposals_from_labels(_read_png_stack([results / seq / f.name for f in files]))
            if res.shape[1:] != gt.shape[1:]:
                raise ValueError(f"sequence '{seq}': result size {res.shape[2:]} differs from the annotations' "
                                 f"{gt.shape[2:]}")
            yield davis_unsupervised_video(gt, res, void)

    return _dataset_stats(per_video())


def voc_palette() -> np.ndarray:
    """(256, 3) uint8: the PASCAL VOC colour map that DAVIS palette PNGs carry (bits of the index spread over
    the high bits of R, G and B)."""
    pal = np.zeros((256, 3), np.uint8)
    for i in range(256):
        c, rgb = i, [0, 0, 0]
        for k in range(8):
            for ch in range(3):
                rgb[ch] |= ((c >> ch) & 1) << (7 - k)
            c >>= 3
        pal[i] = rgb
    return pal


def write_davis_results(pred: VideoLabels, folder: str | Path, frame_names: list[str] | None = None) -> None:
    """Write one video's predictions as DAVIS result PNGs (palette, labels as ``label_map`` paints them), the
    files ``evaluate_davis_folders`` and the reference evaluator read. ``frame_names``: file stems, default
    00000, 00001, ... as DAVIS names its frames."""
    folder = Path(folder)
    label = label_map(pred)
    names = frame_names or [f"{t:05d}" for t in range(pred.length)]
    pal = voc_palette().flatten().tolist()
    for t, name in enumerate(names):
        im = Image.fromarray(label[t], mode="P")
        im.putpalette(pal)
        buf = io.BytesIO()
        im.save(buf, format="PNG")
        atomic_write_bytes(folder / f"{name}.png", buf.getvalue())
