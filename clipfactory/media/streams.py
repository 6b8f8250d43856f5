"""Which stream of a source file is its video."""

from __future__ import annotations

from collections.abc import Iterator
from fractions import Fraction

import av
import numpy as np

__all__ = ["FrameTimes", "decoded_packets", "display_rotation", "encoder_rate", "frame_rate",
           "is_elementary", "main_video_stream", "pixel_aspect", "right_angle", "shown_size",
           "upright"]


def main_video_stream(container: av.container.InputContainer) -> av.VideoStream | None:
    """The video a source is about: FFmpeg's best video stream, never a cover picture
    (``attached_pic``: the artwork yt-dlp's ``--embed-thumbnail`` or a tagger adds to a file,
    which can come before the real video); None when there is no other. Every reader of a
    source (probe, analysis, cut, thumbnails, bench) takes this one stream."""
    streams = [s for s in container.streams.video
               if not s.disposition & av.stream.Disposition.attached_pic]
    if not streams:
        return None
    best = container.streams.best("video")
    return best if best in streams else streams[0]


# demuxers of bare elementary streams (a Raspberry Pi's or a security camera's ``.h264``):
# with no container timing, FFmpeg reports 25 fps whatever the stream says
_RAW = {"h264", "hevc", "m4v", "mpegvideo", "cavsvideo", "vc1", "obu", "avs2", "avs3", "vvc"}


def is_elementary(stream: av.VideoStream) -> bool:
    """Whether ``stream`` is a bare elementary stream: its frames carry no timestamps, so
    they are counted (frame n is at n / rate), and a seek cannot say where it landed."""
    container = getattr(stream, "container", None)
    return container is not None and container.format.name in _RAW


def frame_rate(stream: av.VideoStream) -> Fraction | None:
    """The stream's frame rate: the container's average, else FFmpeg's guess, else the base
    rate; for a bare elementary stream, the rate its own headers give (H.264/HEVC VUI timing)
    first. None when none is plausible (0 or over 1000)."""
    rates = [stream.average_rate, stream.guessed_rate, stream.base_rate]
    if is_elementary(stream):
        rates.insert(0, stream.codec_context.framerate)
    for rate in rates:
        if rate and 0 < float(rate) < 1000:
            return Fraction(rate)
    return None


def encoder_rate(stream: av.VideoStream) -> Fraction:
    """The rate an encoder re-encoding ``stream``'s frames is given: :func:`frame_rate`, else
    30, with a denominator under 100,000."""
    return (frame_rate(stream) or Fraction(30)).limit_denominator(100_000)


def _aspect(value: object) -> Fraction | None:
    if not value:
        return None
    sar = Fraction(value)
    return sar if sar > 0 else None


def pixel_aspect(stream: av.VideoStream, *, coded: bool = False) -> Fraction | None:
    """The shape of the stream's pixels (sample aspect ratio, width over height), or None for
    square or unknown ones. An anamorphic source (PAL/NTSC DV and DVD 720x576/720x480, HDV
    1440x1080, DVCPRO HD) is shown wider or narrower than it is stored; a re-encode that
    dropped this would show it squeezed. As FFmpeg's players decide: the container's value
    (MP4 ``pasp``, Matroska's display size) over the bitstream's. ``coded``: the bitstream's
    only (the H.264 SPS), which a spliced clip's re-encoded frames must match."""
    sar = None if coded else _aspect(stream.sample_aspect_ratio)
    if sar is None:
        sar = _aspect(stream.codec_context.sample_aspect_ratio)
    return None if sar is None or sar == 1 else sar


def shown_size(width: int, height: int, sar: Fraction | None) -> tuple[int, int]:
    """The size a frame of ``width`` x ``height`` stored pixels of aspect ``sar`` is shown at:
    the width stretched (FFmpeg's ``scale=iw*sar:ih``); pictures for models and people."""
    return (max(1, round(width * sar)), height) if sar else (width, height)


def right_angle(degrees: float) -> int:
    """``degrees`` as the nearest of 0, 90, 180 and 270 (a display matrix's -90 is 270)."""
    return round(degrees / 90) % 4 * 90


def display_rotation(frame: av.VideoFrame) -> int:
    """How far ``frame`` is to be turned to be shown upright (its display matrix: 0, 90, 180 or
    270, counter-clockwise, as ``VideoInfo.rotation``). A phone's source has one, and so has
    a clip that keeps it (``cut.mode: keyframe`` copies the packets and the matrix)."""
    return right_angle(float(frame.rotation or 0))


def upright(rgb: np.ndarray, rotation: int) -> np.ndarray:
    """``rgb`` (HxWx3) turned by ``rotation`` degrees counter-clockwise, as players show it."""
    return np.ascontiguousarray(np.rot90(rgb, rotation // 90)) if rotation % 360 else rgb


def decoded_packets(container: av.container.InputContainer,
                    stream: av.VideoStream) -> Iterator[list[av.VideoFrame] | None]:
    """Each packet of ``stream`` decoded, in file order: its frames, or None where the packet
    did not decode (damaged bytes). Decoding goes on after a bad packet, as the decoder
    recovers at the next keyframe; a demuxer that fails raises ``av.FFmpegError``. Every
    reader that must see a whole damaged file (the analysis pass, ``clipfactory shots``)
    decodes through this one loop."""
    for packet in container.demux(stream):
        try:
            frames = packet.decode()
        except av.FFmpegError:
            yield None
            continue
        yield frames


class FrameTimes:
    """Seconds from the stream's start of each decoded frame, taken in decoding order.

    A frame's time is its pts against the stream's start (the first frame's pts where the
    stream has no start time). From the first frame without a pts on, frames are counted
    (frame n at n / fps). Times only increase: where they go back or stand (MPEG-TS files
    joined end to end, ``cat a.ts b.ts``, or a capture whose clock restarted) the frames
    after it come one frame on, not earlier. The analysis pass and ``clipfactory shots``
    share it, so the two give a frame the same time."""

    __slots__ = ("_den", "_last", "_n", "_num", "_shift", "fps", "pts_ok", "t0")

    def __init__(self, stream: av.VideoStream, fps: float) -> None:
        tb = stream.time_base or Fraction(1, 1)
        # int arithmetic: what float(Fraction) gives, exactly, without a Fraction per frame
        self._num, self._den = tb.numerator, tb.denominator
        self.t0: int | None = stream.start_time
        self.fps = fps or 30.0
        self.pts_ok = True  # every frame so far had a pts
        self._shift, self._last, self._n = 0.0, 0.0, 0

    def __call__(self, pts: int | None) -> float:
        """The time of the next frame, whose pts is ``pts``."""
        if pts is None:
            self.pts_ok = False
        if self.t0 is None and pts is not None:
            self.t0 = pts
        n = self._n
        t = (((pts - (self.t0 or 0)) * self._num) / self._den if pts is not None and self.pts_ok
             else n / self.fps) + self._shift
        if n and t <= self._last:
            self._shift += self._last + 1.0 / self.fps - t
            t = self._last + 1.0 / self.fps
        self._last, self._n = t, n + 1
        return t
