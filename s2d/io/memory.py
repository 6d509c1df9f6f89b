"""How much memory this process can still take before the system (or its job's cgroup) kills it.

A process the kernel's OOM killer ends gets SIGKILL: no traceback, no log line, only "Killed" from the shell
or an exit code from the scheduler. Stages that hold a whole video at once ask here first and say, naming the
video, when it will not fit (``s2d.stages.masks``). Linux only; elsewhere nothing is known and nothing is said.
"""
from __future__ import annotations

from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
SELF_CGROUP = Path("/proc/self/cgroup")
MEMINFO = Path("/proc/meminfo")


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None  # cgroup v2 writes "max" for no limit


def _meminfo_available(meminfo: Path) -> int | None:
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024  # kB
    except (OSError, ValueError, IndexError):
        return None
    return None


def _cgroup_dirs(root: Path, self_cgroup: Path) -> list[tuple[Path, str, str]]:
    """(folder, limit file, usage file) of every memory cgroup this process is under: its own and each ancestor
    (a job's limit often sits on a parent: SLURM's job above its step), for cgroup v2 (``0::/path``) and v1
    (``N:memory:/path``). In a container the process's cgroup is usually mounted as the root itself."""
    paths = {"v2": [], "v1": []}
    try:
        for line in self_cgroup.read_text().splitlines():
            hid, ctrl, path = line.split(":", 2)
            if hid == "0" and ctrl == "":
                paths["v2"].append(path)
            elif "memory" in ctrl.split(","):
                paths["v1"].append(path)
    except (OSError, ValueError):
        pass
    found = []
    for kind, base, limit, usage in (("v2", root, "memory.max", "memory.current"),
                                     ("v1", root / "memory", "memory.limit_in_bytes", "memory.usage_in_bytes")):
        dirs = {base}
        for path in paths[kind]:
            d = base / path.lstrip("/")
            while d != base and base in d.parents:
                dirs.add(d)
                d = d.parent
        found += [(d, limit, usage) for d in sorted(dirs)]
    return found


def _cgroup_headroom(root: Path, self_cgroup: Path) -> int | None:
    """Smallest limit minus usage over this process's memory cgroups (``_cgroup_dirs``). A batch scheduler
    (SLURM, Kubernetes) enforces a job's memory there, often far below what the machine has free."""
    room = []
    for d, limit_file, usage_file in _cgroup_dirs(root, self_cgroup):
        limit, usage = _read_int(d / limit_file), _read_int(d / usage_file)
        # v1 reports "no limit" as a huge number (about 2^63 rounded to the page)
        if limit is not None and usage is not None and limit < 1 << 60:
            room.append(max(0, limit - usage))
    return min(room) if room else None


def available_memory(meminfo: Path = MEMINFO, cgroup_root: Path = CGROUP_ROOT,
                     self_cgroup: Path = SELF_CGROUP) -> int | None:
    """Bytes this process can still allocate: the smaller of the machine's MemAvailable and its cgroups'
    headroom; None where neither is known."""
    known = [b for b in (_meminfo_available(meminfo), _cgroup_headroom(cgroup_root, self_cgroup)) if b is not None]
    return min(known) if known else None


def gib(n: float) -> str:
    return f"{n / 2 ** 30:.1f} GiB"
