"""Run-length-encoded masks in the COCO format (pycocotools), plus the checks pycocotools does not do.

pycocotools trusts its input: a counts string whose runs do not add up to H*W decodes to garbage or reads
past the buffer. ``check_rle`` parses the compressed counts itself (same algorithm as ``rleFrString`` in
maskApi.c) so a bad record is caught with a message instead.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from pycocotools import mask as mask_utils

RLE = dict  # {"size": [H, W], "counts": str}


def encode(mask: np.ndarray) -> RLE:
    """(H, W) bool/uint8 -> compressed RLE with ``counts`` as str (JSON-ready)."""
    m = np.asfortranarray(np.asarray(mask, dtype=np.uint8))
    rle = mask_utils.encode(m)
    rle["counts"] = rle["counts"].decode("ascii")
    return {"size": [int(rle["size"][0]), int(rle["size"][1])], "counts": rle["counts"]}


def encode_many(masks: np.ndarray) -> list[RLE]:
    """(N, H, W) -> N compressed RLEs, in one pycocotools call."""
    if len(masks) == 0:
        return []
    m = np.asfortranarray(np.moveaxis(np.asarray(masks, dtype=np.uint8), 0, -1))  # (H, W, N)
    out = []
    for rle in mask_utils.encode(m):
        out.append({"size": [int(rle["size"][0]), int(rle["size"][1])], "counts": rle["counts"].decode("ascii")})
    return out


def _as_coco(rle: RLE) -> dict:
    counts = rle["counts"]
    return {"size": list(rle["size"]), "counts": counts.encode("ascii") if isinstance(counts, str) else counts}


def encode_tube(per_frame: Sequence[np.ndarray | None]) -> list[RLE | None]:
    """A tube as one (H, W) mask or None per frame -> per-frame RLE or None."""
    return [None if m is None else encode(m) for m in per_frame]


def decode(rle: RLE) -> np.ndarray:
    """Compressed RLE -> (H, W) bool."""
    return mask_utils.decode(_as_coco(rle)).astype(bool)


def decode_many(rles: Sequence[RLE | None], height: int, width: int) -> np.ndarray:
    """N RLEs (None = empty) -> (N, H, W) bool; the non-empty ones decoded in one call."""
    out = np.zeros((len(rles), height, width), dtype=bool)
    idx = [i for i, r in enumerate(rles) if r is not None]
    if idx:
        dec = mask_utils.decode([_as_coco(rles[i]) for i in idx])  # (H, W, n)
        out[idx] = np.moveaxis(dec, -1, 0).astype(bool)
    return out


def area(rle: RLE | None) -> int:
    return 0 if rle is None else int(mask_utils.area(_as_coco(rle)))


def areas_of(rles: Sequence[dict]) -> np.ndarray:
    """Areas of many compressed RLEs (``counts`` as str or bytes: pycocotools takes both) as float64.

    Called in chunks of 255: pycocotools' ``area`` builds a uint8 array from the object count and overflows
    beyond that under NumPy 2.
    """
    out = np.zeros(len(rles), np.float64)
    for s in range(0, len(rles), 255):
        chunk = rles[s:s + 255]
        out[s:s + len(chunk)] = mask_utils.area(chunk)
    return out


def bbox(rle: RLE | None) -> list[float] | None:
    """[x, y, w, h] of the mask, None for an absent mask."""
    return None if rle is None else [float(v) for v in mask_utils.toBbox(_as_coco(rle))]


def _counts_from_string(s: str) -> list[int]:
    counts: list[int] = []
    p = 0
    n = len(s)
    while p < n:
        x = 0
        k = 0
        more = True
        while more:
            if p >= n:
                raise ValueError("counts string ends inside a run length")
            c = ord(s[p]) - 48
            if not 0 <= c < 64:
                raise ValueError(f"invalid character {s[p]!r} in counts string at position {p}")
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and (c & 0x10):
                x |= -1 << (5 * k)
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    return counts


def check_rle(rle: Any, height: int | None = None, width: int | None = None) -> None:
    """Raise ValueError saying what is wrong with ``rle``; the caller adds which record it is."""
    if not isinstance(rle, dict) or "size" not in rle or "counts" not in rle:
        raise ValueError("segmentation must be an RLE dict with 'size' and 'counts' (or null)")
    size = rle["size"]
    if not (isinstance(size, (list, tuple)) and len(size) == 2 and all(isinstance(v, int) for v in size)):
        raise ValueError(f"RLE size must be [height, width], got {size!r}")
    h, w = size
    if height is not None and (h, w) != (height, width):
        raise ValueError(f"RLE size {h}x{w} does not match the video's frame size {height}x{width}")
    counts = rle["counts"]
    if isinstance(counts, list):
        runs = counts
    elif isinstance(counts, (str, bytes)):
        runs = _counts_from_string(counts.decode("ascii") if isinstance(counts, bytes) else counts)
    else:
        raise ValueError(f"RLE counts must be a string or a list, got {type(counts).__name__}")
    if any((not isinstance(r, int)) or r < 0 for r in runs):
        raise ValueError("RLE counts contain a negative or non-integer run")
    if sum(runs) != h * w:
        raise ValueError(f"RLE runs cover {sum(runs)} pixels but the mask has {h}x{w}={h * w}")


def to_compressed(seg: Any, height: int, width: int) -> RLE | None:
    """Normalise a YouTube-VIS segmentation (None, compressed RLE, uncompressed RLE, polygons) to compressed RLE."""
    if seg is None:
        return None
    if isinstance(seg, list):  # polygons
        rles = mask_utils.frPyObjects(seg, height, width)
        r = mask_utils.merge(rles)
    elif isinstance(seg.get("counts"), list):  # uncompressed RLE
        r = mask_utils.frPyObjects(seg, height, width)
    else:
        return {"size": [int(seg["size"][0]), int(seg["size"][1])],
                "counts": seg["counts"].decode("ascii") if isinstance(seg["counts"], bytes) else seg["counts"]}
    return {"size": [int(r["size"][0]), int(r["size"][1])], "counts": r["counts"].decode("ascii")}
