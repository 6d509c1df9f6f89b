"""What a run records about the compute its numbers came from (s2d.compute)."""
from __future__ import annotations

import cv2
import torch

from s2d.compute import compute_env, cpu_name, describe


def test_compute_env_reads_this_process_and_follows_the_thread_count(monkeypatch):
    n = torch.get_num_threads()
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)
    monkeypatch.delenv("MKL_CBWR", raising=False)
    cuda_before = torch.cuda.is_initialized()
    env = compute_env()
    assert torch.cuda.is_initialized() == cuda_before  # recording never initialises CUDA
    assert env["torch"] == torch.__version__ and env["threads"] == str(n) and env["cpu"] == cpu_name() != ""
    assert env["cpu_kernels"] == str(torch.backends.cpu.get_cpu_capability())
    assert env["opencv"] == cv2.__version__
    assert "onednn_isa" not in env and "mkl_cbwr" not in env
    assert ("cuda" in env) == torch.cuda.is_available()
    # plain str, not torch's TorchVersion: checkpoints carry this dict and load with weights_only=True
    assert all(type(v) is str for v in env.values())
    try:
        torch.set_num_threads(1)
        assert compute_env()["threads"] == "1"
    finally:
        torch.set_num_threads(n)
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")  # the oneDNN cap and MKL's branch are named when set
    monkeypatch.setenv("MKL_CBWR", "COMPATIBLE")
    env = compute_env()
    assert env["onednn_isa"] == "AVX2" and env["mkl_cbwr"] == "COMPATIBLE"


def test_describe_is_one_readable_line():
    assert describe({"torch": "2.4.1", "cpu_kernels": "AVX2", "threads": "2"}) == \
        "torch 2.4.1, CPU kernels AVX2, 2 threads"
    assert describe({"torch": "2.4.1", "cpu": "Intel Xeon", "cpu_kernels": "AVX512", "threads": "16",
                     "onednn_isa": "AVX2", "mkl_cbwr": "AVX2", "cuda": "4x NVIDIA H100"}) == \
        "torch 2.4.1, Intel Xeon, CPU kernels AVX512, 16 threads, oneDNN ISA AVX2, MKL_CBWR AVX2, CUDA 4x NVIDIA H100"
    assert describe({"torch": "2.14.1", "opencv": "5.0.0", "cpu": "AMD EPYC", "cpu_kernels": "AVX2",
                     "threads": "2"}) == "torch 2.14.1, OpenCV 5.0.0, AMD EPYC, CPU kernels AVX2, 2 threads"
    assert describe(None) == describe({}) == "not recorded"
