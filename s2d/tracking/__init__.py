"""Point trackers behind one interface: all query points of a video in one call, forward and backward."""
from s2d.tracking.base import PointTracker, Tracks
from s2d.tracking.flow_chain import FlowChainTracker
from s2d.tracking.lucas_kanade import LucasKanadeTracker

__all__ = ["PointTracker", "Tracks", "FlowChainTracker", "LucasKanadeTracker"]
