"""The report's "Where AP50 is lost" section: ``s2d.evaluation.errors`` as a table and a list per labelset."""
from __future__ import annotations

from s2d.evaluation.errors import KINDS, FalsePositive, LabelsetErrors, Missed

LISTED = 10  # false positives and missed objects listed per labelset; the table counts them all


def describe_fp(fp: FalsePositive) -> str:
    """One false positive in words, e.g. "rank 2: demo_01 tube 0 (score 0.94), fragment of object 1 (tube IoU
    0.13)"."""
    head = f"rank {fp.rank}: {fp.video} tube {fp.index} (score {fp.score:.2f}), "
    if fp.object is None:
        return head + "background (overlaps no object)"
    what = {"duplicate": "duplicate of object", "switch": "switch, best on object", "fragment": "fragment of object",
            "inexact": "inexact mask of object", "background": "background, nearest object"}[fp.kind]
    held = f"; holds objects {' then '.join(map(str, fp.held))} in turn" if len(fp.held) > 1 else ""
    return head + f"{what} {fp.object} (tube IoU {fp.iou:.2f}{held})"


def describe_missed(m: Missed) -> str:
    """One missed object in words, e.g. "missed: demo_01 object 2 (best tube IoU 0.47: tube 4, which holds objects
    2 then 1 in turn)"."""
    if m.best_index is None:
        return f"missed: {m.video} object {m.object} (no tube overlaps it)"
    held = (f", which holds objects {' then '.join(map(str, m.best_held))} in turn" if len(m.best_held) > 1
            else "")
    return f"missed: {m.video} object {m.object} (best tube IoU {m.best_iou:.2f}: tube {m.best_index}{held})"


def error_lines(rows: dict[str, LabelsetErrors]) -> list[str]:
    """Markdown lines: one table row per labelset (objects found, missed, costly false positives by kind), then
    the first ``LISTED`` false positives (by rank) and the first ``LISTED`` missed objects of each."""
    if not rows:
        return []
    thr = next(iter(rows.values())).iou_thr
    lines = ["## Where AP50 is lost (diagnostic)", "",
             f"Each labelset against the ground truth at tube IoU {thr:g}, matched as the evaluator matches. A false "
             "positive costs AP50 only when it ranks above a true tube (by score, all videos pooled), so only "
             "those are counted. Kinds: duplicate (an object a higher-ranked tube took), switch (its masks match "
             "one object on some frames and another on others), fragment (matches an object on some frames, not "
             "enough of its tube), inexact (overlaps an object, matches it on no frame), background. Objects and "
             "tubes are numbered in their video from 0, in file order. A diagnostic: the run reads none of it.", "",
             "| labels | objects found | missed | " + " | ".join(KINDS) + " |",
             "|---|---:|---:|" + "---:|" * len(KINDS)]
    for name, e in rows.items():
        c = e.counts()
        lines.append(f"| {name} | {e.found} / {e.objects} | {len(e.missed)} | "
                     + " | ".join(str(c[k]) for k in KINDS) + " |")
    lines.append("")
    for name, e in rows.items():
        if not e.false_positives and not e.missed:
            continue
        lines += [f"`{name}`", ""]
        lines += [f"- {describe_fp(fp)}" for fp in e.false_positives[:LISTED]]
        lines += [f"- {describe_missed(m)}" for m in e.missed[:LISTED]]
        more = max(len(e.false_positives) - LISTED, 0) + max(len(e.missed) - LISTED, 0)
        lines += [f"- ... and {more} more (the table counts them all)"] if more else []
        lines.append("")
    return lines
