"""Frame-exact cutting by full re-encode: ``transcode`` mode, and ``exact`` mode's fallback.

All spans of one source are cut in a single open of the source: the spans are sorted and the
source is demuxed and decoded forward once, feeding each decoded frame to the encoder(s) of the
span(s) it belongs to. When the next span starts far ahead (or behind) and the frame pts
recorded by the analysis pass can identify frames, we seek to the keyframe before it instead of
decoding the gap. Frames are identified by pts after a seek, or by counting from the start when
pts are unavailable (``frame_pts`` is None or not strictly increasing); then we never seek.

Video: the encoder comes from ``cfg.codec`` and ``cfg.gpu`` (:mod:`clipfactory.media.encoders`),
with ``cfg``'s quality settings and ``pix_fmt``. Odd sizes lose their last row/column (4:2:0
needs even sizes); rotation metadata is applied to the pixels so that clips are upright without
metadata; keyframe every ~2 s; ``+faststart``. In ``exact`` mode's fallback (and in transcode
mode without ``max_width``/``max_height``/``fps``) a clip has the source's size and every source
frame, with pts = source pts minus the clip's first pts (so VFR stays VFR). ``transcode`` mode
also scales down to fit ``max_width`` x ``max_height`` (after rotation, aspect kept, never up)
and, with ``fps``, resamples to a constant rate: output frame ``k`` (time ``k / fps`` from the
clip start) is the latest source frame at or before that time.

Every clip is checked to hold all ``span.num_frames`` source frames (and, with ``fps``, one
output frame per tick of its duration); anything else becomes an error result and leaves no
file behind.

Audio (``cfg.audio == "keep"``): the first audio stream's packets are demuxed in the same pass
and copied into every clip they overlap (:class:`~clipfactory.media.audio.AudioTrack`), muxed
as they arrive so that the muxer interleaves them with the video. It needs the frame pts (to
place clips on the audio timeline). Around seeks: the MP4/MOV demuxer positions every stream by
time, so audio covering the target keyframe is read; other demuxers seek by file position and
may skip audio stored just before the keyframe, so for them we seek ``AUDIO_SEEK_LEAD_S``
earlier. A clip whose video is complete waits (while decoding goes on) until the demuxer has
passed its end in the audio stream, or as far past it in the video stream as the file stores
its audio behind its video (learned while reading, at least ``AUDIO_WAIT_S``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction

import av
import av.filter
import numpy as np
from av.video.reformatter import ColorRange, Colorspace, Interpolation, VideoReformatter

from clipfactory.config import CutConfig
from clipfactory.errors import MediaError, storage_refused
from clipfactory.media import stagetime
from clipfactory.media.audio import AudioTrack, MuxLag, pick_audio_stream
from clipfactory.media.cutresult import (
    SEEK_BACKOFF_S,
    CutResult,
    index_keyframe,
    usable_pts,
    video_stream,
)
from clipfactory.media.encoders import (
    codec_name,
    encoder_options,
    encoder_pix_fmt,
    resolve_encoder,
)
from clipfactory.media.streams import encoder_rate, pixel_aspect, right_angle
from clipfactory.records import Span

__all__ = ["reencode_clips"]

SEEK_AHEAD_S = 2.0  # seek instead of decoding forward when the next span is further than this
AUDIO_SEEK_LEAD_S = 0.5  # non-MOV demuxers: seek this much earlier so no audio is skipped
AUDIO_WAIT_S = 1.0  # the least the video demux goes past a clip's end before its audio is done
_FORMATS = {".mkv": "matroska", ".mov": "mov"}  # anything else is written as mp4
_MOV_DEMUXER = "mov,mp4,m4a,3gp,3g2,mj2"


def _plane(plane: av.video.plane.VideoPlane, dtype: type[np.generic]) -> np.ndarray:
    size = np.dtype(dtype).itemsize
    buf = np.frombuffer(plane, dtype, count=plane.line_size * plane.height // size)
    return buf.reshape(plane.height, plane.line_size // size)[:, : plane.width]


def _even(x: float) -> int:
    """``x`` rounded to the nearest integer, then down to even (at least 2)."""
    return max(2, int(x + 0.5) & ~1)


@dataclass(frozen=True)
class _Target:
    """What every clip of one call is encoded to (the resolved ``CutConfig``)."""

    encoder: str
    options: dict[str, str]
    codec: str  # the codec the encoder writes (CutResult.codec)
    pix_fmt: str  # the planar format frames are converted to (cfg.pix_fmt)
    enc_pix_fmt: str | None  # what the encoder is fed; None: it cannot encode pix_fmt
    max_width: int | None
    max_height: int | None
    rate: Fraction | None  # constant output rate; None: the source's timestamps
    method: str
    fallback: str | None

    @classmethod
    def of(cls, cfg: CutConfig, fallback: str | None) -> _Target:
        """Resolve ``cfg``; scaling and frame rate apply in transcode mode only."""
        encoder = resolve_encoder(cfg)
        transcode = cfg.mode == "transcode"
        rate = (Fraction(cfg.fps).limit_denominator(1001) if transcode and cfg.fps else None)
        return cls(encoder, encoder_options(encoder, cfg), codec_name(encoder), cfg.pix_fmt,
                   encoder_pix_fmt(encoder, cfg.pix_fmt),
                   cfg.max_width if transcode else None, cfg.max_height if transcode else None,
                   rate, "transcode" if transcode else "reencode", fallback)

    def failed(self, span: Span, path: str, error: str, frames: int = 0, width: int = 0,
               height: int = 0) -> CutResult:
        return CutResult(span, path, frames, width, height, 0, error, method=self.method,
                         fallback=self.fallback)


class _ClipAudio(AudioTrack):
    """One clip's audio track, muxed while the clip is encoded: whatever has arrived goes to
    the muxer after each video frame, and the muxer's interleaver (``out.mux`` is
    av_interleaved_write_frame) orders it by dts with the video. Packets that arrive before the
    clip's writer opens wait in the track."""

    def __init__(self, stream: av.AudioStream, t0: float, t1: float) -> None:
        super().__init__(stream, t0, t1)
        self.ostream: av.AudioStream | None = None
        self.last: int | None = None  # pts of the last muxed packet (clip timeline, self.tb)
        self.muxed = 0

    def open(self, out: av.container.OutputContainer) -> None:
        self.ostream = self.add_stream(out)

    def mux(self, out: av.container.OutputContainer, last: bool = False) -> None:
        """Mux the packets that have arrived since the last call (``last``: and end the
        track)."""
        if self.ostream is None or not (self.packets or (last and self.flac is not None)):
            return
        ready = self.timed_packets(self.ostream, last)
        # Muxed now: forget them. No seek happens while a clip is open, so none comes twice;
        # anything not after the last muxed packet would break the stream's dts order.
        self.packets.clear()
        for _, packet in ready:
            if self.last is None or packet.pts > self.last:
                self.last = packet.pts  # before mux, which rebases the packet in place
                out.mux(packet)
                self.muxed += 1


class _Mismatch(Exception):
    """A clip does not hold the frames it should."""


class _Writer:
    """Encodes one span into a temporary file and renames it into place when complete.

    ``end_pts`` is the source pts where the span ends (its ``end_frame``'s, or the last
    frame's plus a nominal frame duration); None when frames are counted (then the last
    written frame's time plus a nominal frame duration is used).
    """

    def __init__(self, span: Span, path: str, tb: Fraction, rate: Fraction, rotation: int,
                 target: _Target, threads: int, end_pts: int | None,
                 audio: _ClipAudio | None, audio_note: str | None,
                 sar: Fraction | None = None) -> None:
        self.span, self.path, self.tb, self.rate, self.sar = span, path, tb, rate, sar
        self.rotation, self.target, self.threads = rotation, target, threads
        self.end_pts, self.audio, self.audio_note = end_pts, audio, audio_note
        head, name = os.path.split(os.path.abspath(path))
        self.tmp = os.path.join(head, f".{name}.tmp-{os.getpid()}")
        self.out: av.container.OutputContainer | None = None
        self.stream: av.VideoStream | None = None
        self.reformatter = VideoReformatter()
        self.to_encoder = VideoReformatter()  # planar -> the encoder's layout (NVENC p010le)
        self.frames, self.src_frames, self.width, self.height = 0, 0, 0, 0
        self.first_pts: int | None = None
        self.last_pts = -1  # last source frame's pts relative to the clip start, in tb
        self.held: av.VideoFrame | None = None  # constant rate: the frame for the next tick
        self.error: str | None = None

    def _open(self, frame: av.VideoFrame) -> None:
        t = self.target
        self.src_w, self.src_h = frame.width, frame.height
        turned = self.rotation in (90, 270)
        w, h = self.src_w & ~1, self.src_h & ~1  # odd last row/column: cropped, not scaled
        if w == 0 or h == 0:
            raise ValueError(f"frame too small: {self.src_w}x{self.src_h}")
        self.width, self.height = (h, w) if turned else (w, h)
        scale = min(1.0, t.max_width / self.width if t.max_width else 1.0,
                    t.max_height / self.height if t.max_height else 1.0)
        if scale < 1.0:  # scale before rotating (fewer pixels to turn): swap the target
            self.width, self.height = _even(self.width * scale), _even(self.height * scale)
            self.scaled = (self.height, self.width) if turned else (self.width, self.height)
        else:
            self.scaled = (self.src_w, self.src_h)
        self.numpy_path = (self.scaled[0] & ~1, self.scaled[1] & ~1) != self.scaled \
            or self.rotation != 0
        os.makedirs(os.path.dirname(self.tmp), exist_ok=True)
        fmt = _FORMATS.get(os.path.splitext(self.path)[1].lower(), "mp4")
        opts = {"movflags": "+faststart"} if fmt in ("mp4", "mov") else {}
        self.out = av.open(self.tmp, "w", format=fmt, options=opts)
        rate = t.rate or self.rate
        self.out_tb = out_tb = 1 / t.rate if t.rate else self.tb
        st = self.out.add_stream(t.encoder, rate=rate)
        st.width, st.height, st.pix_fmt = self.width, self.height, t.enc_pix_fmt
        st.time_base = out_tb
        cc = st.codec_context
        cc.time_base, cc.framerate = out_tb, rate
        cc.gop_size = max(1, round(2 * float(rate)))  # a keyframe every ~2 s
        cc.thread_count = self.threads
        if t.codec == "hevc" and fmt in ("mp4", "mov"):
            cc.codec_tag = "hvc1"  # what Apple players require (FFmpeg's default is hev1)
        if self.sar:  # anamorphic pixels stay so (scaling keeps their shape; turning flips it)
            cc.sample_aspect_ratio = 1 / self.sar if turned else self.sar
        # Output is limited-range; full-range input is converted. RGB input becomes BT.709 YUV;
        # YUV input keeps its colour tags (the matrix is unchanged by the conversion).
        self.kw: dict[str, int] = {}
        if frame.format.is_rgb:
            self.kw["dst_colorspace"] = cc.colorspace = Colorspace.ITU709
        else:
            for attr in ("colorspace", "color_primaries", "color_trc"):
                setattr(cc, attr, getattr(frame, attr))
        if frame.color_range == ColorRange.JPEG or frame.format.name.startswith("yuvj"):
            self.kw["dst_color_range"] = ColorRange.MPEG
        cc.color_range = ColorRange.MPEG
        if scale < 1.0:
            self.kw["interpolation"] = Interpolation.BICUBIC  # FFmpeg's scale filter default
        st.options = t.options
        self.stream = st
        if self.audio is not None:
            self.audio.open(self.out)  # before the first mux, which writes the header

    def _convert(self, frame: av.VideoFrame) -> av.VideoFrame:
        # A frame already in the target format and size comes back untouched (no copy).
        fmt = self.target.pix_fmt
        yuv = self.reformatter.reformat(frame, width=self.scaled[0], height=self.scaled[1],
                                        format=fmt, threads=1, **self.kw)
        if self.numpy_path:
            dtype = np.uint16 if yuv.format.components[0].bits > 8 else np.uint8
            w, h = self.scaled[0] & ~1, self.scaled[1] & ~1
            planes = [_plane(p, dtype)[: h >> s, : w >> s]
                      for p, s in zip(yuv.planes, (0, 1, 1), strict=True)]
            if self.rotation:
                # ``rotation`` is counter-clockwise (PyAV ``frame.rotation`` % 360, i.e.
                # av_display_rotation_get); ffmpeg's autorotate applies theta = -rotation
                # clockwise, e.g. rotation 90 -> transpose=cclock. np.rot90 with k > 0 turns
                # counter-clockwise.
                planes = [np.rot90(p, self.rotation // 90) for p in planes]
            flat = np.concatenate([p.ravel() for p in planes])
            yuv = av.VideoFrame.from_ndarray(flat.reshape(-1, self.width), format=fmt)
        if self.target.enc_pix_fmt != fmt:
            yuv = self.to_encoder.reformat(yuv, format=self.target.enc_pix_fmt, threads=1)
        return yuv

    def _encode(self, frame: av.VideoFrame, pts: int) -> None:
        frame.pts, frame.time_base = pts, self.out_tb
        frame.pict_type = av.video.frame.PictureType.NONE  # x264 would obey the source's types
        clock = stagetime.active()
        mark = clock.now()
        packets = self.stream.encode(frame)
        clock.move("mux_write", "cut_encode", clock.now() - mark)
        for packet in packets:
            self.out.mux(packet)
        self.frames += 1

    def _ticks(self, until: Fraction) -> None:
        """Constant rate: encode the held frame for every tick before ``until`` (seconds from
        the clip start) still to come; the frame after it takes the later ticks."""
        if self.held is None:
            return
        out: av.VideoFrame | None = None
        while self.frames < until * self.target.rate:  # tick k is at k / rate
            if out is None:
                out = self._convert(self.held)
            self._encode(out, self.frames)

    def write(self, frame: av.VideoFrame, step: int) -> None:
        """Take one source frame (``step``: nominal frame duration in ``tb`` units). The
        frame is left as it came: the clips of overlapping spans share it, and the encoder
        is given it with this clip's timestamp (where no conversion makes a frame of its own).
        Left rebased, the next clip's timestamps were taken from this one's timeline, and
        jumped when this clip ended."""
        if self.error is not None:
            return
        src_pts, src_tb = frame.pts, frame.time_base
        try:
            if self.out is None:
                self._open(frame)
            if self.src_frames == 0:
                rel, self.first_pts = 0, frame.pts
            elif frame.pts is not None and self.first_pts is not None:
                rel = frame.pts - self.first_pts
            else:  # no pts: assume the nominal frame rate
                rel = self.last_pts + step
            rel = max(rel, self.last_pts + 1)  # strictly increasing, whatever the source did
            self.last_pts = rel
            self.src_frames += 1
            if self.target.rate is None:
                self._encode(self._convert(frame), rel)
            else:
                self._ticks(rel * self.tb)
                self.held = frame
            if self.audio is not None:
                self.audio.mux(self.out)
        except Exception as e:  # one clip's failure must not take the others down
            if storage_refused(e):  # ... unless it is the output's: then the run stops
                raise
            self.error = f"encode_failed: {type(e).__name__}: {e}"
        finally:
            frame.pts, frame.time_base = src_pts, src_tb

    def _discard(self) -> None:
        if self.out is not None:
            with contextlib.suppress(Exception):
                self.out.close()
            self.out = None
        with contextlib.suppress(FileNotFoundError):
            os.remove(self.tmp)

    def _complete(self, step: int) -> None:
        """Check the source frame count; with a constant rate, encode the ticks up to the end
        and check their count."""
        want = self.span.num_frames
        if self.src_frames != want:
            raise _Mismatch(f"got {self.src_frames} of {want} frames")
        if self.target.rate is None:
            return
        if self.end_pts is not None and self.first_pts is not None:
            duration = (self.end_pts - self.first_pts) * self.tb
        else:
            duration = (self.last_pts + step) * self.tb
        self._ticks(duration)
        ticks = math.ceil(duration * self.target.rate)
        if self.frames != ticks:
            raise _Mismatch(f"got {self.frames} of {ticks} frames at {self.target.rate} fps")

    def finish(self, step: int) -> CutResult:
        """Flush, validate the frame count, and rename into place (or clean up on failure)."""
        t = self.target
        if self.error is None:
            try:
                self._complete(step)
                if self.audio is not None:
                    self.audio.mux(self.out, last=True)
                for packet in self.stream.encode(None):
                    self.out.mux(packet)
                self.out.close()
                self.out = None
                size = os.path.getsize(self.tmp)
                os.replace(self.tmp, self.path)
                audio = self.audio is not None and self.audio.muxed > 0
                note = self.audio_note
                if self.audio is not None and not audio:
                    note = "audio_not_copied: no audio packets over the span"
                return CutResult(self.span, self.path, self.frames, self.width, self.height,
                                 size, method=t.method, fallback=t.fallback, audio=audio,
                                 codec=t.codec, note=note,
                                 fps=float(t.rate) if t.rate else None)
            except _Mismatch as e:
                self.error = f"cut_mismatch: {e}"
            except Exception as e:
                if storage_refused(e):
                    self._discard()
                    raise
                self.error = f"encode_failed: {type(e).__name__}: {e}"
        self._discard()
        with contextlib.suppress(FileNotFoundError):  # a stale clip from an earlier run
            os.remove(self.path)
        return t.failed(self.span, self.path, self.error, self.frames, self.width, self.height)


# AVFieldOrder: TT and BT show the top field first; BB and TB the bottom one
_PARITY = {2: "tff", 5: "tff", 3: "bff", 4: "bff"}


class _Deinterlacer:
    """FFmpeg's ``bwdif`` (motion-adaptive, field-aware) in one-frame-per-frame mode: every
    frame comes out progressive with its own pts, one frame late (it looks at its neighbours),
    so frames are still identified by pts and counted one for one. Built on the first frame.

    The field shown first, which it keeps, comes from the stream's field order: the per-frame
    flag does not reach the filter through PyAV (without it, bwdif takes every frame for
    bottom field first, and the wrong field is kept for top-field-first sources)."""

    def __init__(self, tb: Fraction, field_order: int | None) -> None:
        self.tb = tb
        self.parity = _PARITY.get(int(field_order or 0), "auto")
        self.graph: av.filter.Graph | None = None

    def push(self, frame: av.VideoFrame | None) -> list[av.VideoFrame]:
        """Frames out after ``frame`` went in (None: the end; the last frames come out)."""
        if self.graph is None:
            if frame is None:
                return []
            self.graph = av.filter.Graph()
            src = self.graph.add_buffer(width=frame.width, height=frame.height,
                                        format=frame.format.name, time_base=self.tb)
            bwdif = self.graph.add("bwdif", f"mode=send_frame:parity={self.parity}:deint=all")
            sink = self.graph.add("buffersink")
            src.link_to(bwdif)
            bwdif.link_to(sink)
            self.graph.configure()
        self.graph.push(frame)
        out = []
        while True:
            try:
                got = self.graph.pull()
            except (av.error.BlockingIOError, av.error.EOFError, EOFError):
                return out
            if got.pts is not None and got.time_base and got.time_base != self.tb:
                got.pts = round(got.pts * got.time_base / self.tb)  # bwdif halves the base
            got.time_base = self.tb
            out.append(got)


class _Reader:
    """Yields ``(index, frame)`` in presentation order; seeks when pts can identify frames.

    Audio packets of ``astream`` (demuxed with the video) go to ``on_audio``; ``audio_done``
    says whether the demuxer has passed a time in the audio stream.
    """

    def __init__(self, container: av.container.InputContainer, vstream: av.VideoStream,
                 pts: np.ndarray | None, astream: av.AudioStream | None = None,
                 on_audio: Callable[[av.Packet], None] | None = None,
                 audio_lead: float = 0.0, deinterlace: bool = False) -> None:
        self.container, self.vstream, self.pts = container, vstream, pts
        self.astream, self.on_audio, self.audio_lead = astream, on_audio, audio_lead
        self.deinterlace = deinterlace
        self.tb = vstream.time_base or Fraction(1, 90_000)
        self.lag = MuxLag(AUDIO_WAIT_S)  # the file's, kept across seeks
        self.frames = self._decode()
        self.last = -1  # index of the last frame handed out
        self.held: tuple[int, av.VideoFrame] | None = None
        self.sought = -1

    def _decode(self) -> Iterator[av.VideoFrame]:
        """Demux and decode forward from the current position; a corrupt packet is skipped,
        not fatal. Tracks how far each stream's packets have come since this position."""
        self.audio_at = self.video_at = -math.inf  # start times (s) of the last packets
        self.ended = False
        vs, aus = self.vstream, self.astream
        clock = stagetime.active()
        deint = (_Deinterlacer(self.tb, getattr(vs.codec_context, "field_order", None))
                 if self.deinterlace else None)  # a fresh one after a seek
        try:
            for packet in self.container.demux(*(s for s in (vs, aus) if s is not None)):
                if aus is not None and packet.stream_index == aus.index:
                    if packet.pts is not None and packet.size:
                        self.audio_at = float(packet.pts * aus.time_base)
                        self.lag.audio(self.audio_at, self.video_at)
                        self.on_audio(packet)
                    continue
                if packet.pts is not None:
                    self.video_at = max(self.video_at, float(packet.pts * self.tb))
                mark = clock.now()
                try:
                    frames = vs.decode(packet)
                    if deint is not None:
                        frames = [f for frame in frames for f in deint.push(frame)]
                except av.FFmpegError:
                    continue  # the frame-count check catches a span that lost frames
                finally:  # the cut's own time is mux_write (worker); decoding is cut_decode
                    clock.move("mux_write", "cut_decode", clock.now() - mark)
                yield from frames
        except av.FFmpegError:
            # a demuxer error ends the stream: drain what the decoder still holds
            with contextlib.suppress(av.FFmpegError):
                for frame in vs.decode(None):
                    yield from deint.push(frame) if deint is not None else (frame,)
        if deint is not None:
            yield from deint.push(None)
        self.ended = True

    def audio_done(self, t: float) -> bool:
        """Whether every audio packet starting before ``t`` (source seconds) has been demuxed
        (as far as can be told: the video demux is the file's audio lag past it, or the end;
        :class:`~clipfactory.media.audio.MuxLag`)."""
        return self.ended or self.audio_at >= t or self.video_at >= t + self.lag.wait

    def audio_cut_short(self, t: float) -> str | None:
        """Why a clip ending at ``t``, written now, lacks audio still to come (or None)."""
        return None if self.ended else self.lag.cut_short(self.audio_at, t)

    def _index(self, frame: av.VideoFrame) -> int | None:
        if self.pts is None:
            return self.last + 1
        if frame.pts is None:
            return None
        k = int(np.searchsorted(self.pts, frame.pts))
        return k if k < len(self.pts) and self.pts[k] == frame.pts else None

    def next(self) -> tuple[int, av.VideoFrame] | None:
        """The next identified frame, or None at the end of the stream."""
        got, self.held = self.held, None
        if got is None:
            for frame in self.frames:
                idx = self._index(frame)
                if idx is not None:  # unknown pts: not a frame of the analysis pass
                    got = (idx, frame)
                    break
        if got is not None:
            self.last = got[0]
        return got

    def _keyframe_ahead(self, target: int) -> bool:
        """Whether the index has a keyframe before pts ``target`` beyond the next frame (else
        a seek would land where we already are). Index timestamps may be DTS (mp4): shift the
        target by the first pts-dts offset, as the mov demuxer's own seek does."""
        pts = self.pts
        found = index_keyframe(self.vstream, int(pts[0]), target)
        return found is None or found[0] is None or \
            found[0] > pts[min(self.last + 1, len(pts) - 1)]

    def seek_to(self, start: int) -> None:
        """Seek so that frame ``start`` (and the audio from its time) comes next, if it is
        behind or far ahead."""
        pts, tb, lead = self.pts, self.tb, self.audio_lead
        if pts is None or self.held is not None or start == self.sought:
            return
        ahead = float((pts[start] - pts[min(self.last + 1, len(pts) - 1)]) * tb)
        if start > self.last and (ahead <= SEEK_AHEAD_S
                                  or not self._keyframe_ahead(int(int(pts[start]) - lead / tb))):
            return
        self.sought = start  # at most one seek (with its retries) per span
        miss: tuple[int, av.VideoFrame, bool] | None = None
        for back in SEEK_BACKOFF_S:
            # Seeks may land late (index by DTS, approximate seeking in MPEG-TS): retry from
            # further back; the last resort is well before the first frame, i.e. the start.
            offset = lead + back if back is not None else 60 + SEEK_AHEAD_S
            ts = int(int(pts[start]) - offset / tb)
            try:
                self.container.seek(ts, stream=self.vstream, backward=True, any_frame=False)
            except av.FFmpegError:
                continue
            self.frames = self._decode()
            for frame in self.frames:
                idx = self._index(frame)
                if idx is None:
                    continue
                # Until a keyframe (or the very first frame) arrives, frames may be garbage
                # (open-GOP leading pictures); reaching the target before that is a miss.
                trusted = bool(frame.key_frame) or idx == 0
                if not trusted and idx < start:
                    continue
                if trusted and idx <= start:
                    self.held, self.last = (idx, frame), idx - 1
                    return
                miss = (idx, frame, trusted)
                break
        # Every attempt landed past the target (the span will fail its frame count): carry on
        # from the first trustworthy frame so that later spans can still be cut.
        if miss is not None and miss[2]:
            self.held, self.last = (miss[0], miss[1]), miss[0] - 1
            return
        for frame in self.frames:
            idx = self._index(frame)
            if idx is not None and frame.key_frame:
                self.held, self.last = (idx, frame), idx - 1
                return


def reencode_clips(source: str, spans: Sequence[Span], out_paths: Sequence[str], *,
                   frame_pts: Sequence[int] | np.ndarray | None, rotation: int = 0,
                   cfg: CutConfig | None = None, threads: int = 1,
                   fallback: str | None = None,
                   container: av.container.InputContainer | None = None,
                   deinterlace: bool = False) -> list[CutResult]:
    """Cut ``spans`` of ``source`` into ``out_paths`` (same order), frame-exact, in one open.

    ``frame_pts[i]`` is the pts of decoded frame ``i`` from a full decode pass; when it is
    None or not strictly increasing, frames are counted from the start, there is no seeking
    and no audio. ``rotation`` is the source's display rotation as ``VideoInfo.rotation``
    holds it (``frame.rotation % 360``: counter-clockwise degrees, 0/90/180/270); it is applied
    to the pixels. ``threads`` sets encoder and decoder threads unless ``cfg.threads`` > 0
    (0: auto). ``fallback`` (exact mode's reason for re-encoding in full) is recorded in every
    result; results say ``method="transcode"`` in transcode mode, else ``"reencode"``.
    Spans may come in any order (overlaps work too). Each clip is written to a hidden
    temporary file beside its path and renamed into place when complete and valid. Per-span
    failures come back as results with ``error`` set (and no file at ``path``); a source that
    cannot be opened raises :class:`MediaError` (``open_failed``, or ``no_video_stream``); a
    configuration that cannot work here (unknown codec, ``gpu="always"`` without NVENC, bad
    bitrate) raises ``ValueError``. ``container``: the source already open and not yet read
    (exact mode's fallback passes its own, so the source is opened once); it is left open.
    ``deinterlace``: every frame goes through :class:`_Deinterlacer` before it is encoded.
    """
    if len(spans) != len(out_paths):
        raise ValueError(f"{len(spans)} spans but {len(out_paths)} output paths")
    cfg = cfg or CutConfig()
    target = _Target.of(cfg, fallback)
    threads = cfg.threads if cfg.threads > 0 else threads
    rotation = right_angle(rotation)
    results = [target.failed(s, p, "not_cut") for s, p in zip(spans, out_paths, strict=True)]
    n_known = len(frame_pts) if frame_pts is not None else None
    order = []
    for i, span in enumerate(spans):
        if span.start_frame < 0 or span.end_frame <= span.start_frame:
            err = f"bad_span: [{span.start_frame}, {span.end_frame})"
        elif n_known is not None and span.end_frame > n_known:
            err = f"out_of_range: span ends at {span.end_frame}, source has {n_known} frames"
        elif target.enc_pix_fmt is None:
            err = f"unsupported_pix_fmt: {target.encoder} cannot encode {target.pix_fmt}"
        else:
            order.append(i)
            continue
        results[i] = target.failed(span, out_paths[i], err)
    if not order:
        return results
    order.sort(key=lambda i: (spans[i].start_frame, spans[i].end_frame), reverse=True)

    pts = usable_pts(frame_pts)  # None: count frames from the start instead

    own = container is None
    if container is None:
        try:
            container = av.open(source, metadata_errors="ignore")
        except Exception as e:  # any failure to open is the same verdict for the caller
            raise MediaError("cut", "open_failed", str(e)) from e
    active: list[tuple[int, _Writer]] = []
    draining: list[tuple[int, _Writer]] = []  # video complete, waiting for audio packets
    try:
        vstream = video_stream(container, source, threads)
        tb = vstream.time_base or Fraction(1, 90_000)
        rate = encoder_rate(vstream)
        sar = pixel_aspect(vstream)
        step = max(1, round(1 / (rate * tb)))

        def end_pts(span: Span) -> int | None:
            if pts is None:
                return None
            return int(pts[span.end_frame]) if span.end_frame < len(pts) \
                else int(pts[-1]) + step

        astream, audio_note = pick_audio_stream(container, cfg.audio == "keep")
        if astream is not None and pts is None:
            astream, audio_note = None, "audio_not_copied: no usable video timestamps"
        tracks: dict[int, _ClipAudio] = {}
        if astream is not None:
            for i in reversed(order):  # ascending start, hence ascending t0
                tracks[i] = _ClipAudio(astream, float(int(pts[spans[i].start_frame]) * tb),
                                       float(end_pts(spans[i]) * tb))
        live = list(tracks.values())  # tracks of clips not finished, by t0

        def on_audio(packet: av.Packet) -> None:
            start = float(packet.pts * packet.time_base)
            end = start + float((packet.duration or 0) * packet.time_base)
            for track in live:
                if track.t0 > end:
                    break
                track.offer(packet)

        lead = AUDIO_SEEK_LEAD_S if astream is not None and \
            container.format.name != _MOV_DEMUXER else 0.0
        reader = _Reader(container, vstream, pts, astream, on_audio, lead, deinterlace)
        pending = order  # sorted descending: pop() gives the next span to start

        def finish(entry: tuple[int, _Writer]) -> None:
            i, writer = entry
            if writer.audio is not None and writer.error is None:
                short = reader.audio_cut_short(writer.audio.t1)
                writer.audio_note = short or writer.audio_note
            results[i] = writer.finish(step)
            if writer.audio is not None:
                live.remove(writer.audio)

        def video_done(entry: tuple[int, _Writer]) -> None:
            active.remove(entry)
            audio = entry[1].audio
            if audio is not None and entry[1].error is None and not reader.audio_done(audio.t1):
                draining.append(entry)
            else:
                finish(entry)

        while pending or active or draining:
            if pending and not active and not draining:
                reader.seek_to(spans[pending[-1]].start_frame)
            got = reader.next()
            if got is None:
                break
            idx, frame = got
            for entry in [e for e in active if e[1].span.end_frame <= idx]:
                video_done(entry)  # frames were lost at its end: finish reports the shortfall
            while pending and spans[pending[-1]].start_frame <= idx:
                i = pending.pop()
                active.append((i, _Writer(spans[i], out_paths[i], tb, rate, rotation, target,
                                          threads, end_pts(spans[i]), tracks.get(i),
                                          audio_note, sar)))
            for _, writer in active:
                writer.write(frame, step)
            for entry in [e for e in active if e[1].span.end_frame <= idx + 1]:
                video_done(entry)
            for entry in [e for e in draining if reader.audio_done(e[1].audio.t1)]:
                draining.remove(entry)
                finish(entry)
        while active or draining:
            entry = (active or draining)[0]
            (active if active else draining).remove(entry)
            finish(entry)
        for i in pending:
            results[i] = target.failed(spans[i], out_paths[i],
                                       f"cut_mismatch: got 0 of {spans[i].num_frames} frames")
    finally:
        for _, writer in active + draining:
            writer._discard()
        if own:
            container.close()
    if deinterlace:
        results = [dataclasses.replace(r, deinterlaced=True) if r.error is None else r
                   for r in results]
    return results
