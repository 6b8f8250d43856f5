"""What cutting one span produced, and the input handling every cut mode shares."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import av
import numpy as np

from clipfactory.errors import MediaError
from clipfactory.media.streams import main_video_stream
from clipfactory.records import Span

__all__ = ["SEEK_BACKOFF_S", "CutResult", "index_keyframe", "usable_pts", "video_stream"]

# how far before its target a seek is retried when it lands past it (an index by DTS, a
# container without one, MPEG-TS): seconds, and None for the start of the stream. The cutters
# and the frame grab share it.
SEEK_BACKOFF_S: tuple[float | None, ...] = (0.0, 1.0, 5.0, None)


@dataclass(frozen=True)
class CutResult:
    """A clip file, or ``error`` (then no file was left at ``path``).

    ``span`` is the span the clip holds: the requested one, except in ``keyframe`` mode, where
    it is the GOP-aligned span inside the request. ``method``: ``smart`` (whole GOPs copied,
    edges re-encoded), ``copy`` (keyframe mode), ``reencode`` (every frame encoded: the
    fallback of ``exact`` mode, with ``fallback`` saying why) or ``transcode``.
    """

    span: Span
    path: str
    frames: int
    width: int
    height: int
    bytes: int
    error: str | None = None
    method: str = "reencode"
    copied_frames: int = 0  # frames whose packets were copied from the source unchanged
    fallback: str | None = None  # why an exact cut was re-encoded in full
    audio: bool = False  # the clip carries the source's audio over its span
    codec: str = ""  # the clip's video codec (FFmpeg name)
    note: str | None = None  # e.g. why audio was not kept
    fps: float | None = None  # the file's constant rate when resampled (transcode ``fps``)
    deinterlaced: bool = False  # every frame went through the deinterlacer


def usable_pts(frame_pts: Sequence[int] | np.ndarray | None) -> np.ndarray | None:
    """The analysis pass's frame pts as int64, or None when they cannot identify frames
    (missing, not one-dimensional, duplicated or out of order)."""
    if frame_pts is None or not len(frame_pts):
        return None
    try:
        pts = np.asarray(frame_pts, dtype=np.int64)
    except (TypeError, ValueError):
        return None
    return None if pts.ndim != 1 or np.any(np.diff(pts) <= 0) else pts


def video_stream(container: av.container.InputContainer, source: str,
                 threads: int) -> av.VideoStream:
    """The source's video (:func:`~clipfactory.media.streams.main_video_stream`), its decoder
    set to ``threads`` (1: slice threads only)."""
    vstream = main_video_stream(container)
    if vstream is None:
        raise MediaError("cut", "no_video_stream", source)
    vstream.thread_type = "AUTO" if threads != 1 else "SLICE"
    vstream.codec_context.thread_count = max(threads, 0)
    return vstream


def index_keyframe(stream: av.VideoStream, first_pts: int, pts: int
                   ) -> tuple[int | None, int] | None:
    """What the container's index says about the last keyframe at or before presentation
    time ``pts``: ``(its index timestamp, shift)``, ``(None, shift)`` when there is none, or
    None when the index cannot tell (empty, unreadable). Index timestamps may be DTS (MP4):
    the lookup shifts ``pts`` by ``shift``, the first entry's offset from ``first_pts`` (the
    first frame's pts), as the mov demuxer's own seek does; the timestamp returned is the
    index's own. Whether seeking beats decoding on is the callers' question (cutters, grabs)."""
    entries = stream.index_entries
    try:
        if not len(entries):
            return None
        shift = max(0, first_pts - entries[0].timestamp)
        k = entries.search_timestamp(pts - shift, backward=True)
        return (int(entries[k].timestamp) if k >= 0 else None), shift
    except (av.FFmpegError, ValueError, IndexError):
        return None
