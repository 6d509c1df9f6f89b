"""What the process may still allocate: MemAvailable and the memory cgroups a scheduler limits a job with."""
from __future__ import annotations

from s2d.io.memory import available_memory

GiB = 2 ** 30


def _meminfo(tmp_path, kb):
    p = tmp_path / "meminfo"
    p.write_text(f"MemTotal:       99999999 kB\nMemFree:         1000 kB\nMemAvailable:   {kb} kB\n")
    return p


def _write(d, **files):
    d.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (d / name.replace("__", ".")).write_text(text)


def test_without_a_cgroup_limit_the_machine_s_available_memory_counts(tmp_path):
    root = tmp_path / "cg"
    _write(root, memory__max="max", memory__current=str(5 * GiB))  # v2: no limit
    _write(root / "memory", memory__limit_in_bytes="9223372036854771712", memory__usage_in_bytes="1")  # v1: none
    own = tmp_path / "self"
    own.write_text("0::/\n4:memory:/\n")
    assert available_memory(_meminfo(tmp_path, 8 * 1024 ** 2), root, own) == 8 * GiB


def test_a_job_s_v2_limit_on_a_parent_cgroup_is_found(tmp_path):
    """SLURM puts the job's limit on the job's cgroup and runs the process in a step below it."""
    root = tmp_path / "cg"
    _write(root / "job_7", memory__max=str(4 * GiB), memory__current=str(3 * GiB))
    _write(root / "job_7" / "step_0", memory__max="max", memory__current=str(1 * GiB))
    own = tmp_path / "self"
    own.write_text("0::/job_7/step_0\n")
    assert available_memory(_meminfo(tmp_path, 64 * 1024 ** 2), root, own) == 1 * GiB


def test_a_v1_limit_and_the_smaller_of_the_two_bounds(tmp_path):
    root = tmp_path / "cg"
    _write(root / "memory" / "slurm" / "job_3", memory__limit_in_bytes=str(16 * GiB),
           memory__usage_in_bytes=str(6 * GiB))
    own = tmp_path / "self"
    own.write_text("9:cpuset:/\n4:memory:/slurm/job_3\n")
    assert available_memory(_meminfo(tmp_path, 32 * 1024 ** 2), root, own) == 10 * GiB  # the cgroup's
    assert available_memory(_meminfo(tmp_path, 2 * 1024 ** 2), root, own) == 2 * GiB    # the machine's


def test_nothing_known_is_none(tmp_path):
    assert available_memory(tmp_path / "no-meminfo", tmp_path / "no-cgroup", tmp_path / "no-self") is None
