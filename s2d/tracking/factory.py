"""Build the configured tracker (config group ``tracker``)."""
from __future__ import annotations

from typing import Any

from s2d.choices import TrackerKind
from s2d.errors import ConfigError


def make_tracker(t: Any, flow_cache_dir: str | None = None):
    """``flow_cache_dir``: where dense flows of the videos are kept (shared with the motion masks)."""
    if t.kind == "flow":
        from s2d.tracking.flow_cache import FlowCache
        from s2d.tracking.flow_chain import FlowChainTracker

        return FlowChainTracker(t.fb_threshold, cache=FlowCache(flow_cache_dir), fb_relative=t.fb_relative)
    if t.kind == "lk":
        from s2d.tracking.lucas_kanade import LucasKanadeTracker

        return LucasKanadeTracker(t.window, t.levels, t.fb_threshold)
    if t.kind == "cotracker":
        from s2d.tracking.cotracker import CoTrackerTracker

        return CoTrackerTracker(t.cotracker_repo, t.cotracker_checkpoint, t.device, t.window_len)
    raise ConfigError("tracker.kind", f"'{t.kind}' is not {TrackerKind.names()}")
