"""Per-stage gain lines: what each learning stage added over the labels it was trained on."""
from __future__ import annotations


def gain_lines(metrics: dict[str, dict[str, float]], steps: list[tuple[str, str, str]],
               keys: tuple[str, ...] = ("AP50", "AP", "J&F-Mean")) -> list[str]:
    """``steps``: (stage, row, baseline row) in pipeline order -> one markdown bullet per step whose two rows
    were scored, e.g. "- distill: +12.3 AP50, +4.0 AP, -1.2 J&F over sparse keymasks". Undefined numbers (< 0,
    the evaluator's "no object in that range") are left out."""
    lines = []
    for stage, row, base in steps:
        if row not in metrics or base not in metrics:
            continue
        parts = []
        for k in keys:
            a, b = metrics[row].get(k), metrics[base].get(k)
            if a is None or b is None or a < 0 or b < 0:
                continue
            parts.append(f"{a - b:+.1f} {k.removesuffix('-Mean')}")
        if parts:
            lines.append(f"- {stage}: {', '.join(parts)} over {base}")
    return lines
