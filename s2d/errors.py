"""Exceptions that carry the context a user needs to fix their input.

Every error raised on bad input names the file, video, frame, record or config key it is about, so that
a failure deep inside a stage reads as "video 'bear', frame 17 (…/00017.jpg): truncated JPEG" rather than
as a bare traceback from a decoder.
"""
from __future__ import annotations

from pathlib import Path


class S2DError(Exception):
    """Base class of every error the suite raises on purpose."""


class VideoError(S2DError):
    """A video or one of its frames cannot be read."""

    def __init__(self, message: str, *, video_id: str, frame_index: int | None = None,
                 path: str | Path | None = None):
        where = f"video '{video_id}'"
        if frame_index is not None:
            where += f", frame {frame_index}"
        if path is not None:
            where += f" ({path})"
        super().__init__(f"{where}: {message}")
        self.message = message
        self.video_id = video_id
        self.frame_index = frame_index
        self.path = None if path is None else str(path)


class MissingFrameError(VideoError):
    """A frame that the video's index refers to does not exist on disk."""


class CorruptFrameError(VideoError):
    """A frame exists but cannot be decoded (truncated JPEG/PNG, broken container)."""


class LabelsetError(S2DError):
    """A labelset (YouTube-VIS json) is malformed; the message names the file and the record."""

    def __init__(self, message: str, *, file: str | Path | None = None, record: str | None = None):
        where = []
        if file is not None:
            where.append(str(file))
        if record is not None:
            where.append(record)
        prefix = ": ".join(where)
        super().__init__(f"{prefix}: {message}" if prefix else message)
        self.file = None if file is None else str(file)
        self.record = record


class IncompleteSetError(S2DError):
    """An artifact folder lacks its manifest or a shard listed in it is missing or corrupt."""


class ConfigError(S2DError):
    """A config value is missing, of the wrong type or out of range; the message names the key."""

    def __init__(self, key: str, message: str):
        super().__init__(f"config key '{key}': {message}")
        self.key = key
