"""``TrackerParams``: every point-tracker setting and its default, defined once; ``FlowParams`` the dense flow's,
which the flow tracker and the motion masks share (config section ``flow``). The config's ``tracker`` section is
this dataclass, and the trackers' constructors take their defaults from it, so a tracker built in a test or a
benchmark behaves as the one ``s2d run`` builds."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from s2d.choices import TrackerKind


@dataclass
class TrackerParams:
    kind: TrackerKind = TrackerKind.flow  # flow | lk (built-in, no weights) | cotracker
    window: int = 15                   # LK window size in pixels
    levels: int = 3                    # LK pyramid levels
    fb_threshold: float = 1.0          # forward-backward error (px) above which a point is not visible
    fb_relative: float = 0.01          # flow: error allowed to grow with the motion (Sundaram et al. 2010; 0: fixed)
    cotracker_repo: Optional[str] = None
    cotracker_checkpoint: Optional[str] = None
    device: str = "cpu"
    window_len: int = 60               # CoTracker3's sliding window (frames)
    # track through the recording's frames between the video's, where the data has them (SA-V's 24 fps between its
    # annotated frames, data.all_frames, data.stride on image folders; s2d/data/full_rate.py); with masks=motion
    # and masks.full_rate, keymask discovery runs over the recording's masks on every frame
    full_rate: bool = True


@dataclass
class FlowParams:
    # the DIS pyramid level the flow is refined down to: 0 the frames' own resolution, 1 half of it (OpenCV's
    # MEDIUM preset as it is). At 240p, 0 made the motion masks and the tracker more exact at every frame rate;
    # the demo's config keeps 1, where its learned stages measured better (docs/RESULTS.md, "Optical flow at the
    # frames' resolution")
    finest_scale: int = 0
