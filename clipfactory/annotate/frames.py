"""Frames for clip-level models, read from the clip itself (a staged file or a shard member).

A few frames, uniform over the clip (the middle of each of ``n`` equal parts), decoded in one
forward pass that stops after the last one; only the chosen frames are converted to RGB, by
FFmpeg's scaler, already shrunk so their shorter side is at most ``short_side`` (models resize
to about 224 anyway). A clip in a shard is read from its tar member without unpacking the
shard. Never re-fetches or re-decodes the source.
"""

from __future__ import annotations

import io
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

import av
import numpy as np
from av.video.reformatter import Interpolation

from clipfactory.media.streams import display_rotation, pixel_aspect, shown_size, upright
from clipfactory.stages.base import ClipInput

__all__ = ["Decoded", "FrameError", "decode_frames", "open_clip_bytes", "sample_frames", "sample_positions"]


class FrameError(Exception):
    """The clip's frames cannot be read (missing, truncated or undecodable file)."""


def sample_positions(num_frames: int, n: int) -> list[int]:
    """Frame indices of ``n`` samples uniform over ``num_frames`` (fewer for short clips)."""
    if num_frames <= 0 or n <= 0:
        return []
    n = min(n, num_frames)
    return sorted({min(num_frames - 1, int((i + 0.5) * num_frames / n)) for i in range(n)})


def open_clip_bytes(clip: ClipInput) -> str | io.BytesIO:
    """What PyAV should open: the staged file's path, or the shard member's bytes."""
    if clip.member is None:
        return clip.path
    try:
        with tarfile.open(clip.path) as tar:
            fh = tar.extractfile(clip.member)
            if fh is None:
                raise FrameError(f"{clip.member} in {clip.path} is not a file")
            return io.BytesIO(fh.read())
    except (OSError, KeyError, tarfile.TarError) as e:
        raise FrameError(f"cannot read {clip.member} from {clip.path}: {e}") from e


def _size(width: int, height: int, short_side: int) -> tuple[int, int]:
    s = min(width, height)
    if s <= short_side:
        return width, height
    f = short_side / s
    return max(2, round(width * f / 2) * 2), max(2, round(height * f / 2) * 2)


def _rgb(frame: av.VideoFrame, size: Callable[[int, int], tuple[int, int]],
         sar: Fraction | None) -> np.ndarray:
    """The frame as it is shown: its anamorphic pixels stretched, and turned upright where it
    carries a display matrix (a keyframe-mode clip of a phone's video keeps the source's),
    at ``size(width, height)`` before the turn."""
    w, h = size(*shown_size(frame.width, frame.height, sar))
    rgb = frame.reformat(width=w, height=h, format="rgb24",
                         interpolation=Interpolation.AREA, threads=1).to_ndarray()
    return upright(rgb, display_rotation(frame))


@dataclass
class Decoded:
    """What one forward decode of a clip kept: the wanted frames by index (``wanted``), and
    ``tail``, the last decoded frame, when the clip ended before its last wanted index."""

    frames: dict[int, np.ndarray]
    wanted: list[int]
    tail: np.ndarray | None
    total: int
    rate: float


def decode_frames(clip: ClipInput, wanted_for: Callable[[int, float], list[int]],
                  size: Callable[[int, int], tuple[int, int]]) -> Decoded:
    """Decode ``clip`` once, up to the last of ``wanted_for(frames, fps)``, converting only
    those frames to RGB at ``size(width, height)``; raises :class:`FrameError`."""
    src = open_clip_bytes(clip)
    try:
        with av.open(src) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            total = clip.num_frames or stream.frames
            rate = clip.fps or float(stream.average_rate or 30)
            sar = pixel_aspect(stream)  # anamorphic pixels: models see the shown picture
            wanted = sorted(set(wanted_for(total, rate)))
            if not wanted:
                raise FrameError("the clip has no frames")
            keep, got, last = set(wanted), {}, None
            for i, frame in enumerate(container.decode(stream)):
                last = frame
                if i in keep:
                    got[i] = _rgb(frame, size, sar)
                if i >= wanted[-1]:
                    break
            tail = None if last is None or len(got) == len(wanted) else _rgb(last, size, sar)
            return Decoded(got, wanted, tail, total, rate)
    except FrameError:
        raise
    except (av.FFmpegError, OSError, IndexError, ValueError) as e:
        raise FrameError(f"cannot decode {clip.member or clip.path}: {e}") from e


def sample_frames(clip: ClipInput, n: int, short_side: int = 256) -> list[np.ndarray]:
    """``n`` RGB frames (HxWx3 uint8) uniform over the clip; raises :class:`FrameError`."""
    d = decode_frames(clip, lambda total, _: sample_positions(total, n),
                      lambda w, h: _size(w, h, short_side))
    frames = [d.frames[i] for i in sorted(d.frames)]
    if len(frames) < len(d.wanted) and d.tail is not None:  # fewer frames than recorded
        frames.append(d.tail)
    if not frames:
        raise FrameError("no frame could be decoded")
    return frames
