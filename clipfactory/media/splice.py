"""What it takes to splice re-encoded frames into a source's own packets, per codec.

A smart cut joins runs of copied source packets and runs of packets from a fresh encoder in
one track. The joins are only safe when every run starts at a random access point and each
run's decoder configuration reaches the decoder before its first frame:

- H.264 (AVCC in MP4/MOV/Matroska/FLV): the encoder writes its SPS/PPS under ids the source does
  not use (x264 ``sps-id``), and the clip's ``avcC`` lists both sets, so every slice finds
  its own parameters without in-band headers. Runs must start at IDR pictures (a keyframe
  that is a recovery-point I picture starts an open GOP: not a splice point). The encoder
  profile follows the source's (baseline/main/high); high-bit-depth, 4:2:2/4:4:4 and
  interlaced (field/MBAFF) sources are not spliced.
- H.264 in Annex B (start codes, parameter sets in band: MPEG-TS, as HLS downloads, AVCHD
  and broadcast captures carry it): the same, with an ``avcC`` built from the stream's
  parameter sets. Copied packets are rewritten to 4-byte NAL lengths, their in-band SPS/PPS,
  access-unit delimiters and filler left out; an in-band SPS/PPS that is not one of the
  stream's first (a stream that changes its parameters) fails the clip's splice, and the
  clip is re-encoded in full.
- HEVC (``hvcC``, or Annex B from MPEG-TS; Main or Main 10, 4:2:0): x265 cannot choose its
  parameter-set ids, so its runs and the copied runs share the source's ids and each run
  sends its own VPS/SPS/PPS in band at its start, in a ``hev1`` track. Runs start at IRAP
  pictures; a source with open GOPs (RASL pictures) is re-encoded in full by the caller
  (:func:`open_gops`).
- VP9, AV1: keyframes reset all decoder state; the AV1 sequence header is put in-band at the
  start of each run that lacks one. 8-bit 4:2:0 only.
- MPEG-4 Part 2: the VOL header is put in-band at the start of each run.

Anything else (MPEG-2, 10-bit H.264...) is re-encoded in full;
:func:`splice_codec` returns the reason.
"""

from __future__ import annotations

import contextlib
import os
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from functools import cached_property
from typing import Any

import av

from clipfactory.media.streams import main_video_stream, pixel_aspect

__all__ = ["SpliceCodec", "disposable_check", "edited_out", "open_gops", "rap_check", "splice_codec"]

_FAMILY = {"h264": "h264", "vp9": "vp9", "libvpx-vp9": "vp9", "av1": "av1", "libdav1d": "av1",
           "libaom-av1": "av1", "mpeg4": "mpeg4", "hevc": "hevc"}
_HEVC_SETS = (32, 33, 34)  # VPS, SPS, PPS nal_unit_type
_HEVC_IRAP = range(16, 22)  # BLA, IDR, CRA: a CRA's leading pictures make its GOP uncopyable
_HEVC_AUD = 35  # access-unit delimiter
_CONTAINERS = {"mov,mp4,m4a,3gp,3g2,mj2", "matroska,webm", "avi", "mpegts", "flv"}
_HIGH_AVCC = {100, 110, 122, 144}  # profiles whose avcC carries chroma format and bit depths
_GLOBAL_HEADER = 1 << 22  # AV_CODEC_FLAG_GLOBAL_HEADER


class _Bits:
    """Exp-Golomb reader over an RBSP (emulation-prevention bytes removed)."""

    def __init__(self, nal: bytes) -> None:
        out, zeros = bytearray(), 0
        for b in nal:
            if zeros >= 2 and b == 3:
                zeros = 0
                continue
            out.append(b)
            zeros = zeros + 1 if b == 0 else 0
        self.data, self.pos = bytes(out), 0

    def u(self, n: int) -> int:
        v = 0
        for _ in range(n):
            byte = self.data[self.pos >> 3] if self.pos >> 3 < len(self.data) else 0
            v = (v << 1) | ((byte >> (7 - (self.pos & 7))) & 1)
            self.pos += 1
        return v

    def ue(self) -> int:
        zeros = 0
        while self.u(1) == 0:
            zeros += 1
            if zeros > 31:
                raise ValueError("bad exp-golomb code")
        return (1 << zeros) - 1 + self.u(zeros)

    def se(self) -> int:
        k = self.ue()
        return (k + 1) // 2 if k & 1 else -(k // 2)


@dataclass(frozen=True)
class _Sps:
    id: int
    profile: int
    constraints: int
    level: int
    chroma_format: int
    bit_depth: int
    frame_mbs_only: bool


_HIGH = {100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135}


def _parse_sps(nal: bytes) -> _Sps:
    """The fields of an H.264 SPS (NAL header included) that decide whether to splice."""
    b = _Bits(nal[1:])
    profile, constraints, level = b.u(8), b.u(8), b.u(8)
    sps_id = b.ue()
    chroma, depth = 1, 8
    if profile in _HIGH:
        chroma = b.ue()
        if chroma == 3:
            b.u(1)
        depth = 8 + b.ue()
        b.ue()  # chroma bit depth
        b.u(1)  # qpprime_y_zero_transform_bypass
        if b.u(1):  # scaling matrices: skip them
            for i in range(8 if chroma != 3 else 12):
                if b.u(1):
                    last = nxt = 8
                    for _ in range(16 if i < 6 else 64):
                        if nxt:
                            nxt = (last + b.se()) % 256
                        last = nxt or last
    b.ue()  # log2_max_frame_num - 4
    poc_type = b.ue()
    if poc_type == 0:
        b.ue()
    elif poc_type == 1:
        b.u(1)
        b.se()
        b.se()
        for _ in range(b.ue()):
            b.se()
    b.ue()  # max_num_ref_frames
    b.u(1)  # gaps_in_frame_num_allowed
    b.ue()  # width in MBs - 1
    b.ue()  # height in map units - 1
    return _Sps(sps_id, profile, constraints, level, chroma, depth, bool(b.u(1)))


def _pps_ids(nal: bytes) -> tuple[int, int]:
    b = _Bits(nal[1:])
    return b.ue(), b.ue()


def _annexb_nals(data: bytes) -> list[bytes]:
    """NAL units of an Annex-B byte stream (3- or 4-byte start codes)."""
    nals, i, n = [], 0, len(data)
    starts = []
    while True:
        j = data.find(b"\x00\x00\x01", i)
        if j < 0:
            break
        starts.append(j + 3)
        i = j + 3
    for k, s in enumerate(starts):
        e = starts[k + 1] - 3 if k + 1 < len(starts) else n
        nal = data[s:e]
        while nal.endswith(b"\x00") and k + 1 < len(starts):
            nal = nal[:-1]
        if nal:
            nals.append(nal)
    return nals


def _length_nals(data: bytes, size: int) -> list[bytes]:
    """NAL units of a length-prefixed (AVCC) packet."""
    nals, i = [], 0
    while i + size <= len(data):
        n = int.from_bytes(data[i:i + size], "big")
        nals.append(data[i + size:i + size + n])
        i += size + n
    return nals


@dataclass
class SpliceCodec:
    """How to splice one source: the matching encoder and the bitstream glue."""

    family: str
    encoder: str
    options: dict[str, str]
    src_extradata: bytes | None
    length_size: int = 4  # H.264: NAL length field size of the source
    profile_avcc: tuple[int, int, int] | None = None  # H.264: (profile, compat, level)
    sps: list[bytes] = field(default_factory=list)  # H.264: the source's parameter sets
    pps: list[bytes] = field(default_factory=list)
    avcc_tail: bytes = b""  # H.264 high profile avcC extension bytes
    enc_config: bytes | None = None  # the encoder's global header (set by the first run)
    annexb: bool = False  # H.264, HEVC: the source's packets use start codes (MPEG-TS)
    # HEVC: the source's VPS, SPS and PPS, which a copied run repeats in band (the encoder's
    # runs carry theirs under the same ids, in a track that allows that: ``hev1``)
    param_sets: list[bytes] = field(default_factory=list)
    sar: Fraction | None = None  # the bitstream's pixel aspect, which re-encoded runs repeat

    @property
    def framing(self) -> int:
        """The source packets' NAL framing: the AVCC length size, 0 for Annex B."""
        return 0 if self.annexb else self.length_size

    @property
    def codec_tag(self) -> str | None:
        """The clip track's sample entry where it is not the source's: HEVC parameter sets
        change in band at each run, which ``hev1`` allows and ``hvc1`` does not."""
        return "hev1" if self.family == "hevc" else None

    def is_rap(self, packet: av.Packet) -> bool:
        """Whether a keyframe packet starts a closed GOP (a safe place to start copying)."""
        if not packet.is_keyframe:
            return False
        if self.family == "hevc":
            return bool(self.hevc_types(bytes(packet)) & set(_HEVC_IRAP))
        if self.family != "h264":
            return True
        return _has_idr(bytes(packet), self.framing)

    def hevc_types(self, data: bytes) -> set[int]:
        """The NAL unit types an HEVC packet holds, in the source's framing."""
        return {_hevc_kind(n) for n in self._nals(data) if n}

    def _nals(self, data: bytes) -> list[bytes]:
        """The NAL units of a source packet, in the source's framing."""
        return _annexb_nals(data) if self.annexb else _length_nals(data, self.length_size)

    def disposable(self, packet: av.Packet) -> bool:
        """Whether no other picture can depend on this packet's (:func:`_disposable`,
        :func:`_hevc_disposable`)."""
        if self.family == "hevc":
            return _hevc_disposable(bytes(packet), self.framing, self.top_layer)
        return self.family == "h264" and _disposable(bytes(packet), self.framing)

    @cached_property
    def top_layer(self) -> int:
        """HEVC: the highest TemporalId the stream's SPS allows (:func:`_top_layer`)."""
        return _top_layer(self.param_sets)

    def new_encoder(self, width: int, height: int, tb: Fraction, rate: Fraction,
                    like: av.VideoFrame, threads: int) -> av.CodecContext:
        """A fresh encoder for one re-encoded run (first frame ``like`` gives the colours)."""
        if self.family == "av1":
            os.environ.setdefault("SVT_LOG", "1")
        enc = av.CodecContext.create(self.encoder, "w")
        enc.width, enc.height = width, height
        enc.pix_fmt = like.format.name if like.format.name in ("yuvj420p", "yuv420p10le") \
            else "yuv420p"
        enc.time_base, enc.framerate = tb, rate
        enc.thread_count = threads
        if self.sar:  # else the re-encoded frames of an anamorphic clip would show squeezed
            enc.sample_aspect_ratio = self.sar
        enc.gop_size = max(1, round(2 * rate))  # a long run still gets a keyframe every ~2 s
        if self.family in ("h264", "av1", "hevc"):
            enc.flags |= _GLOBAL_HEADER  # H.264: SPS/PPS out of band; AV1, HEVC: we place it
        for attr in ("colorspace", "color_primaries", "color_trc", "color_range"):
            with contextlib.suppress(AttributeError, ValueError, TypeError):
                setattr(enc, attr, getattr(like, attr))
        enc.options = dict(self.options)
        enc.open()
        if self.family in ("h264", "hevc"):
            config = bytes(enc.extradata or b"")
            if self.enc_config is None:
                self.enc_config = config
            elif config != self.enc_config:
                raise ValueError("encoder parameter sets changed between runs")
        elif self.family == "av1" and self.enc_config is None:
            self.enc_config = bytes(enc.extradata or b"")
        return enc

    def encoded(self, data: bytes, first: bool) -> bytes:
        """An encoder packet in the source track's format (``first``: a run's first)."""
        if self.family == "h264":
            size = self.length_size
            return b"".join(len(n).to_bytes(size, "big") + n for n in _annexb_nals(data)
                            if n[0] & 31 not in (7, 8, 9))
        if self.family == "hevc":
            sets = [n for n in _annexb_nals(self.enc_config or b"")
                    if _hevc_kind(n) in _HEVC_SETS] if first else []
            return self._framed(sets + [n for n in _annexb_nals(data)
                                        if _hevc_kind(n) != _HEVC_AUD])
        if self.family == "av1" and first and self.enc_config and not _starts_with_seq(data):
            return self.enc_config + data
        return data

    def _framed(self, nals: list[bytes]) -> bytes:
        """NAL units in the clip's framing: the source's NAL lengths, or for an Annex-B source
        start codes, which the MP4 muxer rewrites to lengths (it builds the hvcC too)."""
        if self.annexb:
            return b"".join(b"\0\0\0\1" + n for n in nals)
        size = self.length_size
        return b"".join(len(n).to_bytes(size, "big") + n for n in nals)

    def copied(self, data: bytes, first: bool) -> bytes:
        """A source packet as it goes into the clip (``first``: a copied run's first).
        Raises ValueError for an Annex-B packet that carries parameter sets the clip's
        ``avcC`` does not hold."""
        if self.annexb and self.family == "h264":
            return self._to_avcc(data)
        if first and self.family == "mpeg4" and self.src_extradata:
            return self.src_extradata + data
        if first and self.family == "hevc":  # after a run of the encoder's sets
            nals = self._nals(data)
            lead = 1 if nals and _hevc_kind(nals[0]) == _HEVC_AUD else 0  # an access unit
            return self._framed(nals[:lead] + self.param_sets + nals[lead:])  # delimiter: first
        if first and self.family == "av1" and self.src_extradata and not _starts_with_seq(data):
            return self.src_extradata[4:] + data  # av1C: 4 header bytes, then config OBUs
        return data

    def _to_avcc(self, data: bytes) -> bytes:
        """An Annex-B packet in 4-byte NAL-length framing, without the in-band parameter sets
        (the clip's avcC holds them), access-unit delimiters and filler."""
        out = []
        for n in _annexb_nals(data):
            n = n.rstrip(b"\0")  # trailing_zero_8bits: no NAL unit ends in a zero byte
            if not n:
                continue
            kind = n[0] & 31
            if kind in (7, 8):
                if n not in self._first_sets:
                    raise ValueError("the stream changes its parameter sets (an in-band "
                                     f"{'SPS' if kind == 7 else 'PPS'} unlike its first)")
                continue
            if kind not in (9, 12):
                out.append(len(n).to_bytes(self.length_size, "big") + n)
        if not out:
            raise ValueError("an Annex-B packet without a NAL unit")
        return b"".join(out)

    @cached_property
    def _first_sets(self) -> set[bytes]:
        return {n.rstrip(b"\0") for n in self.sps + self.pps}

    def extradata(self) -> bytes | None:
        """The clip track's extradata (H.264: an avcC listing both parameter-set families;
        HEVC: the source's hvcC, which the MP4 and Matroska muxers write for ``hev1`` with
        its arrays marked incomplete, as in-band parameter sets require)."""
        if self.family != "h264" or (self.enc_config is None and not self.annexb):
            return self.src_extradata
        nals = _annexb_nals(self.enc_config or b"")
        sps = self.sps + [n for n in nals if n[0] & 31 == 7]
        pps = self.pps + [n for n in nals if n[0] & 31 == 8]
        profile, compat, level = self.profile_avcc
        level = max([level] + [n[3] for n in nals if n[0] & 31 == 7])
        return (bytes([1, profile, compat, level, 0xFC | (self.length_size - 1),
                       0xE0 | len(sps)])
                + b"".join(struct.pack(">H", len(n)) + n for n in sps)
                + bytes([len(pps)]) + b"".join(struct.pack(">H", len(n)) + n for n in pps)
                + self.avcc_tail)


def _has_idr(data: bytes, framing: int) -> bool:
    """Whether an H.264 packet (``framing``: AVCC length size, 0 for Annex B) holds an IDR
    slice (a keyframe without one is a recovery-point I picture: an open GOP, whose leading
    pictures need the previous GOP)."""
    nals = _annexb_nals(data) if framing == 0 else _length_nals(data, framing)
    return any(n and n[0] & 31 == 5 for n in nals)


def _disposable(data: bytes, size: int) -> bool:
    """Whether no other picture can depend on this H.264 packet's (every slice has
    ``nal_ref_idc`` 0 and no parameter set rides along), so that a decoder that never sees it
    gives every other picture bit for bit. ``size``: the AVCC length size, 0 for Annex B.
    False whenever in doubt."""
    nals = _annexb_nals(data) if size == 0 else _strict_length_nals(data, size)
    if nals is None:
        return False  # not the framing we expect: decode it
    slices = 0
    for n in nals:
        kind = n[0] & 31
        if (kind == 1 and n[0] & 0x60) or kind not in (1, 6, 9, 12):
            return False  # a reference slice, an IDR, a parameter set, anything else
        slices += kind == 1
    return slices > 0


def _hevc_kind(nal: bytes | memoryview) -> int:
    """An HEVC NAL unit's ``nal_unit_type`` (6 bits after the forbidden bit)."""
    return (nal[0] >> 1) & 63


_HEVC_NON_REFERENCE = {0, 2, 4, 6, 8, 10, 12, 14}  # sub-layer non-reference pictures (*_N)
_HEVC_SIDE = {35, 38, 39, 40}  # access-unit delimiter, filler, SEI: nothing refers to them


def _sps_top_layer(sps: bytes) -> int:
    """The highest TemporalId an HEVC SPS allows: ``sps_max_sub_layers_minus1``, the 3 bits
    after the 4-bit VPS id that follows the 2-byte NAL header."""
    return (sps[2] >> 1) & 7 if len(sps) > 2 else 6


def _top_layer(param_sets: list[bytes]) -> int:
    """The highest TemporalId an HEVC stream's SPS allows (6, the most, without one)."""
    return max((_sps_top_layer(n) for n in param_sets if _hevc_kind(n) == 33), default=6)


def _hevc_disposable(data: bytes, size: int, top_layer: int) -> bool:
    """Whether no other picture can depend on this HEVC packet's: every slice is a sub-layer
    non-reference picture (``TRAIL_N``, ``RASL_N``...) of the highest sub-layer (a lower one's
    may be a higher one's reference), and the rest is SEI, delimiters or filler. These are
    the pictures FFmpeg's ``skip_frame=nonref`` drops in a single-layer stream. ``size``:
    the NAL length size, 0 for Annex B. False whenever in doubt."""
    nals = _annexb_nals(data) if size == 0 else _strict_length_nals(data, size)
    if nals is None:
        return False
    slices = 0
    for n in nals:
        if len(n) < 2:
            return False
        kind, layer = _hevc_kind(n), (n[1] & 7) - 1
        if kind < 32:  # a slice
            if kind not in _HEVC_NON_REFERENCE or layer != top_layer:
                return False
            slices += 1
        elif kind not in _HEVC_SIDE:
            return False
    return slices > 0


def _strict_length_nals(data: bytes, size: int) -> list[memoryview] | None:
    """The NAL units of an AVCC packet (views, not copies), or None unless they fill it
    exactly (no empty unit, none running past the end, nothing left over)."""
    view, nals, i = memoryview(data), [], 0
    while i + size <= len(data):
        n = int.from_bytes(data[i:i + size], "big")
        if n == 0 or i + size + n > len(data):
            return None
        nals.append(view[i + size:i + size + n])
        i += size + n
    return nals if i == len(data) else None


def _is_annexb(x: bytes) -> bool:
    return x.startswith((b"\0\0\1", b"\0\0\0\1"))


def _h264_framing(vstream: av.VideoStream) -> int | None:
    """An H.264 stream's NAL framing from its extradata: the AVCC length size, 0 for Annex B,
    None for other codecs or when the extradata says neither."""
    cc = vstream.codec_context
    if cc is None or _FAMILY.get(cc.name) != "h264":
        return None
    x = bytes(cc.extradata or b"")
    if len(x) > 6 and x[0] == 1:
        return (x[4] & 3) + 1
    return 0 if _is_annexb(x) else None


def disposable_check(vstream: av.VideoStream) -> Callable[[av.Packet], bool] | None:
    """A test for packets no other picture depends on (H.264 or HEVC, length-prefixed or
    Annex B), which a reader that does not want their own pictures may leave undecoded; None
    for other codecs."""
    cc = vstream.codec_context
    if cc is not None and cc.name == "hevc":
        found = _hevc_config(bytes(cc.extradata or b""))
        if isinstance(found, str):
            return None
        sets, framing = found
        top = _top_layer(sets)
        return lambda p: _hevc_disposable(bytes(p), framing, top)
    framing = _h264_framing(vstream)
    if framing is None:
        return None
    return lambda p: _disposable(bytes(p), framing)


def rap_check(vstream: av.VideoStream) -> Callable[[av.Packet], bool]:
    """A test for packets that start a closed GOP (keyframe mode, which copies any codec)."""
    framing = _h264_framing(vstream)
    if framing is not None:
        return lambda p: bool(p.is_keyframe) and _has_idr(bytes(p), framing)
    return lambda p: bool(p.is_keyframe)


def _starts_with_seq(data: bytes) -> bool:
    return bool(data) and (data[0] >> 3) & 15 == 1  # OBU_SEQUENCE_HEADER


def _h264(vstream: av.VideoStream, cc: av.CodecContext, crf: int, preset: str
          ) -> SpliceCodec | str:
    x = bytes(cc.extradata or b"")
    annexb = _is_annexb(x)
    if not annexb and (len(x) < 7 or x[0] != 1):
        return "h264_no_extradata"  # parameter sets only in band, none seen while probing
    try:
        if annexb:  # MPEG-TS: the demuxer's parser found the stream's parameter sets
            size, nals = 4, [n.rstrip(b"\0") for n in _annexb_nals(x)]
            sps = [n for n in nals if n[0] & 31 == 7]
            pps = [n for n in nals if n[0] & 31 == 8]
            tail = b""
        else:
            size = (x[4] & 3) + 1
            o, sps = 6, []
            for _ in range(x[5] & 31):
                n = struct.unpack(">H", x[o:o + 2])[0]
                sps.append(x[o + 2:o + 2 + n])
                o += 2 + n
            pps = []
            count, o = x[o], o + 1
            for _ in range(count):
                n = struct.unpack(">H", x[o:o + 2])[0]
                pps.append(x[o + 2:o + 2 + n])
                o += 2 + n
            tail = x[o:]
        parsed = [_parse_sps(n) for n in sps]
        pps_ids = [_pps_ids(n) for n in pps]
    except (IndexError, ValueError, struct.error):
        return "h264_bad_avcc"
    if not parsed:
        return "h264_no_sps"
    if not pps:
        return "h264_no_pps"
    for s in parsed:
        if s.chroma_format != 1 or s.bit_depth != 8:
            return f"h264_format_{s.chroma_format}_{s.bit_depth}bit"
        if not s.frame_mbs_only:
            return "h264_interlaced"
    profiles = {s.profile for s in parsed}
    if len(profiles) != 1 or not profiles <= {66, 77, 100}:
        return f"h264_profile_{'_'.join(map(str, sorted(profiles)))}"
    profile = profiles.pop()
    new_id = max([s.id for s in parsed] + [p for ids in pps_ids for p in ids]) + 1
    if new_id > 31:
        return "h264_no_free_parameter_set_id"
    name = {66: "baseline", 77: "main", 100: "high"}[profile]
    params = f"sps-id={new_id}:bframes=0:scenecut=0"
    opts = {"preset": preset, "crf": str(crf), "profile": name, "x264-params": params}
    if annexb:
        first = sps[0]
        if profile in _HIGH_AVCC:  # chroma_format 1, 8-bit (checked above), no SPS extensions
            tail = bytes([0xFC | 1, 0xF8, 0xF8, 0])
        return SpliceCodec("h264", "libx264", opts, x, size, (first[1], first[2], first[3]),
                           sps, pps, tail, annexb=True)
    return SpliceCodec("h264", "libx264", opts, x, size, (x[1], x[2], x[3]), sps, pps, tail)


def _hevc_config(x: bytes) -> tuple[list[bytes], int] | str:
    """An HEVC stream's VPS, SPS and PPS (in the order they activate in) and its NAL framing
    (the length size, 0 for Annex B), from an ``hvcC`` (MP4, Matroska) or from the Annex-B
    parameter sets the demuxer found (MPEG-TS); or why there are none to splice with. 4:2:0
    at 8 or 10 bits (Main, Main 10) only."""
    sets: list[bytes] = []
    if _is_annexb(x):
        framing = 0
        sets = [n for n in (m.rstrip(b"\0") for m in _annexb_nals(x))
                if n and _hevc_kind(n) in _HEVC_SETS]
    elif len(x) < 23 or x[0] != 1:
        return "hevc_no_extradata"  # parameter sets only in band, none seen while probing
    elif x[16] & 3 != 1 or x[17] & 7 not in (0, 2) or x[18] & 7 != x[17] & 7:
        return f"hevc_format_{x[16] & 3}_{(x[17] & 7) + 8}bit"
    else:
        framing = (x[21] & 3) + 1
        try:
            i = 23
            for _ in range(x[22]):
                kind, count, i = x[i] & 63, struct.unpack(">H", x[i + 1:i + 3])[0], i + 3
                for _ in range(count):
                    n = struct.unpack(">H", x[i:i + 2])[0]
                    nal, i = x[i + 2:i + 2 + n], i + 2 + n
                    if len(nal) != n or not n:
                        raise ValueError("truncated")
                    if kind in _HEVC_SETS:
                        sets.append(nal)
        except (IndexError, ValueError, struct.error):
            return "hevc_bad_hvcc"
    if not set(_HEVC_SETS) <= {_hevc_kind(n) for n in sets}:
        return "hevc_no_parameter_sets"
    return sorted(sets, key=_hevc_kind), framing


def _hevc(x: bytes, crf: int, preset: str) -> SpliceCodec | str:
    """HEVC (:func:`_hevc_config`): x265 runs in band under the same parameter-set ids, the
    copied runs re-sending the source's."""
    found = _hevc_config(x)
    if isinstance(found, str):
        return found
    sets, framing = found
    params = ("bframes=0:open-gop=0:scenecut=0:repeat-headers=0:info=0:aud=0:"
              "log-level=error")
    opts = {"preset": preset, "crf": str(crf), "x265-params": params}
    return SpliceCodec("hevc", "libx265", opts, x, framing or 4, param_sets=sets,
                       annexb=framing == 0)


def mpeg4_b_frames(source: str, codec: SpliceCodec, max_packets: int = 50) -> bool:
    """Whether an MPEG-4 Part 2 source codes B-frames (Xvid's default; its VOL header says
    ``low_delay = 0``). The edge encoder writes none, so its VOL says ``low_delay = 1``, and
    FFmpeg's decoder, switching between the two at each run, outputs the picture before a
    copied run twice and never outputs the last picture of a copied run before an edge: the
    clip's frames slide by one. Such a source is re-encoded in full. Reads the VOL in a
    second open of ``source`` (from the extradata, or the first packets where it travels in
    band)."""
    if codec.family != "mpeg4":
        return False
    try:
        with av.open(source, metadata_errors="ignore") as c:
            stream = main_video_stream(c)
            if stream is None:
                return False
            cc = stream.codec_context
            for k, packet in enumerate(c.demux(stream)):
                if cc.has_b_frames or k >= max_packets:
                    break
                try:
                    if packet.decode():  # a picture out, the VOL read: its delay is known
                        break
                except av.FFmpegError:
                    continue
            return bool(cc.has_b_frames)
    except av.FFmpegError:
        return False  # the cut itself will say what is wrong with the file


def _boxes(fh: Any, start: int, end: int) -> Iterator[tuple[bytes, int, int]]:
    """``(type, body start, box end)`` of the ISO BMFF boxes in ``[start, end)`` of ``fh``."""
    pos = start
    while pos + 8 <= end:
        fh.seek(pos)
        head = fh.read(16)
        if len(head) < 8:
            return
        size, kind = struct.unpack(">I4s", head[:8])
        body = pos + 8
        if size == 1 and len(head) == 16:  # a 64-bit size follows
            size, body = struct.unpack(">Q", head[8:16])[0], pos + 16
        elif size == 0:  # to the end of its parent
            size = end - pos
        if size < body - pos or pos + size > end:
            return
        yield kind, body, pos + size
        pos += size


def edited_out(source: str, container: av.container.InputContainer) -> bool:
    """Whether an MP4/MOV's edit list shows its media in more than one piece: the "delete a
    part" edit that QuickTime-style editors save without re-encoding. FFmpeg's demuxer then
    hands over packets of the part left out that later frames lean on, marked discard, with
    timestamps among those of the frames shown: a copied GOP would carry footage the edit
    removed (in place of the span's own frames), and its audio too. Such a source is
    re-encoded in full, where the decoder drops them. Reads the boxes' headers and the edit
    lists (``moov/trak/edts/elst``), not the media: an empty edit (a start delay) and a single
    edit (``ffmpeg -ss`` with stream copy) are not such edits."""
    if not container.format.name.startswith("mov"):
        return False
    try:
        with open(source, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            for kind, body, end in _boxes(fh, 0, size):
                if kind != b"moov":
                    continue
                for trak in (b for b in _boxes(fh, body, end) if b[0] == b"trak"):
                    for edts in (b for b in _boxes(fh, trak[1], trak[2]) if b[0] == b"edts"):
                        for elst in (b for b in _boxes(fh, edts[1], edts[2])
                                     if b[0] == b"elst"):
                            if _pieces(fh, elst[1], elst[2]) > 1:
                                return True
                return False
    except (OSError, struct.error):
        return False
    return False


def _pieces(fh: Any, body: int, end: int) -> int:
    """The edits of an ``elst`` box that show media (an empty edit, media time -1, shows
    none)."""
    fh.seek(body)
    version = fh.read(1)[0]
    fh.seek(body + 4)
    count = struct.unpack(">I", fh.read(4))[0]
    entry = 20 if version == 1 else 12
    count = min(count, (end - body - 8) // entry, 1000)
    data = fh.read(count * entry)
    shown = 0
    for k in range(count):
        if version == 1:
            media = struct.unpack(">q", data[k * entry + 8:k * entry + 16])[0]
        else:
            media = struct.unpack(">i", data[k * entry + 4:k * entry + 8])[0]
        shown += media != -1
    return shown


def open_gops(source: str, codec: SpliceCodec, keyframes: int = 4,
              max_packets: int = 2000) -> bool:
    """Whether an HEVC source's first GOPs have pictures that lean on the GOP before them
    (RASL: an open GOP, x265's default). No GOP of such a source can be copied, and x265
    re-encoding every frame costs about twice x264's full re-encode, so the caller does that
    instead. Reads packets only (no decoding), in a second open of ``source``."""
    if codec.family != "hevc":
        return False
    seen = 0
    try:
        with av.open(source, metadata_errors="ignore") as c:
            stream = main_video_stream(c)
            if stream is None:
                return False
            for k, packet in enumerate(c.demux(stream)):
                if k >= max_packets:
                    break
                if not packet.size:
                    continue
                if packet.is_keyframe:
                    seen += 1
                    if seen > keyframes:
                        break
                if codec.hevc_types(bytes(packet)) & {8, 9}:  # RASL_N, RASL_R
                    return True
    except av.FFmpegError:
        return False  # the cut itself will say what is wrong with the file
    return False


def splice_codec(container: av.container.InputContainer, vstream: av.VideoStream, crf: int,
                 preset: str) -> SpliceCodec | str:
    """How to splice this source, or why it cannot be (the full re-encode's ``fallback``)."""
    found = _splice_codec(container, vstream, crf, preset)
    if isinstance(found, SpliceCodec):
        found.sar = pixel_aspect(vstream, coded=True)
    return found


def _splice_codec(container: av.container.InputContainer, vstream: av.VideoStream, crf: int,
                  preset: str) -> SpliceCodec | str:
    cc = vstream.codec_context
    family = _FAMILY.get(cc.name if cc else "", "")
    if not family:
        return f"codec_{cc.name if cc else 'unknown'}"
    if container.format.name not in _CONTAINERS:
        return f"container_{container.format.name.split(',')[0]}"
    if cc.pix_fmt not in ("yuv420p", "yuvj420p") and not (
            family == "hevc" and cc.pix_fmt == "yuv420p10le"):  # Main 10: phones' HDR video
        return f"pix_fmt_{cc.pix_fmt}"
    if cc.width % 2 or cc.height % 2:
        return "odd_size"
    extradata = bytes(cc.extradata) if cc.extradata else None
    if family == "h264":
        return _h264(vstream, cc, crf, preset)
    if family == "hevc":
        return _hevc(extradata or b"", crf, preset)
    if family == "vp9":
        opts = {"crf": str(crf), "b": "0", "deadline": "realtime", "cpu-used": "8",
                "lag-in-frames": "0", "auto-alt-ref": "0", "row-mt": "1"}
        return SpliceCodec("vp9", "libvpx-vp9", opts, extradata)
    if family == "av1":
        if not extradata or len(extradata) < 5:
            return "av1_no_config"
        return SpliceCodec("av1", "libsvtav1", {"crf": str(max(crf, 10)), "preset": "10"},
                           extradata)
    return SpliceCodec("mpeg4", "mpeg4", {"qscale": "2"}, extradata)
