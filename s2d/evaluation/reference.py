"""A straightforward port of the YouTube-VIS cocoapi evaluator (``ytvos.py`` + ``ytvoseval.py``, ``useCats=0``).

Kept deliberately in the reference's structure and data path: it reads the dataset dict and the results list as
the reference's ``YTVOS`` / ``loadRes`` do (annotations indexed per video in file order, videos and categories
sorted, detections re-numbered from 1, predictions of undeclared categories silently dropped, detections and
ground truth ordered by category before score), builds a tube IoU from two RLE merges per (detection, ground
truth, frame), and matches greedily with nested Python loops over thresholds, detections and ground truth, once
per area range. It is the oracle the tests compare ``ytvis_ap`` against, and the baseline that
``benchmarks/eval_speed.py`` times. Do not optimise it.
"""
from __future__ import annotations

import copy
from collections import defaultdict

import numpy as np
from pycocotools import mask as mask_utils

from s2d.evaluation.params import AREA_RNGS, IOU_THRS, MAX_DETS, REC_THRS, summarize
from s2d.labelset.rle import _as_coco
from s2d.labelset.types import Labelset


def _avg_area(areas):
    l = [a for a in areas if a]
    return 0 if len(l) == 0 else np.array(l).mean()


def _to_rle(seg, h, w):
    """annToRLE: polygons and uncompressed RLE -> compressed RLE; compressed RLE unchanged."""
    if isinstance(seg, list):
        return mask_utils.merge(mask_utils.frPyObjects(seg, h, w))
    if isinstance(seg["counts"], list):
        return mask_utils.frPyObjects(seg, h, w)
    return _as_coco(seg)


def _iou_seq(d_seq, g_seq):
    i = .0
    u = .0
    for d, g in zip(d_seq, g_seq):
        if d and g:
            i += mask_utils.area(mask_utils.merge([d, g], True))
            u += mask_utils.area(mask_utils.merge([d, g], False))
        elif not d and g:
            u += mask_utils.area(g)
        elif d and not g:
            u += mask_utils.area(d)
    return i / u if u > .0 else .0


def _load(dataset: dict, results: list):
    """YTVOS(dataset) + loadRes(results) + YTVOSeval._prepare, useCats=0."""
    vids = {v["id"]: v for v in dataset["videos"]}
    cat_ids = sorted(c["id"] for c in dataset["categories"])
    vid_ids = sorted(vids)
    gts_all = copy.deepcopy(dataset.get("annotations", []))
    dts_all = copy.deepcopy(results)
    for k, d in enumerate(dts_all):  # loadRes
        d["areas"] = [mask_utils.area(_as_coco(s)) if s else None for s in d["segmentations"]]
        d["id"] = k + 1
        d["iscrowd"] = 0
    gts, dts = defaultdict(list), defaultdict(list)
    for anns, out in ((gts_all, gts), (dts_all, dts)):
        by_vid = defaultdict(list)
        for a in anns:
            by_vid[a["video_id"]].append(a)
        for vid in vid_ids:  # getAnnIds(vidIds=p.vidIds): videos in sorted order, file order inside
            for a in by_vid.get(vid, []):
                v = vids[vid]
                a["segmentations"] = [_to_rle(s, v["height"], v["width"]) if s else s for s in a["segmentations"]]
                a["avg_area"] = _avg_area(a["areas"])
                out[vid, a["category_id"]].append(a)
    for g in gts_all:
        g["ignore"] = "iscrowd" in g and g["iscrowd"]
    # useCats=0: one list per video, category by category (declared categories only)
    gt = {vid: [a for c in cat_ids for a in gts[vid, c]] for vid in vid_ids}
    dt = {vid: [a for c in cat_ids for a in dts[vid, c]] for vid in vid_ids}
    return vid_ids, gt, dt


def _compute_iou(gt, dt):
    if len(gt) == 0 and len(dt) == 0:
        return []
    inds = np.argsort([-d["score"] for d in dt], kind="mergesort")
    dt = [dt[i] for i in inds]
    if len(dt) > MAX_DETS[-1]:
        dt = dt[0:MAX_DETS[-1]]
    g = [g["segmentations"] for g in gt]
    d = [d["segmentations"] for d in dt]
    ious = np.zeros([len(d), len(g)])
    for i, j in np.ndindex(ious.shape):
        ious[i, j] = _iou_seq(d[i], g[j])
    return ious


def _evaluate_vid(gt, dt, all_ious, a_rng, max_det):
    if len(gt) == 0 and len(dt) == 0:
        return None
    for g in gt:
        g["_ignore"] = 1 if (g["ignore"] or (g["avg_area"] < a_rng[0] or g["avg_area"] > a_rng[1])) else 0
    gtind = np.argsort([g["_ignore"] for g in gt], kind="mergesort")
    gt = [gt[i] for i in gtind]
    dtind = np.argsort([-d["score"] for d in dt], kind="mergesort")
    dt = [dt[i] for i in dtind[0:max_det]]
    iscrowd = [int(o["iscrowd"]) for o in gt]
    ious = all_ious[:, gtind] if len(all_ious) > 0 else all_ious
    T = len(IOU_THRS)
    G = len(gt)
    D = len(dt)
    gtm = np.zeros((T, G))
    dtm = np.zeros((T, D))
    gtIg = np.array([g["_ignore"] for g in gt])
    dtIg = np.zeros((T, D))
    if not len(ious) == 0:
        for tind, t in enumerate(IOU_THRS):
            for dind, d in enumerate(dt):
                iou = min([t, 1 - 1e-10])
                m = -1
                for gind, g in enumerate(gt):
                    if gtm[tind, gind] > 0 and not iscrowd[gind]:
                        continue
                    if m > -1 and gtIg[m] == 0 and gtIg[gind] == 1:
                        break
                    if ious[dind, gind] < iou:
                        continue
                    iou = ious[dind, gind]
                    m = gind
                if m == -1:
                    continue
                dtIg[tind, dind] = gtIg[m]
                dtm[tind, dind] = gt[m]["id"]
                gtm[tind, m] = d["id"]
    a = np.array([d["avg_area"] < a_rng[0] or d["avg_area"] > a_rng[1] for d in dt]).reshape((1, len(dt)))
    dtIg = np.logical_or(dtIg, np.logical_and(dtm == 0, np.repeat(a, T, 0)))
    return {"dtMatches": dtm, "gtMatches": gtm, "dtScores": [d["score"] for d in dt], "gtIgnore": gtIg,
            "dtIgnore": dtIg}


def _accumulate(eval_vids, n_vids):
    T, R, K, A, M = len(IOU_THRS), len(REC_THRS), 1, len(AREA_RNGS), len(MAX_DETS)
    precision = -np.ones((T, R, K, A, M))
    recall = -np.ones((T, K, A, M))
    for k in range(K):
        Nk = k * A * n_vids
        for a in range(A):
            Na = a * n_vids
            for m, maxDet in enumerate(MAX_DETS):
                E = [eval_vids[Nk + Na + i] for i in range(n_vids)]
                E = [e for e in E if e is not None]
                if len(E) == 0:
                    continue
                dtScores = np.concatenate([e["dtScores"][0:maxDet] for e in E])
                inds = np.argsort(-dtScores, kind="mergesort")
                dtm = np.concatenate([e["dtMatches"][:, 0:maxDet] for e in E], axis=1)[:, inds]
                dtIg = np.concatenate([e["dtIgnore"][:, 0:maxDet] for e in E], axis=1)[:, inds]
                gtIg = np.concatenate([e["gtIgnore"] for e in E])
                npig = np.count_nonzero(gtIg == 0)
                if npig == 0:
                    continue
                tps = np.logical_and(dtm, np.logical_not(dtIg))
                fps = np.logical_and(np.logical_not(dtm), np.logical_not(dtIg))
                tp_sum = np.cumsum(tps, axis=1).astype(dtype=float)
                fp_sum = np.cumsum(fps, axis=1).astype(dtype=float)
                for t, (tp, fp) in enumerate(zip(tp_sum, fp_sum)):
                    tp = np.array(tp)
                    fp = np.array(fp)
                    nd = len(tp)
                    rc = tp / npig
                    pr = tp / (fp + tp + np.spacing(1))
                    q = np.zeros((R,))
                    recall[t, k, a, m] = rc[-1] if nd else 0
                    pr = pr.tolist()
                    q = q.tolist()
                    for i in range(nd - 1, 0, -1):
                        if pr[i] > pr[i - 1]:
                            pr[i - 1] = pr[i]
                    inds_r = np.searchsorted(rc, REC_THRS, side="left")
                    try:
                        for ri, pi in enumerate(inds_r):
                            q[ri] = pr[pi]
                    except IndexError:
                        pass
                    precision[t, :, k, a, m] = np.array(q)
    return precision, recall


def reference_evaluate_json(dataset: dict, results: list) -> dict[str, float]:
    """The 12 numbers of ``YTVOSeval(YTVOS(dataset), loadRes(results)).summarize()`` with ``useCats=0``."""
    vid_ids, gt, dt = _load(dataset, results)
    ious = {v: _compute_iou(gt[v], dt[v]) for v in vid_ids}
    eval_vids = [_evaluate_vid(gt[v], dt[v], ious[v], a_rng, MAX_DETS[-1]) for a_rng in AREA_RNGS for v in vid_ids]
    precision, recall = _accumulate(eval_vids, len(vid_ids))
    return summarize(precision, recall)


def _as_json(gt: Labelset, dt: Labelset) -> tuple[dict, list]:
    """In-memory labelsets -> the files the reference reads (ground-truth ids, stored areas and crowd kept)."""
    videos, anns, results = [], [], []
    vid_of = {}
    next_ann = 1
    for k, v in enumerate(gt):
        vid = v.id if v.id is not None else k + 1
        vid_of[v.name] = vid
        videos.append({"id": vid, "height": v.height, "width": v.width, "length": v.length})
        for inst in v.instances:
            areas = inst.extra.get("_areas")
            if areas is None:
                areas = [None if s is None else mask_utils.area(_as_coco(s)) for s in inst.segmentations]
            anns.append({"id": inst.id if inst.id is not None else 10 ** 9 + next_ann, "video_id": vid,
                         "category_id": inst.category_id, "iscrowd": int(inst.extra.get("iscrowd", 0)),
                         "areas": areas, "segmentations": list(inst.segmentations)})
            next_ann += 1
    for v in dt:
        for inst in v.instances:
            results.append({"video_id": vid_of[v.name], "score": inst.score, "category_id": inst.category_id,
                            "segmentations": list(inst.segmentations)})
    return {"videos": videos, "annotations": anns, "categories": gt.categories}, results


def reference_evaluate_ap(gt: Labelset, dt: Labelset) -> dict[str, float]:
    """``reference_evaluate_json`` on the files these labelsets would be written as."""
    return reference_evaluate_json(*_as_json(gt, dt))
