"""Atomic, durable writes: every artifact the suite produces goes through here.

A write goes to a temporary file in the *same folder* as the target, is flushed and fsync'ed, and is then
moved over the target with ``os.replace`` (atomic on POSIX within one filesystem), after which the folder
itself is fsync'ed so the rename survives a power cut. A crash at any point leaves either the old file or the
new one, never half of one, and never a temp file that a reader would mistake for a result (temp names start
with ``.tmp-`` and end in ``.partial``).

Final files get the mode an ordinary ``open(..., "w")`` would give them (0666 less the user's umask, so 0644
by default): ``mkstemp`` creates its temp file 0600, which would keep results from colleagues on a shared
cluster.

We never fall back to copying when ``os.replace`` fails (e.g. EXDEV across filesystems): a copy-in-place is
not atomic, so the error propagates and no final file appears.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

TEMP_PREFIX = ".tmp-"
TEMP_SUFFIX = ".partial"
# a temp file nobody has written to for this long belongs to a writer that was killed (``atomic_file``: large
# files that several processes may be writing at once into one folder remove only these)
STALE_AFTER = 3600.0


def _file_mode() -> int:
    """0666 less the process umask (read without changing it for longer than the call)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # some filesystems do not allow opening a folder; the rename is still atomic there
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; returns the final path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX + path.name + ".", suffix=TEMP_SUFFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fchmod(f.fileno(), _file_mode())
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(path.parent)
    return path


@contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """A temp file beside ``path`` for a writer too large to hold in memory (written as a stream, or through a
    memory map): leaving the block without an error gives it the user's file mode, fsyncs it and moves it over
    ``path``; an error removes it. A temp file there that nobody has written to for ``STALE_AFTER`` (a killed
    writer's, as large as what it wrote) is removed first; another process's that is still being written stays.
    Used by the flow cache and the decoded frames of video files."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path.parent, idle=STALE_AFTER)
    fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX + path.name + ".", suffix=TEMP_SUFFIX, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as f:
            os.fchmod(f.fileno(), _file_mode())
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    _fsync_dir(path.parent)


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any, *, indent: int | None = None) -> Path:
    # allow_nan=False: a NaN in an artifact is a bug upstream and must not become invalid JSON silently.
    return atomic_write_text(path, json.dumps(obj, indent=indent, allow_nan=False, sort_keys=False))


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(chunk)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def remove_stale_temps(folder: str | Path, idle: float | None = None) -> int:
    """Delete temp files a killed writer left behind in ``folder``; returns how many were removed. ``idle``
    (seconds): only those not written to for that long, where another process may be writing its own (a
    writer that streams into its temp file touches it all the time)."""
    folder = Path(folder)
    n = 0
    if folder.is_dir():
        now = time.time()
        for p in folder.iterdir():
            if p.name.startswith(TEMP_PREFIX) and p.name.endswith(TEMP_SUFFIX):
                try:
                    if idle is not None and now - p.stat().st_mtime < idle:
                        continue
                except FileNotFoundError:  # its writer finished meanwhile
                    continue
                p.unlink(missing_ok=True)
                n += 1
    return n
