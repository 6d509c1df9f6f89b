"""An exclusive lock between processes of different jobs (the jobs of a sweep share the artifact folders): the
first computes an artifact, the others wait and then read it. ``flock`` on a file next to the artifact folder;
the kernel releases it when a process dies, so a killed job never leaves a stale lock behind."""
from __future__ import annotations

import fcntl
import logging
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

log = logging.getLogger(__name__)


@contextmanager
def exclusive(lock_file: Path, what: str) -> Iterator[None]:
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("%s: another process is computing it; waiting for it (%s)", what, lock_file)
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
