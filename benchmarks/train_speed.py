"""Training throughput (clips/s) and peak memory of the distillation step, tiny and paper-sized models.

    python benchmarks/train_speed.py                       # CPU here; on a GPU machine add --device cuda
    python benchmarks/train_speed.py --device cuda --amp   # bf16/fp16 autocast
    python benchmarks/train_speed.py --device cuda --amp --profile   # where the paper model's step spends its time

One step = student forward + teacher forward + Temporal DropLoss + distillation loss (deep supervision) +
backward + AdamW + EMA update, on random clips of 3 frames with 3 target instances each.
"""
from __future__ import annotations

import argparse
import resource
import time

import torch

from s2d.lit.distillation import DistillationModule

SIZES = {
    "tiny": dict(backbone="tiny", hidden_dim=32, mask_dim=32, num_queries=10, nheads=4, dim_feedforward=64,
                 dec_layers=3, enc_layers=1, enc_dim_feedforward=64, enc_points=2, dropout=0.0),
    "paper": dict(backbone="resnet50", hidden_dim=256, mask_dim=256, num_queries=100, nheads=8, dim_feedforward=2048,
                  dec_layers=9, enc_layers=6, enc_dim_feedforward=1024, enc_points=4, dropout=0.0),
}


def setup(size: str, device: str, batch: int, hw: tuple[int, int]):
    """A distillation module, its optimiser and one fixed batch; returns step(s, amp), one training step."""
    torch.manual_seed(0)
    m = DistillationModule(SIZES[size], dict(num_points=12544 if size == "paper" else 2048),
                           dict(lr=1e-4, weight_decay=0.05)).to(device)
    opt = m.configure_optimizers()["optimizer"]
    clips = torch.rand(batch, 3, 3, *hw, device=device)
    tg = torch.zeros(3, 3, *hw, device=device)
    for i in range(3):
        tg[i, :, i * hw[0] // 4:(i + 2) * hw[0] // 4, hw[1] // 4: 3 * hw[1] // 4] = 1
    batch_d = {"clips": clips, "targets": [tg] * batch, "videos": ["bench"] * batch, "frames": [[0, 1, 2]] * batch,
               "indices": torch.arange(batch)}

    def step(s: int, amp: bool) -> None:
        with torch.autocast(device_type=device, enabled=amp, dtype=torch.bfloat16):
            loss = m.training_step(batch_d, s)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(m.student.parameters(), 0.01)
        opt.step()
        m.on_train_batch_end(None, batch_d, s)
        if device == "cuda":
            torch.cuda.synchronize()
    return step


def bench(size: str, device: str, batch: int, hw: tuple[int, int], steps: int, amp: bool) -> tuple[float, float]:
    step = setup(size, device, batch, hw)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    for s in range(steps + 1):
        t0 = time.perf_counter()
        step(s, amp)
        if s:  # the first step warms up
            times.append(time.perf_counter() - t0)
    peak = torch.cuda.max_memory_allocated() / 2 ** 20 if device == "cuda" else \
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return batch * len(times) / sum(times), peak


def profile(size: str, device: str, batch: int, hw: tuple[int, int], steps: int, amp: bool, rows: int = 15) -> None:
    """Where a step's time goes: the accelerator's busy share of the wall time and its heaviest operations
    (torch.profiler), then the Python functions that hold the host longest (cProfile, own time): a step that
    the GPU waits for shows host work (matching, sampling, loops over tensors) at the top of the second table."""
    import cProfile
    import pstats
    from torch.profiler import ProfilerActivity, profile as torch_profile

    step = setup(size, device, batch, hw)
    step(0, amp)  # warm-up
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
    t0 = time.perf_counter()
    with torch_profile(activities=acts) as prof:
        for s in range(1, steps + 1):
            step(s, amp)
    wall = time.perf_counter() - t0
    key = "self_device_time_total" if device == "cuda" else "self_cpu_time_total"
    events = prof.key_averages()
    if device == "cuda":  # kernel time over wall time (kernels may overlap; a rough upper bound of the busy share)
        busy = sum(e.self_device_time_total for e in events) / 1e6
        print(f"{size} on {device}{' amp' if amp else ''}: {steps} steps in {wall:.2f} s, "
              f"GPU kernels {busy:.2f} s ({100 * busy / wall:.0f} % of the wall time)")
    print(events.table(sort_by=key, row_limit=rows))
    pr = cProfile.Profile()
    pr.enable()
    for s in range(steps + 1, 2 * steps + 1):
        step(s, amp)
    pr.disable()
    pstats.Stats(pr).sort_stats("tottime").print_stats(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--amp", action="store_true")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--profile", action="store_true", help="profile the paper-sized model's steps instead")
    args = ap.parse_args()
    cases = [("tiny", 4, (96, 128)), ("paper", 1 if args.device == "cpu" else 4, (192, 256) if args.device == "cpu"
                                                                              else (360, 640))]
    DistillationModule.log = lambda *a, **k: None        # no trainer attached: logging is a no-op here
    DistillationModule.log_dict = lambda *a, **k: None
    if args.profile:
        size, batch, hw = cases[1]
        profile(size, args.device, batch, hw, args.steps, args.amp)
        return
    for size, batch, hw in cases:
        cps, peak = bench(size, args.device, batch, hw, args.steps, args.amp)
        kind = "peak GPU memory" if args.device == "cuda" else "peak process RSS"
        print(f"{size:<6} batch {batch} x 3 frames {hw[1]}x{hw[0]} on {args.device}{' amp' if args.amp else ''}: "
              f"{cps:7.2f} clips/s, {kind} {peak:8.0f} MiB")


if __name__ == "__main__":
    main()
