"""J&F object by object: which video a labelset wins or loses on (the DAVIS tool's per-sequence table)."""
from __future__ import annotations

import csv
import io
from typing import Sequence

REPORT_OBJECTS = 30  # rows drawn in the report; the CSV holds every object
CSV_NAME = "jf_per_object.csv"  # in the run folder: every ground-truth object's J and F under each labelset

# one labelset's per-object rows, as davis_jf hands them out: (video, object id, J-Mean, F-Mean), fractions
Rows = Sequence[tuple[str, int, float, float]]


def _by_object(per_set: dict[str, Rows]) -> tuple[list[tuple[str, int]], dict[str, dict[tuple[str, int], tuple[float, float]]]]:
    """The objects in evaluation order (first seen; every labelset is scored on the same ground truth) and each
    set's (J, F) by object."""
    table = {name: {(video, obj): (j, f) for video, obj, j, f in rows} for name, rows in per_set.items()}
    order = list(dict.fromkeys(key for t in table.values() for key in t))
    return order, table


def per_object_csv(per_set: dict[str, Rows]) -> str:
    """CSV: video, object, then J-Mean and F-Mean of each labelset (fractions, as the DAVIS tool writes them)."""
    order, table = _by_object(per_set)
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(["video", "object"] + [f"{name} {k}" for name in per_set for k in ("J-Mean", "F-Mean")])
    for key in order:
        cells = []
        for name in per_set:
            j, f = table[name].get(key, (float("nan"), float("nan")))
            cells += [f"{j:.4f}", f"{f:.4f}"]
        w.writerow([key[0], key[1], *cells])
    return out.getvalue()


def per_object_lines(per_set: dict[str, Rows], csv_name: str, cap: int = REPORT_OBJECTS) -> list[str]:
    """Report section: J&F (%) of each ground-truth object under each labelset, the first ``cap`` objects."""
    order, table = _by_object(per_set)
    if not order:
        return []
    names = list(per_set)
    lines = ["## J&F per object", "",
             "Each ground-truth object's J&F (mean of its J-Mean and F-Mean, in %) under each labelset, as the "
             f"DAVIS tool's per-sequence table gives it; every object's J and F are in `{csv_name}`.", "",
             "| video | object | " + " | ".join(names) + " |", "|---|---:|" + "---:|" * len(names)]
    for video, obj in order[:cap]:
        cells = []
        for name in names:
            jf = table[name].get((video, obj))
            cells.append("—" if jf is None else f"{50 * (jf[0] + jf[1]):.1f}")
        lines.append(f"| {video} | {obj} | " + " | ".join(cells) + " |")
    if len(order) > cap:
        lines += ["", f"({len(order) - cap} more objects in `{csv_name}`.)"]
    return lines + [""]
