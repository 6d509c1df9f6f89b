"""How often one tube holds several objects apart, in a run's dense labelset and final model (no ground truth).

    python benchmarks/held_apart.py outputs/runs/NAME-seed0 [outputs/runs/OTHER-seed0 ...]
    python benchmarks/held_apart.py --score 0.3 RUN    # the final model's tubes from this score (default 0.3)

The objects are the run's sparse keymask instances: two instances with masks on one frame are two objects (a
frame's masks do not overlap). A tube's mask on such a frame *holds them apart* when two of its connected parts
each hold half or more of a different instance's mask (``s2d.inference.apart``, the rule ``label.split_apart``
splits dense tubes by). Printed per video and in all: the tubes, the tube-frames on frames with keymasks, and
how many of those hold objects apart; the final model counted from ``--score`` (what the report's pictures and
``s2d demo`` draw). The run's artifacts are read from its report.md.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from s2d.inference.apart import FrameLabels, Parts, held_instances, part_owners  # noqa: E402
from s2d.labelset import rle  # noqa: E402
from s2d.labelset.store import read_labelset  # noqa: E402
from s2d.labelset.types import VideoLabels  # noqa: E402


def artifacts(run: Path) -> dict[str, Path]:
    """{stage: artifact folder} from the stage table of a run's report.md (the last round's dense labelset)."""
    text = (run / "report.md").read_text()
    out = {}
    for stage, path in re.findall(r"^\| (keymasks|label[^|]*|predict) \| `([^`]+)` \|", text, re.M):
        p = Path(path)
        if not p.is_absolute():  # relative to the folder the run started in, an ancestor of the run's folder
            p = next((q / p for q in run.resolve().parents if (q / p).exists()), p)
        out[stage.split(" ")[0]] = p
    return out


def count(video: VideoLabels, objects: FrameLabels, min_score: float) -> tuple[int, int, int]:
    """(tubes from ``min_score``, their tube-frames on frames with keymasks, those that hold objects apart)."""
    tubes = frames = apart = 0
    for inst in video.instances:
        if inst.score < min_score or inst.extra.get("kept"):
            continue
        tubes += 1
        for t, s in enumerate(inst.segmentations):
            if s is None or not rle.area(s) or len(objects[t]) < 2:
                continue
            frames += 1
            held = [held_instances(p, objects[t]) for p in Parts(rle.decode(s).astype(bool))]
            apart += len(part_owners(held)) >= 2
    return tubes, frames, apart


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--score", type=float, default=0.3, help="the final model's tubes from this score")
    a = ap.parse_args()
    print("| run | video | dense tubes | tube-frames | held apart | final tubes | tube-frames | held apart |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for run in a.runs:
        arts = artifacts(run)
        keymasks = read_labelset(arts["keymasks"])
        dense, final = read_labelset(arts["label"]), read_labelset(arts["predict"])
        total = np.zeros(6, int)
        for v in keymasks:
            objects = FrameLabels(v)
            row = count(dense[v.name], objects, 0.0) + count(final[v.name], objects, a.score)
            total += row
            print(f"| {run.name} | {v.name} | " + " | ".join(map(str, row)) + " |")
        print(f"| {run.name} | all | " + " | ".join(map(str, total)) + " |")


if __name__ == "__main__":
    main()
