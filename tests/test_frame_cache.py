"""The decoded-frame cache of training clips and the cheap torch seeding: both make a CPU step faster and must
leave every clip exactly as it was."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from s2d.data.frame_cache import FrameCache


class Reader:
    """Counts the reads that reached the 'file'."""

    def __init__(self):
        self.calls: list[str] = []

    def __call__(self, key: str, nbytes: int = 100):
        def read():
            self.calls.append(key)
            return np.full(nbytes, ord(key[0]), np.uint8)
        return read


def test_least_recently_used_frames_leave_first_within_the_byte_budget():
    cache, r = FrameCache(250), Reader()
    for k in "abc":                       # 300 bytes asked for, 250 allowed: a (oldest) leaves
        cache.get(k, r(k))
    assert len(cache) == 2 and cache.bytes == 200 and r.calls == ["a", "b", "c"]
    assert cache.get("b", r("b"))[0] == ord("b") and r.calls == ["a", "b", "c"]   # hit: no read
    cache.get("a", r("a"))                # miss: read again; c is now the least recently used and leaves
    assert r.calls == ["a", "b", "c", "a"]
    cache.get("b", r("b"))
    cache.get("c", r("c"))
    assert r.calls == ["a", "b", "c", "a", "c"] and (cache.hits, cache.misses) == (2, 5)


def test_failed_and_oversized_reads_are_not_kept():
    cache, r = FrameCache(150), Reader()

    def broken():
        raise OSError("truncated")

    for _ in range(2):                    # a broken frame raises every time it is asked for
        with pytest.raises(OSError):
            cache.get("x", broken)
    assert len(cache) == 0 and cache.misses == 2
    big = cache.get("big", r("big", 400))
    assert big.nbytes == 400 and len(cache) == 0 and cache.bytes == 0
    off, r0 = FrameCache(0), Reader()
    off.get("a", r0("a"))
    off.get("a", r0("a"))
    assert r0.calls == ["a", "a"]
    with pytest.raises(ValueError, match="max_bytes"):
        FrameCache(-1)


def test_cached_clips_equal_uncached_ones_and_skip_decoding(sparse_data):
    from s2d.data.clips import AugmentConfig, ClipDataset

    def dataset(mb):
        return ClipDataset(*sparse_data, length=3, mode="sparse", augment=AugmentConfig(size=(48, 64)), seed=3,
                           frame_cache_mb=mb)

    plain, cached = dataset(0), dataset(16)
    for epoch in (0, 1):
        plain.set_epoch(epoch)
        cached.set_epoch(epoch)
        for i in range(len(plain)):
            a, b = plain[i], cached[i]
            assert torch.equal(a["clip"], b["clip"]) and torch.equal(a["targets"], b["targets"])
    fc = cached.frame_cache
    assert fc.hits + fc.misses == 2 * len(plain) * 3         # every frame of every clip went through the cache
    assert fc.misses == len(fc) and fc.hits > fc.misses      # each distinct frame decoded once, nothing evicted
    assert plain.frame_cache.hits == 0 and len(plain.frame_cache) == 0


def test_broken_frame_is_substituted_at_every_visit_with_a_cache(tmp_path):
    """A truncated frame is not cached: each visit of its clip is substituted and quarantined again."""
    import json

    from s2d.data.clips import AugmentConfig, ClipDataset
    from s2d.data.demo import DemoConfig, write_demo_dataset
    from s2d.data.sources import open_dataset

    root = tmp_path / "data"
    write_demo_dataset(root, DemoConfig(num_videos=2, num_frames=6, height=48, width=64, seed=5))
    ds = open_dataset("ytvis", root)
    png = root / "JPEGImages" / "demo_01" / "00002.png"
    png.write_bytes(png.read_bytes()[:200])

    def visit_twice(mb):
        quarantine = tmp_path / f"q{mb}.jsonl"
        sub = ClipDataset(ds, ds.gt_labelset(), length=3, on_error="substitute", quarantine=quarantine,
                          augment=AugmentConfig(size=(48, 64)), frame_cache_mb=mb)
        bad = [i for i, (name, start) in enumerate(sub.items) if name == "demo_01" and start is not None
               and start <= 2 < start + 3]
        a, b = sub[bad[0]], sub[bad[0]]
        assert a["substituted"] == b["substituted"] == 1 and torch.equal(a["clip"], b["clip"])
        return a, [json.loads(line) for line in quarantine.read_text().splitlines()]

    (cached, recs), (plain, plain_recs) = visit_twice(16), visit_twice(0)
    assert torch.equal(cached["clip"], plain["clip"]) and cached["index"] == plain["index"]
    assert recs == plain_recs and len(recs) % 2 == 0           # the second visit failed exactly like the first
    assert recs[: len(recs) // 2] == recs[len(recs) // 2:]
    assert all(r["video"] == "demo_01" and r["frame"] == 2 for r in recs)


def test_seed_torch_is_torch_manual_seed_on_the_cpu_without_queued_device_calls():
    from s2d.seeds import seed_torch

    torch.manual_seed(1234)
    want = torch.rand(5), torch.randn(3), torch.randint(0, 100, (4,))
    queued = len(getattr(torch.cuda, "_queued_calls", []))
    seed_torch(1234)
    got = torch.rand(5), torch.randn(3), torch.randint(0, 100, (4,))
    assert all(torch.equal(w, g) for w, g in zip(want, got))
    if not torch.cuda.is_initialized():   # the deferred-seeding queue did not grow (it does with manual_seed)
        assert len(getattr(torch.cuda, "_queued_calls", [])) == queued
