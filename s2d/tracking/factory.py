"""Build the configured tracker (config group ``tracker``)."""
from __future__ import annotations

from typing import Any

from s2d.choices import TrackerKind
from s2d.errors import ConfigError


def make_tracker(t: Any, flow_cache_dir: str | None = None, flow: Any = None):
    """``flow_cache_dir``: where dense flows of the videos are kept (shared with the motion masks); ``flow``: the
    config's ``flow`` section (``FlowParams``; None: its defaults)."""
    if t.kind == "flow":
        from s2d.tracking.flow_cache import FlowCache
        from s2d.tracking.flow_chain import FlowChainTracker

        from s2d.tracking.params import FlowParams

        f = flow if flow is not None else FlowParams()
        return FlowChainTracker(t.fb_threshold, cache=FlowCache(flow_cache_dir, finest_scale=f.finest_scale),
                                fb_relative=t.fb_relative)
    if t.kind == "lk":
        from s2d.tracking.lucas_kanade import LucasKanadeTracker

        return LucasKanadeTracker(t.window, t.levels, t.fb_threshold)
    if t.kind == "cotracker":
        from s2d.tracking.cotracker import CoTrackerTracker

        return CoTrackerTracker(t.cotracker_repo, t.cotracker_checkpoint, t.device, t.window_len)
    raise ConfigError("tracker.kind", f"'{t.kind}' is not {TrackerKind.names()}")
