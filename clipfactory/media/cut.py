"""Frame-exact clip cutting (v0: every clip is re-encoded).

All spans of one source are cut in a single open of the source: the spans are sorted and the
video is decoded forward once, feeding each decoded frame to the encoder(s) of the span(s) it
belongs to. When the next span starts far ahead (or behind) and the frame pts recorded by the
analysis pass can identify frames, we seek to the keyframe before it instead of decoding the
gap. Frames are identified by pts after a seek, or by counting from the start when pts are
unavailable (``frame_pts`` is None or not strictly increasing); then we never seek.

Every clip is checked to hold exactly ``span.num_frames`` frames; anything else becomes an
error result and leaves no file behind. Output: H.264 (``cfg.codec``), 8-bit yuv420p, no audio,
pts = source pts minus the clip's first pts (so VFR stays VFR), keyframe every ~2 s,
``+faststart``. Odd sizes lose their last row/column (4:2:0 needs even sizes); rotation
metadata is applied to the pixels so that clips are upright without metadata.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction

import av
import numpy as np
from av.video.reformatter import ColorRange, Colorspace, VideoReformatter

from clipfactory.config import CutConfig
from clipfactory.errors import MediaError
from clipfactory.records import Span

__all__ = ["CutResult", "cut_clips"]

SEEK_AHEAD_S = 2.0  # seek instead of decoding forward when the next span is further than this
_SEEK_BACKOFF_S: tuple[float | None, ...] = (0.0, 1.0, 5.0, None)  # None: from the start
_FORMATS = {".mkv": "matroska", ".mov": "mov"}  # anything else is written as mp4


@dataclass(frozen=True)
class CutResult:
    """What cutting one span produced: a clip file, or ``error`` (then no file was left)."""

    span: Span
    path: str
    frames: int
    width: int
    height: int
    bytes: int
    error: str | None = None


def _fps(vstream: av.VideoStream) -> Fraction:
    rate = vstream.average_rate or vstream.guessed_rate or vstream.base_rate
    if not rate or rate <= 0 or rate > 1000:
        rate = Fraction(30)
    return Fraction(rate).limit_denominator(100_000)


def _plane(plane: av.video.plane.VideoPlane) -> np.ndarray:
    buf = np.frombuffer(plane, np.uint8, count=plane.line_size * plane.height)
    return buf.reshape(plane.height, plane.line_size)[:, : plane.width]


class _Writer:
    """Encodes one span into a temporary file and renames it into place when complete."""

    def __init__(self, span: Span, path: str, tb: Fraction, rate: Fraction, rotation: int,
                 cfg: CutConfig, threads: int) -> None:
        self.span, self.path, self.tb, self.rate = span, path, tb, rate
        self.rotation, self.cfg, self.threads = rotation, cfg, threads
        head, name = os.path.split(os.path.abspath(path))
        self.tmp = os.path.join(head, f".{name}.tmp-{os.getpid()}")
        self.out: av.container.OutputContainer | None = None
        self.stream: av.VideoStream | None = None
        self.reformatter = VideoReformatter()
        self.frames, self.width, self.height = 0, 0, 0
        self.first_pts: int | None = None
        self.last_pts = -1  # last output pts, in tb
        self.error: str | None = None

    def _open(self, frame: av.VideoFrame) -> None:
        self.src_w, self.src_h = frame.width, frame.height
        # yuv420p needs even sizes: an odd last row/column is cropped (not scaled away).
        w, h = self.src_w & ~1, self.src_h & ~1
        if w == 0 or h == 0:
            raise ValueError(f"frame too small: {self.src_w}x{self.src_h}")
        self.width, self.height = (h, w) if self.rotation in (90, 270) else (w, h)
        self.numpy_path = (w, h) != (self.src_w, self.src_h) or self.rotation != 0
        os.makedirs(os.path.dirname(self.tmp), exist_ok=True)
        fmt = _FORMATS.get(os.path.splitext(self.path)[1].lower(), "mp4")
        opts = {"movflags": "+faststart"} if fmt in ("mp4", "mov") else {}
        self.out = av.open(self.tmp, "w", format=fmt, options=opts)
        st = self.out.add_stream(self.cfg.codec, rate=self.rate)
        st.width, st.height, st.pix_fmt = self.width, self.height, self.cfg.pix_fmt
        st.time_base = self.tb
        cc = st.codec_context
        cc.time_base, cc.framerate = self.tb, self.rate
        cc.gop_size = max(1, round(2 * float(self.rate)))  # a keyframe every ~2 s
        cc.thread_count = self.threads
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
        st.options = {"crf": str(self.cfg.crf), "preset": self.cfg.preset}
        self.stream = st

    def _convert(self, frame: av.VideoFrame) -> av.VideoFrame:
        # A frame that is already yuv420p at the right size comes back untouched (no copy).
        yuv = self.reformatter.reformat(frame, width=self.src_w, height=self.src_h,
                                        format=self.cfg.pix_fmt, **self.kw)
        if not self.numpy_path:
            return yuv
        w, h = self.src_w & ~1, self.src_h & ~1
        planes = [_plane(p)[: h >> s, : w >> s] for p, s in zip(yuv.planes, (0, 1, 1), strict=True)]
        if self.rotation:
            # ``rotation`` is counter-clockwise (PyAV ``frame.rotation`` % 360, i.e.
            # av_display_rotation_get); ffmpeg's autorotate applies theta = -rotation clockwise,
            # e.g. rotation 90 -> transpose=cclock. np.rot90 with k > 0 turns counter-clockwise.
            planes = [np.rot90(p, self.rotation // 90) for p in planes]
        flat = np.concatenate([p.ravel() for p in planes])
        return av.VideoFrame.from_ndarray(flat.reshape(-1, self.width), format=self.cfg.pix_fmt)

    def write(self, frame: av.VideoFrame, step: int) -> None:
        """Encode one source frame (``step``: nominal frame duration in ``tb`` units)."""
        if self.error is not None:
            return
        try:
            if self.out is None:
                self._open(frame)
            if self.frames == 0:
                rel, self.first_pts = 0, frame.pts
            elif frame.pts is not None and self.first_pts is not None:
                rel = frame.pts - self.first_pts
            else:  # no pts: assume the nominal frame rate
                rel = self.last_pts + step
            rel = max(rel, self.last_pts + 1)  # strictly increasing, whatever the source did
            out = self._convert(frame)
            out.pts, out.time_base, self.last_pts = rel, self.tb, rel
            out.pict_type = av.video.frame.PictureType.NONE  # x264 would obey the source's types
            for packet in self.stream.encode(out):
                self.out.mux(packet)
            self.frames += 1
        except Exception as e:  # one clip's failure must not take the others down
            self.error = f"encode_failed: {type(e).__name__}: {e}"

    def _discard(self) -> None:
        if self.out is not None:
            with contextlib.suppress(Exception):
                self.out.close()
            self.out = None
        with contextlib.suppress(FileNotFoundError):
            os.remove(self.tmp)

    def finish(self) -> CutResult:
        """Flush, validate the frame count, and rename into place (or clean up on failure)."""
        want = self.span.num_frames
        if self.error is None and self.frames != want:
            self.error = f"cut_mismatch: got {self.frames} of {want} frames"
        if self.error is None:
            try:
                for packet in self.stream.encode(None):
                    self.out.mux(packet)
                self.out.close()
                self.out = None
                size = os.path.getsize(self.tmp)
                os.replace(self.tmp, self.path)
                return CutResult(self.span, self.path, self.frames, self.width, self.height, size)
            except Exception as e:
                self.error = f"encode_failed: {type(e).__name__}: {e}"
        self._discard()
        with contextlib.suppress(FileNotFoundError):  # a stale clip from an earlier run
            os.remove(self.path)
        return CutResult(self.span, self.path, self.frames, self.width, self.height, 0,
                         self.error)


def _decode(container: av.container.InputContainer, vstream: av.VideoStream
            ) -> Iterator[av.VideoFrame]:
    """Decode forward from the current position; a corrupt packet is skipped, not fatal."""
    try:
        for packet in container.demux(vstream):
            try:
                yield from vstream.decode(packet)
            except av.FFmpegError:
                continue  # the frame-count check catches a span that lost frames
    except av.FFmpegError:
        try:  # a demuxer error ends the stream: drain what the decoder still holds
            yield from vstream.decode(None)
        except av.FFmpegError:
            return


class _Reader:
    """Yields ``(index, frame)`` in presentation order; seeks when pts can identify frames."""

    def __init__(self, container: av.container.InputContainer, vstream: av.VideoStream,
                 pts: np.ndarray | None) -> None:
        self.container, self.vstream, self.pts = container, vstream, pts
        self.tb = vstream.time_base or Fraction(1, 90_000)
        self.frames = _decode(container, vstream)
        self.last = -1  # index of the last frame handed out
        self.held: tuple[int, av.VideoFrame] | None = None
        self.sought = -1

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

    def _keyframe_ahead(self, start: int) -> bool:
        """Whether the index has a keyframe before ``start`` beyond the next frame (else a
        seek would land where we already are). Index timestamps may be DTS (mp4): shift the
        target by the first pts-dts offset, as the mov demuxer's own seek does."""
        pts, entries = self.pts, self.vstream.index_entries
        try:
            if not len(entries):
                return True
            ts = int(pts[start]) - max(0, int(pts[0]) - entries[0].timestamp)
            k = entries.search_timestamp(ts, backward=True)
            return k < 0 or entries[k].timestamp > pts[min(self.last + 1, len(pts) - 1)]
        except (av.FFmpegError, ValueError, IndexError):
            return True

    def seek_to(self, start: int) -> None:
        """Seek so that frame ``start`` comes next, if it is behind or far ahead."""
        pts, tb = self.pts, self.tb
        if pts is None or self.held is not None or start == self.sought:
            return
        ahead = float((pts[start] - pts[min(self.last + 1, len(pts) - 1)]) * tb)
        if start > self.last and (ahead <= SEEK_AHEAD_S or not self._keyframe_ahead(start)):
            return
        self.sought = start  # at most one seek (with its retries) per span
        miss: tuple[int, av.VideoFrame, bool] | None = None
        for back in _SEEK_BACKOFF_S:
            # Seeks may land late (index by DTS, approximate seeking in MPEG-TS): retry from
            # further back; the last resort is well before the first frame, i.e. the start.
            ts = int(pts[start] - (back if back is not None else 60 + SEEK_AHEAD_S) / tb)
            try:
                self.container.seek(ts, stream=self.vstream, backward=True, any_frame=False)
            except av.FFmpegError:
                continue
            self.frames = _decode(self.container, self.vstream)
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


def cut_clips(source: str, spans: Sequence[Span], out_paths: Sequence[str], *,
              frame_pts: Sequence[int] | np.ndarray | None, rotation: int = 0,
              cfg: CutConfig | None = None, threads: int = 1) -> list[CutResult]:
    """Cut ``spans`` of ``source`` into ``out_paths`` (same order), frame-exact, in one open.

    ``frame_pts[i]`` is the pts of decoded frame ``i`` from a full decode pass; when it is
    None or not strictly increasing, frames are counted from the start and there is no
    seeking. ``rotation`` is the source's display rotation as ``VideoInfo.rotation`` holds it
    (``frame.rotation % 360``: counter-clockwise degrees, 0/90/180/270); it is applied to the
    pixels. ``threads`` sets encoder and decoder threads unless ``cfg.threads`` > 0 (0: auto).
    Spans may come in any order (overlaps work too). Each clip is written to a hidden
    temporary file beside its path and renamed into place when complete and valid. Per-span
    failures come back as results with ``error`` set (and no file at ``path``); a source that
    cannot be opened raises :class:`MediaError` (``open_failed``, or ``no_video_stream``).
    """
    if len(spans) != len(out_paths):
        raise ValueError(f"{len(spans)} spans but {len(out_paths)} output paths")
    cfg = cfg or CutConfig()
    threads = cfg.threads if cfg.threads > 0 else threads
    rotation = round(rotation / 90) % 4 * 90
    results = [CutResult(s, p, 0, 0, 0, 0, "not_cut") for s, p in zip(spans, out_paths,
                                                                      strict=True)]
    n_known = len(frame_pts) if frame_pts is not None else None
    order = []
    for i, span in enumerate(spans):
        if span.start_frame < 0 or span.end_frame <= span.start_frame:
            err = f"bad_span: [{span.start_frame}, {span.end_frame})"
        elif n_known is not None and span.end_frame > n_known:
            err = f"out_of_range: span ends at {span.end_frame}, source has {n_known} frames"
        else:
            order.append(i)
            continue
        results[i] = CutResult(span, out_paths[i], 0, 0, 0, 0, err)
    if not order:
        return results
    order.sort(key=lambda i: (spans[i].start_frame, spans[i].end_frame), reverse=True)

    pts: np.ndarray | None = None
    if frame_pts is not None and n_known:
        try:
            pts = np.asarray(frame_pts, dtype=np.int64)
        except (TypeError, ValueError):
            pts = None
        if pts is not None and (pts.ndim != 1 or np.any(np.diff(pts) <= 0)):
            pts = None  # duplicates or disorder: count frames from the start instead

    try:
        container = av.open(source, metadata_errors="ignore")
    except Exception as e:  # any failure to open is the same verdict for the caller
        raise MediaError("cut", "open_failed", str(e)) from e
    active: list[tuple[int, _Writer]] = []
    try:
        if not container.streams.video:
            raise MediaError("cut", "no_video_stream", source)
        vstream = container.streams.video[0]
        vstream.thread_type = "AUTO" if threads != 1 else "SLICE"
        vstream.codec_context.thread_count = max(threads, 0)
        reader = _Reader(container, vstream, pts)
        rate = _fps(vstream)
        step = max(1, round(1 / (rate * reader.tb)))
        pending = order  # sorted descending: pop() gives the next span to start

        def finish(entry: tuple[int, _Writer]) -> None:
            active.remove(entry)
            results[entry[0]] = entry[1].finish()

        while pending or active:
            if pending and not active:
                reader.seek_to(spans[pending[-1]].start_frame)
            got = reader.next()
            if got is None:
                break
            idx, frame = got
            for entry in [e for e in active if e[1].span.end_frame <= idx]:
                finish(entry)  # frames were lost at its end: finish reports the shortfall
            while pending and spans[pending[-1]].start_frame <= idx:
                i = pending.pop()
                active.append((i, _Writer(spans[i], out_paths[i], reader.tb, rate, rotation,
                                          cfg, threads)))
            for _, writer in active:
                writer.write(frame, step)
            for entry in [e for e in active if e[1].span.end_frame <= idx + 1]:
                finish(entry)
        while active:
            finish(active[0])
        for i in pending:
            results[i] = CutResult(spans[i], out_paths[i], 0, 0, 0, 0,
                                   f"cut_mismatch: got 0 of {spans[i].num_frames} frames")
    finally:
        for _, writer in active:
            writer._discard()
        container.close()
    return results
