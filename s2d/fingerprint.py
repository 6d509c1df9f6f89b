"""Content fingerprints: a stage's artifact folder is named by a hash of everything that determines it
(its config section, the fingerprints of its inputs, and a per-stage format version). Changing any of them
gives a new folder, so a stale artifact is never reused, and an unchanged rerun finds the finished one."""
from __future__ import annotations

import hashlib
import json
from typing import Any


def fingerprint(*parts: Any) -> str:
    blob = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:12]
