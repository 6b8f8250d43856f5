"""Probe an input with PyAV: what it is, or a specific reason why it is not usable video.

Probing reads the container header and decodes the first frame (to learn the rotation and to
prove that the stream decodes at all). Anything that fails raises :class:`MediaError` with a
reason code; the caller records it against the input and moves on.
"""

from __future__ import annotations

import errno
import os
import stat
import struct
from fractions import Fraction
from pathlib import Path
from typing import Literal

import av

from clipfactory.config import IngestConfig
from clipfactory.errors import MediaError
from clipfactory.media import nvdec
from clipfactory.media.streams import frame_rate, main_video_stream, right_angle
from clipfactory.records import VideoInfo

__all__ = ["mp4_top_level_boxes", "open_video", "probe"]

# Demuxers and codecs FFmpeg will happily "decode" from arbitrary text or images.
_NOT_VIDEO_CODECS = {"ansi", "bintext", "xbin", "idf", "tty", "text", "ass", "subrip"}
_MP4_BRANDS = (b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide", b"uuid", b"styp")


def mp4_top_level_boxes(path: str | Path, limit: int = 64) -> list[tuple[bytes, int]] | None:
    """Return the top-level (type, size) boxes of an ISO-BMFF file, or None if it is not one.

    Only box headers are read. Used to tell a truncated MP4 whose index (``moov``) never made it
    to disk from a file that is simply not video.
    """
    boxes: list[tuple[bytes, int]] = []
    size_total = os.path.getsize(path)
    with open(path, "rb") as fh:
        pos = 0
        while pos + 8 <= size_total and len(boxes) < limit:
            fh.seek(pos)
            header = fh.read(16)
            size, kind = struct.unpack(">I4s", header[:8])
            if size == 1 and len(header) >= 16:
                size = struct.unpack(">Q", header[8:16])[0]
            elif size == 0:
                size = size_total - pos
            if size < 8 or not kind.isascii():
                break
            boxes.append((kind, size))
            pos += size
    if not boxes or boxes[0][0] not in _MP4_BRANDS:
        return None
    return boxes


def open_video(path: str, threads: int = 1, gpu: Literal["auto", "never", "always"] = "never"
               ) -> tuple[av.container.InputContainer, av.VideoStream]:
    """Open ``path`` and return (container, :func:`main_video_stream`) with decoder threads
    set.

    ``gpu`` other than ``"never"`` decodes on NVDEC where it can (:mod:`clipfactory.media.nvdec`;
    ``decoder_of(stream)`` says which decoder it got); ``"always"`` raises :class:`MediaError`
    where it cannot."""
    container = nvdec.open_input(path, gpu)
    stream = main_video_stream(container)
    if stream is None:
        container.close()
        raise MediaError("probe", "no_video_stream", "the file has no video stream" + (
            " (only a cover picture)" if container.streams.video else ""))
    stream.thread_type = "AUTO" if threads != 1 else "SLICE"
    stream.codec_context.thread_count = max(threads, 0)
    return container, stream


def _why_unopenable(path: str, err: Exception) -> MediaError:
    boxes = mp4_top_level_boxes(path)
    if boxes is not None:
        kinds = [k for k, _ in boxes]
        if b"moov" not in kinds:
            return MediaError("probe", "truncated_no_index",
                              "MP4/MOV file without a moov atom (download or write cut short)")
        return MediaError("probe", "corrupt_container", f"MP4/MOV structure unreadable: {err}")
    return MediaError("probe", "not_a_media_file", f"FFmpeg cannot read it: {err}")


def _fps(stream: av.VideoStream) -> float:
    rate = frame_rate(stream)
    return float(rate) if rate else 0.0


def probe(path: str, cfg: IngestConfig | None = None) -> VideoInfo:
    """Describe the video at ``path`` or raise :class:`MediaError` saying why it is unusable."""
    cfg = cfg or IngestConfig()
    try:
        st = os.stat(path)  # links followed
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise MediaError("probe", "symlink_loop",
                             f"a symbolic link that leads back to itself, to no file: {path}"
                             ) from e
        if e.errno in (errno.ENOENT, errno.ENOTDIR):  # a dangling link too
            raise MediaError("probe", "missing_file", f"no such file: {path}") from e
        raise
    if not stat.S_ISREG(st.st_mode):
        raise MediaError("probe", "not_a_file", f"not a regular file: {path}")
    try:
        with open(path, "rb") as f:
            f.read(1)
    except OSError as e:  # no permission for this user, a read error of the disk
        raise MediaError("probe", "unreadable_file",
                         f"cannot read it: {e.strerror or e} (as user id {os.getuid()})") from e
    size = st.st_size
    if size == 0:
        raise MediaError("probe", "empty_file", "the file is zero bytes")
    try:
        container, stream = open_video(path)
    except MediaError:
        raise
    except (av.FFmpegError, OSError, UnicodeDecodeError, ValueError) as e:
        raise _why_unopenable(path, e) from e
    try:
        return _describe(path, container, stream, size, cfg)
    finally:
        container.close()


def _describe(path: str, container: av.container.InputContainer, stream: av.VideoStream,
              size: int, cfg: IngestConfig) -> VideoInfo:
    ctx = stream.codec_context
    codec = ctx.name or "unknown"
    if codec in _NOT_VIDEO_CODECS or container.format.name in ("tty", "image2"):
        raise MediaError("probe", "not_a_media_file",
                         f"FFmpeg reads it as {container.format.name}/{codec}, not a video")
    width, height = int(ctx.width or 0), int(ctx.height or 0)
    if width <= 0 or height <= 0:
        raise MediaError("probe", "no_dimensions", "the video stream reports no frame size")
    if width > cfg.max_dimension or height > cfg.max_dimension or width * height > cfg.max_pixels:
        raise MediaError("probe", "absurd_resolution",
                         f"{width}x{height} exceeds the limit ({cfg.max_pixels} pixels, "
                         f"{cfg.max_dimension} per side)")
    tb = stream.time_base or Fraction(1, 1)
    duration = float(stream.duration * tb) if stream.duration else 0.0
    if duration <= 0 and container.duration:
        duration = container.duration / 1_000_000
    if duration > cfg.max_duration_s:
        raise MediaError("probe", "absurd_duration",
                         f"{duration:.0f} s exceeds the limit of {cfg.max_duration_s:.0f} s")
    fps = _fps(stream)
    frames = int(stream.frames or 0) or (round(duration * fps) if fps and duration else 0)
    first = _first_frame(container, stream)
    fmt = first.format
    bits = max((c.bits for c in fmt.components), default=8)
    return VideoInfo(
        path=path,
        container=container.format.name,
        codec=codec,
        width=first.width or width,
        height=first.height or height,
        pix_fmt=fmt.name,
        fps=fps,
        duration_s=duration,
        frames=frames,
        # a display matrix need not hold an exact right angle (89.7 reads as 89 once truncated):
        # the nearest one, as every reader that turns frames rounds it
        rotation=right_angle(float(first.rotation or 0)),
        bit_depth=int(bits),
        has_audio=bool(container.streams.audio),
        size_bytes=size,
    )


def _first_frame(container: av.container.InputContainer, stream: av.VideoStream) -> av.VideoFrame:
    errors = 0
    try:
        for packet in container.demux(stream):
            try:
                for frame in packet.decode():
                    return frame
            except av.FFmpegError:
                errors += 1
                if errors > 50:
                    break
    except av.FFmpegError as e:
        raise MediaError("probe", "undecodable", f"demuxing failed before any frame: {e}") from e
    raise MediaError("probe", "undecodable", "no video frame could be decoded")
