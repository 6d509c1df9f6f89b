"""Evaluation parameters exactly as YouTube-VIS ``ytvoseval.Params.setDetParams`` defines them."""
from __future__ import annotations

import numpy as np

IOU_THRS = np.linspace(.5, 0.95, int(np.round((0.95 - .5) / .05)) + 1, endpoint=True)  # (10,)
REC_THRS = np.linspace(.0, 1.00, int(np.round((1.00 - .0) / .01)) + 1, endpoint=True)  # (101,)
MAX_DETS = (1, 10, 100)
# Video areas are larger than COCO image areas: the bounds are 128^2 and 256^2 (not 32^2 and 96^2).
AREA_RNGS = ((0 ** 2, 1e5 ** 2), (0 ** 2, 128 ** 2), (128 ** 2, 256 ** 2), (256 ** 2, 1e5 ** 2))
AREA_LBLS = ("all", "small", "medium", "large")

# (name, is_ap, iou_thr, area label, max dets), in the order COCOeval.summarize prints them
SUMMARY = (
    ("AP", True, None, "all", 100), ("AP50", True, .5, "all", 100), ("AP75", True, .75, "all", 100),
    ("AP_S", True, None, "small", 100), ("AP_M", True, None, "medium", 100), ("AP_L", True, None, "large", 100),
    ("AR1", False, None, "all", 1), ("AR10", False, None, "all", 10), ("AR100", False, None, "all", 100),
    ("AR_S", False, None, "small", 100), ("AR_M", False, None, "medium", 100), ("AR_L", False, None, "large", 100),
)

STAT_NAMES = tuple(row[0] for row in SUMMARY)


def summarize(precision: np.ndarray, recall: np.ndarray) -> dict[str, float]:
    """precision (T, R, K, A, M), recall (T, K, A, M) -> the 12 summary numbers (-1 where undefined)."""
    out = {}
    for name, is_ap, thr, area, max_det in SUMMARY:
        a = AREA_LBLS.index(area)
        m = MAX_DETS.index(max_det)
        s = precision if is_ap else recall
        if thr is not None:
            s = s[np.where(thr == IOU_THRS)[0]]
        s = s[:, :, :, a, m] if is_ap else s[:, :, a, m]
        valid = s[s > -1]
        out[name] = -1.0 if len(valid) == 0 else float(np.mean(valid))
    return out
