"""NVDEC: the analysis pass's decode on an NVIDIA GPU (FFmpeg's CUDA hwaccel, through PyAV).

``av.open(path, hwaccel=HWAccel("cuda"))`` decodes on the GPU and copies every frame back to
system memory (``nv12`` for 8-bit 4:2:0, ``p010le``/``p016le`` for 10/12-bit), so the rest of the
pass is unchanged: :func:`clipfactory.media.digest.plane_digest` hashes those layouts as their
planar twins, and swscale scales ``nv12`` to the same RGB analysis frame as ``yuv420p``.

How PyAV 18.1 (FFmpeg 8) behaves, which is what this module works around:

- The CUDA device is created inside ``av.open``, once per stream whose decoder has a CUDA
  config. Without a GPU or driver that raises (``av.error.PermissionError``, FFmpeg's log: "Could
  not dynamically load CUDA", ~1 ms) whatever ``allow_software_fallback`` says:
  :func:`cuda_device_opens` tries once per process and remembers.
- A decoder without a CUDA config (``libdav1d``, which FFmpeg picks for AV1) opens in software
  without a word; ``codec_context.is_hwaccel`` is False then.
- With ``allow_software_fallback=True`` (PyAV's default) FFmpeg decodes in software a stream
  that NVDEC refuses (H.264 4:4:4, a size over the limit...) and ``is_hwaccel`` still says True;
  with False such a stream fails to decode. So the first frame of each kind of stream (codec,
  profile, size) is decoded once with the fallback off, and the answer kept for the process.
- The device's primary CUDA context is used (``primary_ctx``), and one device is kept open, so
  opening the next file does not create a CUDA context again.
"""

from __future__ import annotations

import functools
from typing import Literal

import av
from av.codec.hwaccel import HWAccel, hwdevices_available

from clipfactory.errors import MediaError
from clipfactory.media.streams import main_video_stream

__all__ = ["cuda_device_opens", "decoder_of", "open_input"]

_DEVICE = "cuda"
_OPTIONS = {"primary_ctx": "1"}
_kept: list[HWAccel] = []  # holds the primary context between files
_kinds: dict[tuple[str, str | None, int, int], bool] = {}  # stream kind -> NVDEC decodes it


@functools.cache
def cuda_device_opens() -> bool:
    """Whether FFmpeg opens a CUDA device here (driver loaded, a GPU present). Tried once per
    process: without a GPU the attempt fails in about a millisecond."""
    if _DEVICE not in hwdevices_available():
        return False
    try:
        _kept.append(_accel(True).create(av.codec.Codec("h264", "r")))
    except (av.FFmpegError, OSError, NotImplementedError, RuntimeError, ValueError):
        return False
    return True


def decoder_of(stream: av.VideoStream) -> str:
    """``"nvdec"`` when ``stream`` decodes on the GPU, else ``"software"``."""
    return "nvdec" if stream.codec_context.is_hwaccel else "software"


def open_input(path: str, gpu: Literal["auto", "never", "always"]) -> av.container.InputContainer:
    """Open ``path`` for decoding on NVDEC where ``gpu`` asks for it and NVDEC decodes it, else
    in software. With ``gpu="always"`` a video NVDEC cannot decode raises :class:`MediaError`
    (``nvdec_unavailable``: no CUDA device; ``nvdec_unsupported``: not this stream)."""
    if gpu == "never":
        return _software(path)
    if not cuda_device_opens():
        if gpu == "always":
            raise MediaError("analyse", "nvdec_unavailable",
                             "analysis.gpu is 'always' but no CUDA device opens here "
                             "(no NVIDIA GPU or driver)")
        return _software(path)
    try:
        container = av.open(path, metadata_errors="ignore", hwaccel=_accel(gpu == "auto"))
    except (av.FFmpegError, RuntimeError) as e:
        # the device failed now (out of memory...), or no stream has a CUDA decoder (PyAV's
        # RuntimeError, fallback off), or the file is unreadable: the software open raises that
        container = _software(path)
        if gpu == "always":
            container.close()
            reason = "nvdec_unavailable" if isinstance(e, av.FFmpegError) else "nvdec_unsupported"
            raise MediaError("analyse", reason,
                             f"analysis.gpu is 'always' but NVDEC did not open: {e}") from e
        return container
    stream = main_video_stream(container)
    if stream is None:
        return container  # open_video says what is wrong
    if gpu == "auto" and not stream.codec_context.is_hwaccel:
        return container  # a decoder without an NVDEC path: software already
    why = _why_not(path, stream)
    if why is None:
        return container
    container.close()
    if gpu == "always":
        raise MediaError("analyse", "nvdec_unsupported", f"analysis.gpu is 'always' but {why}")
    return _software(path)


def _accel(fallback: bool) -> HWAccel:
    return HWAccel(_DEVICE, allow_software_fallback=fallback, options=_OPTIONS)


def _software(path: str) -> av.container.InputContainer:
    return av.open(path, metadata_errors="ignore")


def _why_not(path: str, stream: av.VideoStream) -> str | None:
    """None when NVDEC decodes ``stream``, else why not."""
    ctx = stream.codec_context
    if not ctx.is_hwaccel:
        return f"FFmpeg's {ctx.name} decoder has no NVDEC path"
    kind = (ctx.name, ctx.profile, ctx.width, ctx.height)
    if kind not in _kinds:
        _kinds[kind] = _first_frame_on_gpu(path)
    if _kinds[kind]:
        return None
    return f"NVDEC does not decode this stream ({ctx.name} {ctx.profile or ''} " \
           f"{ctx.width}x{ctx.height})"


def _first_frame_on_gpu(path: str) -> bool:
    try:
        with av.open(path, metadata_errors="ignore", hwaccel=_accel(False)) as c:
            stream = main_video_stream(c)
            if stream is None or not stream.codec_context.is_hwaccel:
                return False
            for _ in c.decode(stream):
                return True
    except (av.FFmpegError, OSError, RuntimeError, ValueError, IndexError):
        return False
    return False
