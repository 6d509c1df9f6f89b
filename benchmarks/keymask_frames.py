"""Does the distilled teacher improve on the keymasks on their own frames? Finished runs with ground truth.

    python benchmarks/keymask_frames.py outputs/runs/default-seed0
    python benchmarks/keymask_frames.py outputs/runs/davis2016-seed0 outputs/runs/davis2016-seed1

The dense labelset is the teacher's tubes on every frame. On a frame where a keymask instance has its mask, the
teacher's tube that matches the instance (tube IoU >= 0.5 over the instance's own frames, one tube per instance:
``s2d.inference.keymask_frames.matched_pairs``) replaces that mask with its own. Distillation claims it is the
better one there too. For each run (made with ``label.keymask_frames`` off: with it on, its labelset already
holds the keymasks on their frames) this prints, from the run's sparse labelset and round-1 dense labelset (the
folders its report names):
- per video, the J (IoU) of the keymask and of the matched teacher mask against the ground-truth object the
  instance covers best, averaged over the keymask frames, and on how many frames each is better by over 0.01;
- the dense labelset scored as it is and with each matched tube's masks on the keymask frames taken from its
  keymask instance, AP / AP50 / AP75 / AR10 / J&F, the tubes' scores unchanged: what ``label.keymask_frames``
  makes of the same teacher's tubes, but for their ranking, which the label stage computes on the new masks.
Ground truth only scores. The run's artifacts are read, never written.
"""
from __future__ import annotations

import argparse
import copy
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
KEYS = ("AP", "AP50", "AP75", "AR10", "J&F-Mean")


def stage_folder(run: Path, stage: str) -> Path:
    """The artifact folder the run's report names for ``stage`` ("keymasks", "label (round 1)")."""
    report = (run / "report.md").read_text()
    found = re.search(rf"^\| {re.escape(stage)} \| `([^`]+)` \|", report, re.M)
    if found is None:
        raise SystemExit(f"{run}/report.md names no '{stage}' folder: a finished run of the whole pipeline is needed")
    folder = Path(found.group(1))
    return folder if folder.is_absolute() else ROOT / folder


def iou(a, b) -> float:
    union = (a | b).sum()
    return float((a & b).sum() / union) if union else 1.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", type=Path, help="run folders (outputs/runs/<name>-seed<S>)")
    args = ap.parse_args()

    import numpy as np

    from s2d.inference.keymask_frames import matched_pairs
    from s2d.labelset.rle import decode
    from s2d.labelset.store import read_labelset
    from s2d.stages.data import load_data
    from s2d.stages.evaluate import score
    from unrefined_stages import run_config

    for run in args.runs:
        cfg = run_config(run)
        ds = load_data(cfg)
        if not ds.has_gt:
            print(f"{run}: its data has no ground truth, skipped")
            continue
        gt = ds.gt_labelset()
        sparse = read_labelset(stage_folder(run, "keymasks"))
        dense = read_labelset(stage_folder(run, "label (round 1)"))
        voids = {r.name: r.void for r in ds if r.void is not None}
        taken = copy.deepcopy(dense)
        print(f"{run}")
        all_k, all_t = [], []
        for v in taken:
            if v.name not in sparse or v.name not in gt:
                continue
            if v.length != gt[v.name].length:
                raise SystemExit(f"{run}: video '{v.name}' has {v.length} frames in the labelset and "
                                 f"{gt[v.name].length} in the data (a run on recordings is not covered)")
            teacher = [i for i in v.instances if not i.extra.get("kept")]
            keymasks = [i for i in sparse[v.name].instances if any(s is not None for s in i.segmentations)]
            k_j, t_j = [], []
            for a, j in matched_pairs(keymasks, teacher, v.height, v.width):
                own = [t for t, s in enumerate(keymasks[a].segmentations) if s is not None]
                km = {t: decode(keymasks[a].segmentations[t]).astype(bool) for t in own}
                blank = np.zeros((v.height, v.width), bool)

                def gt_mask(g, t):
                    return decode(g.segmentations[t]).astype(bool) if g.segmentations[t] is not None else blank

                obj = max(gt[v.name].instances, key=lambda g: np.mean([iou(km[t], gt_mask(g, t)) for t in own]))
                for t in own:
                    s = teacher[j].segmentations[t]
                    k_j.append(iou(km[t], gt_mask(obj, t)))
                    t_j.append(iou(decode(s).astype(bool) if s is not None else blank, gt_mask(obj, t)))
                    teacher[j].segmentations[t] = keymasks[a].segmentations[t]
            if k_j:
                k, t = np.array(k_j), np.array(t_j)
                print(f"  {v.name:20s} {len(k):4d} keymask frames: J keymask {k.mean():.3f}, teacher {t.mean():.3f};"
                      f" better: keymask on {np.mean(k > t + 0.01):.2f}, teacher on {np.mean(t > k + 0.01):.2f}")
                all_k += k_j
                all_t += t_j
        if all_k:
            k, t = np.array(all_k), np.array(all_t)
            print(f"  {'all':20s} {len(k):4d} keymask frames: J keymask {k.mean():.3f}, teacher {t.mean():.3f};"
                  f" better: keymask on {np.mean(k > t + 0.01):.2f}, teacher on {np.mean(t > k + 0.01):.2f}")
        print("  " + " / ".join(KEYS))
        for name, labels in (("dense labelset", dense), ("... keymasks on their frames", taken)):
            m = score(gt, labels, voids)
            print(f"  {name:30s}", " / ".join(f"{m[key]:.1f}" for key in KEYS))


if __name__ == "__main__":
    main()
