"""A straightforward port of the YouTube-VIS cocoapi evaluator (``ytvoseval.py``, ``useCats=0``).

Kept deliberately in the reference's structure: a tube IoU built from two RLE merges per (detection, ground
truth, frame), and greedy matching as nested Python loops over thresholds, detections and ground truth, once
per area range. It is the oracle the tests compare ``ytvis_ap`` against, and the baseline that
``benchmarks/eval_speed.py`` times. Do not optimise it.
"""
from __future__ import annotations

import numpy as np
from pycocotools import mask as mask_utils

from s2d.evaluation.params import AREA_RNGS, IOU_THRS, MAX_DETS, REC_THRS, summarize
from s2d.labelset.rle import _as_coco
from s2d.labelset.types import Labelset


def _avg_area(areas):
    l = [a for a in areas if a]
    return 0 if len(l) == 0 else np.array(l).mean()


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


def _prepare(gt: Labelset, dt: Labelset):
    gts, dts = {}, {}
    next_id = 1
    for v in gt:
        gts[v.name] = []
        for inst in v.instances:
            segs = [None if s is None else _as_coco(s) for s in inst.segmentations]
            areas = inst.extra.get("_areas")
            if areas is None:
                areas = [None if s is None else mask_utils.area(s) for s in segs]
            crowd = int(inst.extra.get("iscrowd", 0))
            gts[v.name].append({"id": next_id, "segmentations": segs, "avg_area": _avg_area(areas),
                                "iscrowd": crowd, "ignore": crowd})
            next_id += 1
    for v in dt:
        dts[v.name] = []
        for k, inst in enumerate(v.instances):
            segs = [None if s is None else _as_coco(s) for s in inst.segmentations]
            areas = [mask_utils.area(s) if s else None for s in segs]
            dts[v.name].append({"id": k + 1, "segmentations": segs, "score": inst.score,
                                "avg_area": _avg_area(areas), "iscrowd": 0})
    return gts, dts


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


def _evaluate_img(gt, dt, all_ious, a_rng, max_det):
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


def _accumulate(eval_imgs, n_imgs):
    T, R, K, A, M = len(IOU_THRS), len(REC_THRS), 1, len(AREA_RNGS), len(MAX_DETS)
    precision = -np.ones((T, R, K, A, M))
    recall = -np.ones((T, K, A, M))
    for k in range(K):
        Nk = k * A * n_imgs
        for a in range(A):
            Na = a * n_imgs
            for m, maxDet in enumerate(MAX_DETS):
                E = [eval_imgs[Nk + Na + i] for i in range(n_imgs)]
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


def reference_evaluate_ap(gt: Labelset, dt: Labelset) -> dict[str, float]:
    gts, dts = _prepare(gt, dt)
    names = gt.names
    ious = {n: _compute_iou(gts[n], dts.get(n, [])) for n in names}
    eval_imgs = [_evaluate_img(gts[n], dts.get(n, []), ious[n], a_rng, MAX_DETS[-1])
                 for a_rng in AREA_RNGS for n in names]
    precision, recall = _accumulate(eval_imgs, len(names))
    return summarize(precision, recall)
