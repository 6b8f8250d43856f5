"""Frames for captioning: sampled at ``fps`` over the clip, split into windows of at most
``max_frames``, scaled so the longer side is at most ``max_side`` (never cropped or padded: the
clip's own aspect ratio), encoded as JPEG, or as one short H.264 video per window, by PyAV
(no Pillow, no system ffmpeg). Read from the clip itself (staged file or shard member) in one
forward decode; the source is never fetched again.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field
from fractions import Fraction

import av
import numpy as np

from clipfactory.annotate.frames import FrameError, decode_frames
from clipfactory.media.grab import scaled_size
from clipfactory.stages.base import ClipInput

__all__ = ["CaptionFrames", "Window", "encode_jpeg", "encode_mp4", "read_caption_frames",
           "sample_plan", "scaled_size"]


@dataclass
class Window:
    """Consecutive sampled frames of one part of the clip (seconds from the clip's start)."""

    start_s: float
    end_s: float
    frames: list[np.ndarray] = field(default_factory=list)


@dataclass
class CaptionFrames:
    """The windows of a clip and, when there are several, a whole-clip subsample."""

    windows: list[Window]
    overview: list[np.ndarray]  # at most max_frames, uniform over the clip
    fps: float


def sampling_rate(fps: float, clip_fps: float) -> float:
    """The rate frames are sampled at: ``fps``, at most the clip's own rate."""
    return min(fps, clip_fps) if clip_fps > 0 else fps


def sample_plan(num_frames: int, clip_fps: float, fps: float, max_frames: int
                ) -> tuple[list[int], list[list[int]], list[int]]:
    """(every sampled frame index, windows as lists of those indices, the overview subset).

    Samples sit at the middle of each 1/fps interval; a clip shorter than one interval still
    gets its middle frame. ``fps`` above the clip's rate samples every frame (as the clip's
    rate: a frame is not sampled twice, and windows keep ``max_frames`` frames each)."""
    if num_frames <= 0:
        return [], [], []
    fps = sampling_rate(fps, clip_fps)
    duration = num_frames / clip_fps if clip_fps > 0 else num_frames / 30.0
    n = max(1, math.floor(duration * fps))
    idx = sorted({min(num_frames - 1, int((i + 0.5) / fps * clip_fps)) for i in range(n)}) \
        if clip_fps > 0 else [num_frames // 2]
    windows = [idx[i:i + max_frames] for i in range(0, len(idx), max_frames)]
    if len(idx) <= max_frames:
        overview = idx
    else:
        pick = np.linspace(0, len(idx) - 1, max_frames).round().astype(int)
        overview = [idx[i] for i in sorted(set(pick.tolist()))]
    return idx, windows, overview


def read_caption_frames(clip: ClipInput, fps: float, max_frames: int, max_side: int
                        ) -> CaptionFrames:
    """Decode the clip once and keep the sampled frames (raises FrameError)."""
    d = decode_frames(clip, lambda total, rate: sample_plan(total, rate, fps, max_frames)[0],
                      lambda w, h: scaled_size(w, h, max_side))
    _, windows, overview = sample_plan(d.total, d.rate, fps, max_frames)
    got = d.frames
    if not got:
        raise FrameError("no sampled frame could be decoded")
    have = sorted(got)

    def frames(ix: list[int]) -> list[np.ndarray]:  # a frame past the real end: the last one
        return [got[i] if i in got else got[have[-1]] for i in ix]

    rate = sampling_rate(fps, d.rate)
    span = max_frames / rate  # each window covers its samples' 1/rate intervals
    duration = d.total / d.rate
    out = [Window(round(k * span, 6), round(min(duration, (k + 1) * span), 6), frames(w))
           for k, w in enumerate(windows)]
    return CaptionFrames(out, frames(overview) if len(windows) > 1 else out[0].frames, rate)


def encode_jpeg(rgb: np.ndarray, quality: int = 90) -> bytes:
    """One RGB frame as JPEG bytes (FFmpeg's mjpeg encoder)."""
    h, w = rgb.shape[:2]
    ctx = av.CodecContext.create("mjpeg", "w")
    ctx.width, ctx.height, ctx.pix_fmt = w, h, "yuvj420p"
    ctx.time_base = Fraction(1, 25)
    q = max(2, min(31, round(2 + (100 - quality) * 29 / 100)))  # 1-31 scale, lower is better
    ctx.options = {"qmin": str(q), "qmax": str(q)}
    frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuvj420p")
    packets = list(ctx.encode(frame)) + list(ctx.encode(None))
    return b"".join(bytes(p) for p in packets)


def encode_mp4(frames: list[np.ndarray], fps: float) -> bytes:
    """The frames as a short H.264 MP4 (for servers that take a video)."""
    buf = io.BytesIO()
    h, w = frames[0].shape[:2]
    with av.open(buf, "w", format="mp4") as out:
        s = out.add_stream("libx264", rate=Fraction(fps).limit_denominator(1000))
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        s.options = {"preset": "veryfast", "crf": "23"}
        for f in frames:
            for p in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                out.mux(p)
        for p in s.encode(None):
            out.mux(p)
    return buf.getvalue()
