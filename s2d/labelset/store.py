"""A labelset on disk as one shard per video plus a manifest written last.

Layout of a store folder::

    shards/<video>.json    one-video YouTube-VIS dataset, written atomically
    ledger.jsonl           one line per committed shard: name, bytes, sha256 (appended after the shard);
                           ledger.rank<r>.jsonl per rank when several processes generate (s2d.io.job_ranks)
    labelset.json          the merged YouTube-VIS file, for external tools
    MANIFEST.json          written last: fingerprint, every shard's hash, the merged file's hash

A generator that is killed keeps every committed shard; on rerun ``done(name)`` is true only for shards whose
bytes still match the ledger, so a truncated or half-written shard is recomputed rather than trusted because it
exists. A reader refuses a folder without a manifest, a ``.partial`` folder, or a shard whose hash changed.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable

from s2d.errors import IncompleteSetError, LabelsetError
from s2d.io.atomic import atomic_write_bytes, atomic_write_json, remove_stale_temps, sha256_bytes, sha256_file
from s2d.labelset.types import Labelset, VideoLabels
from s2d.labelset.ytvis import labelset_from_json, labelset_to_json, read_json_file

FORMAT = "s2d-labelset/1"
MANIFEST = "MANIFEST.json"


def _shard_file(name: str) -> str:
    # Video names may contain '/' (YouTube-VIS names are folder paths); keep one flat folder of shards.
    return name.replace(os.sep, "__") + ".json"


class LabelsetStore:
    def __init__(self, root: str | Path, fingerprint: str, rank: int = 0, world: int = 1):
        self.root = Path(root)
        self.fingerprint = fingerprint
        self.shards = self.root / "shards"
        self.shards.mkdir(parents=True, exist_ok=True)
        if world == 1:  # with several ranks a temp file may belong to a writer that is still running
            remove_stale_temps(self.shards)
            remove_stale_temps(self.root)
        # every process appends only to its own ledger: no two writers ever share a file
        self.ledger_path = self.root / ("ledger.jsonl" if world == 1 else f"ledger.rank{rank}.jsonl")
        self._ledger = self._read_ledger()

    def _read_ledger(self) -> dict[str, dict]:
        entries: dict[str, dict] = {}
        for path in sorted(self.root.glob("ledger*.jsonl")):
            for line in path.read_text().splitlines():
                try:
                    e = json.loads(line)
                except json.JSONDecodeError:  # a line cut short by a crash: that shard is simply redone
                    continue
                if e.get("fingerprint") == self.fingerprint:
                    entries[e["name"]] = e
        return entries

    def committed(self, name: str) -> bool:
        """A ledger entry exists (cheap; ``done`` also checks the shard's bytes)."""
        return name in self._ledger

    def refresh(self) -> None:
        """Re-read the ledgers (other ranks commit shards while this one waits)."""
        self._ledger = self._read_ledger()

    # -- generation ---------------------------------------------------------------------------------------
    def done(self, name: str) -> bool:
        e = self._ledger.get(name)
        if e is None:
            return False
        p = self.shards / e["file"]
        return p.exists() and p.stat().st_size == e["bytes"] and sha256_file(p) == e["sha256"]

    def write_video(self, video: VideoLabels) -> None:
        data = json.dumps(labelset_to_json(Labelset([video])), allow_nan=False).encode()
        fname = _shard_file(video.name)
        atomic_write_bytes(self.shards / fname, data)
        entry = {"name": video.name, "file": fname, "bytes": len(data), "sha256": sha256_bytes(data),
                 "fingerprint": self.fingerprint}
        with open(self.ledger_path, "a") as f:
            f.write(json.dumps(entry) + "\n")
            f.flush()
            os.fsync(f.fileno())
        self._ledger[video.name] = entry

    def load_video(self, name: str) -> VideoLabels:
        path = self.shards / self._ledger[name]["file"]
        return labelset_from_json(read_json_file(path), file=path).videos[0]

    def finalize(self, names: Iterable[str], info: dict[str, Any] | None = None) -> Labelset:
        """Merge the shards of ``names`` (in this order) and write the merged file, then the manifest."""
        names = list(names)
        missing = [n for n in names if not self.done(n)]
        if missing:
            raise IncompleteSetError(f"{self.root}: cannot finalise, {len(missing)} video(s) have no valid shard: "
                                     f"{missing[:10]}")
        videos = [self.load_video(n) for n in names]
        ls = Labelset(videos, info=dict(info or {}))
        merged = json.dumps(labelset_to_json(ls), allow_nan=False).encode()
        atomic_write_bytes(self.root / "labelset.json", merged)
        manifest = {"format": FORMAT, "fingerprint": self.fingerprint, "complete": True,
                    "labelset": {"file": "labelset.json", "bytes": len(merged), "sha256": sha256_bytes(merged)},
                    "videos": [{k: self._ledger[n][k] for k in ("name", "file", "bytes", "sha256")} for n in names],
                    "info": ls.info}
        atomic_write_json(self.root / MANIFEST, manifest, indent=1)
        return ls

    def is_complete(self) -> bool:
        return self.complete_at(self.root, self.fingerprint)

    @staticmethod
    def complete_at(root: str | Path, fingerprint: str) -> bool:
        """Whether ``root`` holds a finished set of ``fingerprint`` (its manifest), without touching the folder."""
        try:
            _check_manifest(Path(root), fingerprint)
            return True
        except IncompleteSetError:
            return False


def _check_manifest(root: Path, fingerprint: str | None) -> dict:
    if root.name.endswith(".partial"):
        raise IncompleteSetError(f"{root}: refusing to read a '.partial' folder (generation did not finish)")
    mpath = root / MANIFEST
    if not mpath.exists():
        raise IncompleteSetError(f"{root}: no {MANIFEST}; the set is incomplete (rerun the stage that makes it)")
    try:
        manifest = json.loads(mpath.read_text())
    except json.JSONDecodeError as e:
        raise IncompleteSetError(f"{mpath}: corrupt manifest ({e.msg} at line {e.lineno})") from None
    if manifest.get("format") != FORMAT or not manifest.get("complete"):
        raise IncompleteSetError(f"{mpath}: not a complete {FORMAT} manifest")
    if fingerprint is not None and manifest.get("fingerprint") != fingerprint:
        raise IncompleteSetError(f"{root}: made with fingerprint {manifest.get('fingerprint')}, expected "
                                 f"{fingerprint} (the inputs or config changed; rerun the stage)")
    lab = manifest["labelset"]
    p = root / lab["file"]
    if not p.exists() or p.stat().st_size != lab["bytes"] or sha256_file(p) != lab["sha256"]:
        raise IncompleteSetError(f"{p}: missing or changed since the manifest was written")
    return manifest


def read_labelset(root: str | Path, fingerprint: str | None = None) -> Labelset:
    """Read a finished store; refuses incomplete, partial, stale or corrupted sets."""
    root = Path(root)
    manifest = _check_manifest(root, fingerprint)
    path = root / manifest["labelset"]["file"]
    try:
        return labelset_from_json(read_json_file(path), file=path)
    except LabelsetError as e:
        raise IncompleteSetError(str(e)) from None
