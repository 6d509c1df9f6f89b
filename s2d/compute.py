"""The compute a run's numbers came from, recorded beside them.

The same command on the same machine repeats every number. On another machine the learned stages differ by about
the spread across seeds: ATen, oneDNN (convolutions) and MKL (matrix products) choose their kernels, and with them
the order of float sums, by the thread count and the CPU's instruction set (MKL also by its vendor), and on a GPU
by the device; 1200 training steps amplify the last bit (docs/RESULTS.md, "Reproducibility", measures each
switch). OpenCV's version counts too: the motion masks' bilinear warps changed in their last bits from 5.0 to
5.1. So every run's metrics.json, checkpoints and report name these, and ``s2d table`` says when the runs it
aggregates came from more than one.
"""
from __future__ import annotations

import os
import platform
from pathlib import Path


def cpu_name() -> str:
    """The CPU's model name (Linux: /proc/cpuinfo), else what the platform says; the vendor matters to MKL, whose
    reproducible branches hold across Intel CPUs only, except MKL_CBWR=COMPATIBLE."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def compute_env() -> dict[str, str]:
    """What picks the kernels of this process: torch and OpenCV versions, the CPU, ATen's CPU kernels
    (``ATEN_CPU_CAPABILITY`` if set, else the best the CPU has), intra-op threads, oneDNN's instruction-set cap
    and MKL's reproducible branch if set, the CUDA devices if any. Plain str values: checkpoints carry this dict."""
    import cv2
    import torch

    env = {"torch": str(torch.__version__),  # a TorchVersion: a class weights_only=True loading refuses
           # the motion masks' warps and resizes: 5.1 rounds bilinear interpolation otherwise than 5.0
           "opencv": str(cv2.__version__),
           "cpu": cpu_name(),
           "cpu_kernels": str(torch.backends.cpu.get_cpu_capability()),
           "threads": str(torch.get_num_threads())}
    isa = os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA")
    if isa:
        env["onednn_isa"] = isa
    if os.environ.get("MKL_CBWR"):
        env["mkl_cbwr"] = os.environ["MKL_CBWR"]
    if torch.cuda.is_available():
        # the device's name needs CUDA initialised: only where this process uses CUDA already (a GPU run, by the
        # time it saves or reports), so that recording never creates a CUDA context in a CPU run
        used = torch.cuda.get_device_name(0) if torch.cuda.is_initialized() else "not used by this process"
        env["cuda"] = f"{torch.cuda.device_count()}x {used}"
    return env


def describe(env: dict[str, str] | None) -> str:
    """One line: 'torch 2.4.1, OpenCV 5.0.0, AMD EPYC, CPU kernels AVX2, 2 threads' (+ ', oneDNN ISA ...',
    ', MKL_CBWR ...', ', CUDA ...'; runs recorded before OpenCV was named leave it out)."""
    if not env:
        return "not recorded"
    parts = [f"torch {env.get('torch', '?')}"] + ([f"OpenCV {env['opencv']}"] if env.get("opencv") else []) + \
        ([env["cpu"]] if env.get("cpu") else []) + \
        [f"CPU kernels {env.get('cpu_kernels', '?')}", f"{env.get('threads', '?')} threads"]
    if env.get("onednn_isa"):
        parts.append(f"oneDNN ISA {env['onednn_isa']}")
    if env.get("mkl_cbwr"):
        parts.append(f"MKL_CBWR {env['mkl_cbwr']}")
    if env.get("cuda"):
        parts.append(f"CUDA {env['cuda']}")
    return ", ".join(parts)
