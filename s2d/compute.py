"""The compute a run's numbers came from, recorded beside them.

The same command on the same machine repeats every number. On another machine the learned stages differ by about
the spread across seeds: PyTorch (ATen) and oneDNN choose their kernels, and with them the order of float sums, by
the thread count and the CPU's instruction set, and on a GPU by the device. 1200 training steps amplify the last
bit (docs/RESULTS.md, "Reproducibility", measures each switch). So every run's metrics.json and report name these,
and ``s2d table`` says when the runs it aggregates came from more than one.
"""
from __future__ import annotations

import os


def compute_env() -> dict[str, str]:
    """What picks the kernels of this process: torch version, ATen's CPU kernels (``ATEN_CPU_CAPABILITY`` if set,
    else the best the CPU has), intra-op threads, oneDNN's instruction-set cap if set, the CUDA devices if any."""
    import torch

    env = {"torch": str(torch.__version__),  # a TorchVersion: a class weights_only=True loading refuses
           "cpu_kernels": str(torch.backends.cpu.get_cpu_capability()),
           "threads": str(torch.get_num_threads())}
    isa = os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA")
    if isa:
        env["onednn_isa"] = isa
    if torch.cuda.is_available():
        env["cuda"] = f"{torch.cuda.device_count()}x {torch.cuda.get_device_name(0)}"
    return env


def describe(env: dict[str, str] | None) -> str:
    """One line: 'torch 2.4.1, CPU kernels AVX2, 2 threads' (+ ', oneDNN ISA ...', ', CUDA ...')."""
    if not env:
        return "not recorded"
    parts = [f"torch {env.get('torch', '?')}", f"CPU kernels {env.get('cpu_kernels', '?')}",
             f"{env.get('threads', '?')} threads"]
    if env.get("onednn_isa"):
        parts.append(f"oneDNN ISA {env['onednn_isa']}")
    if env.get("cuda"):
        parts.append(f"CUDA {env['cuda']}")
    return ", ".join(parts)
