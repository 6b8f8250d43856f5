"""Choosing and configuring the video encoder of re-encoded clips (``CutConfig.codec``).

``codec`` names a family (``h264``, ``hevc``, ``av1``, ``vp9``) or an encoder. A family becomes
the NVENC encoder when ``gpu`` allows it and that encoder really opens here (the PyAV wheels
list NVENC encoders on every machine, so listing proves nothing), else the software encoder.
Quality settings map onto each encoder's own options: ``crf`` is x264/x265/SVT-AV1/VP9 crf and
NVENC ``cq``; ``bitrate`` replaces them with an average bitrate.
"""

from __future__ import annotations

import functools
import os
import re
from fractions import Fraction

import av

from clipfactory.config import CutConfig

__all__ = [
    "FAMILIES", "codec_name", "encoder_options", "encoder_pix_fmt", "nvenc_available",
    "parse_bitrate", "resolve_encoder",
]

# family -> (NVENC encoder or None, software encoder)
FAMILIES: dict[str, tuple[str | None, str]] = {
    "h264": ("h264_nvenc", "libx264"),
    "hevc": ("hevc_nvenc", "libx265"),
    "av1": ("av1_nvenc", "libsvtav1"),
    "vp9": (None, "libvpx-vp9"),
}
_NVENC_PRESETS = {f"p{i}" for i in range(1, 8)}
_BITRATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kKmMgG]?)\s*$")
_SCALE = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9}


@functools.cache
def nvenc_available(name: str) -> bool:
    """Whether NVENC encoder ``name`` opens and encodes a tiny 256x256 frame on this machine.

    Tried once per process: without a GPU (or driver) the open fails at once.
    """
    try:
        cc = av.CodecContext.create(name, "w")
        cc.width = cc.height = 256
        cc.pix_fmt = "yuv420p"
        cc.time_base, cc.framerate = Fraction(1, 25), Fraction(25)
        cc.open()
        frame = av.VideoFrame(256, 256, "yuv420p")
        frame.pts = 0
        cc.encode(frame)
        cc.encode(None)
    except (av.FFmpegError, OSError, ValueError):
        return False
    return True


def resolve_encoder(cfg: CutConfig) -> str:
    """The encoder that ``cfg.codec`` means here (see the module docstring).

    Raises ``ValueError`` for an unknown codec, and for ``gpu="always"`` when the family has no
    NVENC encoder or NVENC does not open on this machine.
    """
    name = cfg.codec.strip().lower()
    if name in FAMILIES:
        nvenc, software = FAMILIES[name]
        if cfg.gpu != "never" and nvenc is not None and nvenc_available(nvenc):
            return nvenc
        if cfg.gpu == "always":
            why = (f"{nvenc} does not open on this machine" if nvenc
                   else f"there is no NVENC encoder for {name}")
            raise ValueError(f"cut.gpu is 'always' but {why}")
        return software
    try:
        codec = av.codec.Codec(cfg.codec, "w")
    except ValueError as e:  # av.codec.codec.UnknownCodecError
        raise ValueError(f"unknown codec {cfg.codec!r}: expected one of {sorted(FAMILIES)} or "
                         "an FFmpeg video encoder name") from e
    if codec.type != "video":
        raise ValueError(f"{cfg.codec!r} is not a video encoder")
    return cfg.codec


def codec_name(encoder: str) -> str:
    """The codec an encoder writes, as FFmpeg names it (``libsvtav1`` -> ``av1``)."""
    return av.codec.Codec(encoder, "w").canonical_name


def encoder_pix_fmt(encoder: str, pix_fmt: str) -> str | None:
    """The pixel format to feed ``encoder`` for ``pix_fmt``, or None if it cannot encode it.

    NVENC takes 10-bit 4:2:0 as ``p010le`` (same samples, semi-planar), not ``yuv420p10le``.
    """
    formats = {f.name for f in av.codec.Codec(encoder, "w").video_formats or ()}
    if pix_fmt in formats:
        return pix_fmt
    if pix_fmt == "yuv420p10le" and "p010le" in formats:
        return "p010le"
    return None


def parse_bitrate(text: str) -> int:
    """Bits per second from ``"4M"``, ``"800k"``, ``"2.5M"`` or ``"600000"`` (SI prefixes)."""
    m = _BITRATE.match(text)
    if not m or float(m.group(1)) <= 0:
        raise ValueError(f"bad bitrate {text!r}: expected e.g. '4M', '800k' or '600000'")
    return round(float(m.group(1)) * _SCALE[m.group(2).lower()])


def encoder_options(name: str, cfg: CutConfig) -> dict[str, str]:
    """Encoder options (``avcodec_open2`` dictionary) for ``cfg``'s quality settings.

    With ``cfg.bitrate`` the encoder targets that average bitrate (option ``b``, i.e.
    ``AVCodecContext.bit_rate``) instead of a constant quality. SVT-AV1 logs to stderr unless
    ``SVT_LOG`` says otherwise, so this sets ``SVT_LOG=1`` (errors only) when it is unset.
    Encoders not listed here get only ``b`` (bitrate mode) and are otherwise left as they are.
    """
    bitrate = str(parse_bitrate(cfg.bitrate)) if cfg.bitrate else None
    quality = {"b": bitrate} if bitrate else {}
    if name in ("libx264", "libx265"):
        opts = {"preset": cfg.preset, **(quality or {"crf": str(cfg.crf)})}
        if name == "libx265":
            opts["x265-params"] = "log-level=error"
        return opts
    if name == "libsvtav1":
        os.environ.setdefault("SVT_LOG", "1")
        preset = cfg.preset if cfg.preset.isdigit() else "10"
        return {"preset": preset, **(quality or {"crf": str(cfg.crf)})}
    if name == "libvpx-vp9":
        # b=0 with crf is VP9's constant-quality mode (otherwise crf is a cap on a bitrate)
        return {"deadline": "good", "cpu-used": "5", "row-mt": "1",
                **(quality or {"crf": str(cfg.crf), "b": "0"})}
    if name.endswith("_nvenc"):
        preset = cfg.preset if cfg.preset in _NVENC_PRESETS else "p4"
        # b=0: NVENC's default 2 Mb/s would otherwise cap the constant-quality mode
        return {"preset": preset, "rc": "vbr", **(quality or {"cq": str(cfg.crf), "b": "0"})}
    return quality
