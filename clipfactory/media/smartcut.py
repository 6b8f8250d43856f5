"""Smart cut: frame-exact clips at close to stream-copy cost (``exact`` and ``keyframe`` modes).

The source's video packets are read once, forward, grouped into GOPs (a keyframe packet and
the packets after it in decode order, up to the next keyframe). When a GOP is complete we know
which frames it presents (its packets' pts, mapped to frame indices by the analysis pass's
``frame_pts``). A GOP is *copyable* when it starts at a random access point (an IDR picture
for H.264) and its packets present exactly the frames from its keyframe up to the next
keyframe: an open GOP's leading pictures (decoded after a keyframe, shown before it) make
both neighbouring GOPs fail that test, so open-GOP sources are re-encoded where they are cut.

For each clip, every GOP wholly inside its span and copyable is copied packet for packet;
every other frame of the span (the head up to the first copied GOP, the tail after the last,
and any GOP that is not copyable) is decoded and re-encoded by a fresh encoder matched to the
source (:mod:`clipfactory.media.splice`), one encoder per run of consecutive frames, each run
starting with its own IDR/keyframe. The decoder only sees GOPs some clip needs pixels from;
before decoding a GOP after a gap it is drained and flushed (and primed with the previous GOP
when this one has leading pictures). Within a GOP, an H.264 packet that no clip shows and no
picture refers to (a non-reference picture before a clip's first frame or after its last) is
not decoded at all: the other pictures come out bit for bit the same. A clip's packets are
held until it is complete, then get fresh timestamps: pts = source pts - the clip's first
pts (VFR spacing is kept), and dts[j] = the (j - D)-th smallest pts, D being the largest
reorder depth in the clip, so dts strictly increase and never pass pts. The MP4 is written
to a hidden temporary file and renamed into place once its packet count and timestamps match
the span exactly.

``keyframe`` mode copies only: the longest run of copyable GOPs inside the span, nothing
decoded; the result reports the span it actually holds.

Sources that cannot be spliced (see :func:`clipfactory.media.splice.splice_codec`, plus
rotation metadata and missing pts) and clips whose splice fails its checks are re-encoded in
full by :mod:`clipfactory.media.reencode`, and say why in ``CutResult.fallback``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from fractions import Fraction

import av
import numpy as np

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
from clipfactory.media.splice import (
    SpliceCodec,
    edited_out,
    mpeg4_b_frames,
    open_gops,
    rap_check,
    splice_codec,
)
from clipfactory.media.streams import encoder_rate, pixel_aspect, right_angle
from clipfactory.records import Span

__all__ = ["smart_cut"]

SEEK_AHEAD_S = 2.0  # seek instead of reading forward when the next clip is further than this
# a complete clip waits for audio packets up to its end, but no longer than until the video is
# this far past it, or as far as the file stores its audio behind (MuxLag, capped: audio that
# stops early must not hold every later clip in memory)
AUDIO_WAIT_S = 2.0
_FORMATS = {".mkv": "matroska", ".mov": "mov"}  # anything else is written as MP4
_COPY_CONTAINERS = ("mov", "matroska", "avi", "flv", "mpegts")  # keyframe mode's sources


class _Gop:
    """The packets from one keyframe to the next, in decode order."""

    __slots__ = ("copyable", "hi", "idx", "leading", "lo", "n", "packets", "rap")

    def __init__(self, n: int, first: av.Packet, index: int | None, rap: bool) -> None:
        self.n, self.packets, self.idx, self.rap = n, [first], [index], rap
        self.lo = self.hi = -1
        self.copyable = self.leading = False

    def close(self, lo: int, hi: int) -> None:
        """Fix the frame range ``[lo, hi)`` this GOP stands for and judge it."""
        self.lo, self.hi = lo, hi
        known = [i for i in self.idx if i is not None]
        self.leading = any(i < lo for i in known)
        self.copyable = (self.rap and len(known) == len(self.idx) and self.idx[0] == lo
                         and sorted(known) == list(range(lo, hi)))

    def prefix(self, end: int) -> _Gop | None:
        """The first packets of this copyable GOP that present exactly the frames ``[lo, m)``
        for the largest such ``m <= end`` (None when there is none). Decoding is causal in
        decode order, so those packets alone decode to the same pictures: a clip that ends
        inside a GOP copies this much of it and re-encodes only the frames after ``m``.
        Without B-frames ``m == end``; with them, ``m`` falls where the decode order has
        presented every frame before it (the end of a mini-GOP)."""
        if not self.copyable:
            return None
        best = top = 0
        for k, i in enumerate(self.idx, 1):
            if self.lo + k > end:
                break
            top = max(top, i)  # idx are distinct frames >= lo: max == lo + k - 1 <=> a prefix
            if top == self.lo + k - 1:
                best = k
        if best == 0:
            return None
        part = _Gop(self.n, self.packets[0], self.idx[0], self.rap)
        part.packets, part.idx = self.packets[:best], self.idx[:best]
        part.lo, part.hi, part.copyable = self.lo, self.lo + best, True
        return part


class _Run:
    """Consecutive frames ``[start, end)`` of one clip re-encoded by one fresh encoder."""

    def __init__(self, start: int) -> None:
        self.start = self.end = start
        self.got = 0
        self.encoder: av.CodecContext | None = None
        self.packets: list[av.Packet] = []
        self.done = self.failed = self.closed = False

    def covers(self, i: int) -> bool:
        return self.start <= i < self.end

    def close(self) -> None:
        """The run's end is final (a copied GOP or the clip's end follows): flush when full."""
        self.closed = True
        if self.encoder is not None and self.got == self.end - self.start and not self.failed:
            clock = stagetime.active()
            mark = clock.now()
            self.packets.extend(self.encoder.encode(None))
            clock.move("mux_write", "cut_encode", clock.now() - mark)
            self.encoder, self.done = None, True


class _Clip:
    def __init__(self, i: int, span: Span, path: str, base_pts: int) -> None:
        self.i, self.span, self.path, self.base = i, span, path, base_pts
        self.segs: list[_Gop | _Run] = []
        self.decided = span.start_frame  # frames below are copied or belong to a run
        self.error: str | None = None
        self.audio: AudioTrack | None = None
        self.note: str | None = None  # e.g. its audio was cut short
        self.seeks = 0

    @property
    def runs(self) -> list[_Run]:
        return [s for s in self.segs if isinstance(s, _Run)]

    def decide(self, gop: _Gop, copy_only: bool) -> None:
        s, e = self.span.start_frame, self.span.end_frame
        lo, hi = max(s, gop.lo), min(e, gop.hi)
        if hi <= lo or hi <= self.decided:
            return
        if lo > self.decided:
            self.error = self.error or f"cut_mismatch: frames {self.decided}..{lo} not reached"
        last = self.segs[-1] if self.segs else None
        if gop.copyable and gop.lo >= s and gop.hi <= e:
            if isinstance(last, _Run) and not last.closed:
                last.close()
            self.segs.append(gop)
        elif not copy_only:
            part = gop.prefix(e) if gop.lo == max(s, self.decided) else None
            if part is not None:  # the clip ends inside this GOP: copy what it can of it
                if isinstance(last, _Run) and not last.closed:
                    last.close()
                self.segs.append(part)
                last, lo = part, part.hi
            if lo < hi:
                if not (isinstance(last, _Run) and not last.closed
                        and last.end == max(lo, self.decided)):
                    last = _Run(max(lo, self.decided))
                    self.segs.append(last)
                last.end = hi
        else:
            marker = _Run(hi)  # empty: it only breaks the run of copied GOPs
            marker.done = marker.closed = True
            self.segs.append(marker)
        self.decided = hi
        if hi >= e:
            for run in self.runs:
                if not run.closed:
                    run.close()

    def wants(self, i: int) -> _Run | None:
        if not self.span.start_frame <= i < self.span.end_frame:
            return None
        for run in reversed(self.runs):
            if run.covers(i):
                return run
        return None

    def open_run(self, i: int) -> _Run | None:
        """The run that still waits for frame ``i`` (neither done nor failed), if any."""
        run = self.wants(i)
        return run if run is not None and not run.done and not run.failed else None

    @property
    def settled(self) -> bool:
        return self.decided >= self.span.end_frame and all(r.done or r.failed for r in self.runs)


class _Cutter:
    def __init__(self, container: av.container.InputContainer, vstream: av.VideoStream,
                 astream: av.AudioStream | None, pts: np.ndarray, splice: SpliceCodec | None,
                 cfg: CutConfig, threads: int, rotation: int) -> None:
        self.container, self.vstream, self.astream = container, vstream, astream
        self.pts, self.splice, self.cfg, self.threads = pts, splice, cfg, threads
        self.rotation = rotation
        self.copy_only = splice is None
        self.tb: Fraction = vstream.time_base or Fraction(1, 90_000)
        self.rate = encoder_rate(vstream)
        steps = np.diff(pts)
        self.step = int(np.median(steps)) if len(steps) else max(1, round(1 / (self.rate * self.tb)))
        self.n_frames = len(pts)
        self.frame_of = {p: i for i, p in enumerate(pts.tolist())}  # strictly increasing
        self.gop_n = 0
        self.dec_gop: int | None = None  # the GOP the decoder was last fed
        self.fed_hi = 0  # the end of the frame range of the GOP last fed
        self.active: list[_Clip] = []
        self.pending: list[_Clip] = []  # by start, descending: pop() is next
        self.done: list[_Clip] = []
        self.failed: list[tuple[_Clip, str]] = []  # clips to re-encode in full
        self.results: dict[int, CutResult] = {}
        self.is_rap = splice.is_rap if splice is not None else rap_check(vstream)
        self.audio_time = float("-inf")  # latest audio packet start seen since the last seek
        self.video_time = float("-inf")  # time of the first frame of the open GOP
        self.video_seen = float("-inf")  # latest video packet's time since the last seek
        self.lag = MuxLag(AUDIO_WAIT_S)  # how far behind the file stores its audio

    # -- frames and packets ------------------------------------------------------------

    def index(self, pts: int | None) -> int | None:
        if pts is None:
            return None
        return self.frame_of.get(pts)

    def packets(self) -> Iterator[av.Packet]:
        streams = [self.vstream] + ([self.astream] if self.astream is not None else [])
        try:
            for packet in self.container.demux(streams):
                if packet.size:
                    yield packet
        except av.FFmpegError:
            return  # a demuxer error ends the stream; what was read still counts

    def offer_audio(self, packet: av.Packet) -> None:
        t = float(packet.pts * packet.time_base) if packet.pts is not None else None
        if t is None:
            return
        for clip in self.active + self.pending[::-1]:
            if clip.audio is not None:
                if clip.audio.t0 > t + 1.0:
                    break
                clip.audio.offer(packet)

    # -- decoding ----------------------------------------------------------------------

    def _decode(self, packet: av.Packet | None) -> list[av.VideoFrame]:
        clock = stagetime.active()
        mark = clock.now()
        try:
            return self.vstream.decode(packet)
        except av.FFmpegError:
            return []  # a broken packet loses its frame; the run's count check catches it
        finally:  # the cut's own time is mux_write (worker); its decoding is cut_decode
            clock.move("mux_write", "cut_decode", clock.now() - mark)

    def drain(self, distribute: bool = True) -> None:
        if self.dec_gop is None:
            return
        frames = self._decode(None)
        if distribute:
            for f in frames:
                self.distribute(f)
        with contextlib.suppress(av.FFmpegError):
            self.vstream.codec_context.flush_buffers()
        self.dec_gop = None
        for clip in self.active:  # the frames of the GOPs fed so far are all out now
            for run in clip.runs:
                if not run.done and not run.failed and run.closed and run.end <= self.fed_hi:
                    self.fail_run(clip, run)

    def feed(self, gop: _Gop, prev: _Gop | None) -> None:
        if self.dec_gop != gop.n - 1:
            self.drain()
            if (gop.leading or not gop.rap) and prev is not None and prev.n == gop.n - 1:
                for p in prev.packets:  # prime the references of the leading pictures
                    if not self.splice.disposable(p):  # type: ignore[union-attr]
                        self._decode(p)
        for p, i in zip(gop.packets, gop.idx, strict=True):
            if i is not None and not self._wanted(i) and \
                    self.splice.disposable(p):  # type: ignore[union-attr]
                continue  # no clip shows it and no picture refers to it: never decoded
            for f in self._decode(p):
                self.distribute(f)
        self.dec_gop, self.fed_hi = gop.n, gop.hi

    def _wanted(self, i: int) -> bool:
        return any(clip.open_run(i) is not None for clip in self.active)

    def distribute(self, frame: av.VideoFrame) -> None:
        i = self.index(frame.pts)
        if i is None:
            return
        src_pts = int(frame.pts)
        for clip in self.active:
            for run in clip.runs:
                if not run.done and not run.failed and run.end <= i:
                    self.fail_run(clip, run)  # its frames can no longer come
            run = clip.open_run(i)
            if run is None:
                continue
            if i != run.start + run.got:
                self.fail_run(clip, run)
                continue
            self.encode(clip, run, frame, src_pts)

    def encode(self, clip: _Clip, run: _Run, frame: av.VideoFrame, src_pts: int) -> None:
        try:
            if run.encoder is None:
                run.encoder = self.splice.new_encoder(frame.width, frame.height, self.tb,
                                                      self.rate, frame, self.threads)
            frame.pts = src_pts - clip.base  # the frame may go to several clips
            frame.time_base = self.tb
            frame.pict_type = av.video.frame.PictureType.NONE
            clock = stagetime.active()
            mark = clock.now()
            run.packets.extend(run.encoder.encode(frame))
            clock.move("mux_write", "cut_encode", clock.now() - mark)
            run.got += 1
            if run.closed:
                run.close()
        except (av.FFmpegError, ValueError) as e:
            clip.error = clip.error or f"splice_failed: {type(e).__name__}: {e}"
            run.failed = True

    def fail_run(self, clip: _Clip, run: _Run) -> None:
        run.failed, run.encoder = True, None
        clip.error = clip.error or (f"cut_mismatch: re-encoded {run.got} of "
                                    f"{run.end - run.start} frames from {run.start}")

    # -- the pass ----------------------------------------------------------------------

    def process(self, gop: _Gop, prev: _Gop | None) -> None:
        while self.pending and self.pending[-1].span.start_frame < gop.hi:
            self.active.append(self.pending.pop())
        touched = [c for c in self.active if c.span.start_frame < gop.hi
                   and c.span.end_frame > gop.lo]
        for clip in touched:
            try:
                clip.decide(gop, self.copy_only)
            except av.FFmpegError as e:  # flushing a finished run's encoder
                clip.error = clip.error or f"splice_failed: {type(e).__name__}: {e}"
        if not self.copy_only and any(
                clip.wants(i) for clip in self.active for i in gop.idx if i is not None):
            self.feed(gop, prev)
        self.settle()

    def settle(self, eof: bool = False) -> None:
        """Write every clip that is complete (and has seen all its audio), or has failed."""
        for clip in self.active[:]:
            if clip.error is None and not clip.settled:
                continue
            if (clip.error is None and not eof and clip.audio is not None
                    and self.audio_time < clip.audio.t1
                    and self.video_time < clip.audio.t1 + self.lag.wait):
                continue  # interleaving: audio may trail the video (MuxLag)
            if clip.error is None and not eof and clip.audio is not None:
                clip.note = self.lag.cut_short(self.audio_time, clip.audio.t1)
            self.active.remove(clip)
            self.finish(clip)

    def finish(self, clip: _Clip) -> None:
        if clip.error is None:
            try:
                self.results[clip.i] = self.write(clip)
                return
            except _NoKeyframe as e:
                clip.error = str(e)
            except (av.FFmpegError, OSError, ValueError) as e:
                if storage_refused(e):  # the output's failure, not this clip's: the run stops
                    _remove(_tmp(clip.path))
                    raise
                clip.error = f"splice_failed: {type(e).__name__}: {e}"
        _remove(_tmp(clip.path))
        _remove(clip.path)  # a stale clip from an earlier run
        if self.copy_only:
            self.results[clip.i] = CutResult(clip.span, clip.path, 0, 0, 0, 0, clip.error,
                                             method="copy")
        else:  # the full re-encode gives the final verdict
            self.failed.append((clip, clip.error))

    def _keyframe_ahead(self, start: int, pos: int) -> bool:
        """Whether the index has a keyframe after frame ``pos`` and at or before ``start``
        (else a seek lands where we already are). Index timestamps may be DTS (MP4): shift by
        the first pts-dts offset, as the MP4 demuxer's own seek does."""
        found = index_keyframe(self.vstream, int(self.pts[0]), int(self.pts[start]))
        return found is None or found[0] is None or found[0] > self.pts[pos]

    def seek(self, clip: _Clip) -> Iterator[av.Packet] | None:
        """Seek so that reading starts at a keyframe at or before ``clip``'s first frame."""
        s = clip.span.start_frame
        for back in SEEK_BACKOFF_S:
            ts = int(self.pts[s] - back / self.tb) if back is not None else int(self.pts[0]) - 1
            try:
                self.container.seek(ts, stream=self.vstream, backward=True, any_frame=False)
            except av.FFmpegError:
                continue
            it = self.packets()
            held = []
            for p in it:
                if p.stream.type != "video":
                    held.append(p)
                    continue
                if not p.is_keyframe:
                    continue
                i = self.index(p.pts)
                if i is not None and i <= s:
                    return _chain([*held, p], it)
                break
        return None

    def run(self, clips: list[_Clip]) -> None:
        self.pending = sorted(clips, key=lambda c: (c.span.start_frame, c.span.end_frame),
                              reverse=True)
        gop: _Gop | None = None
        prev: _Gop | None = None
        reached = 0  # frames below have been passed by closed GOPs
        packets: Iterator[av.Packet] = self.packets()
        while self.pending or self.active:
            if not self.active and self.pending:
                nxt = self.pending[-1]
                s = nxt.span.start_frame
                far = float((self.pts[s] - self.pts[min(reached, s)]) * self.tb) > SEEK_AHEAD_S
                if s < reached or (far and self._keyframe_ahead(s, reached)):
                    nxt.seeks += 1
                    sought = self.seek(nxt) if nxt.seeks <= 2 else None
                    self.drain(distribute=False)
                    if sought is None:
                        self.pending.pop()
                        nxt.error = "cut_mismatch: no keyframe found before the span"
                        self.finish(nxt)
                        continue
                    packets, gop, prev = sought, None, None
                    self.audio_time = self.video_time = self.video_seen = float("-inf")
                    self.gop_n += 2  # the decoder's next GOP is not continuous
            for p in packets:
                if p.stream.type != "video":
                    if p.pts is not None:
                        self.audio_time = max(self.audio_time, float(p.pts * p.time_base))
                        self.lag.audio(float(p.pts * p.time_base), self.video_seen)
                    self.offer_audio(p)
                    continue
                if p.pts is not None:
                    self.video_seen = max(self.video_seen, float(p.pts * self.tb))
                i = self.index(p.pts)
                if gop is None:
                    if p.is_keyframe:  # anything before the first keyframe cannot be decoded
                        gop = _Gop(self.gop_n, p, i, self.is_rap(p))
                    continue
                if not p.is_keyframe:
                    gop.packets.append(p)
                    gop.idx.append(i)
                    continue
                known = [x for x in gop.idx if x is not None]
                lo = gop.idx[0] if gop.idx[0] is not None else reached
                gop.close(lo, i if i is not None else max([*known, lo - 1]) + 1)
                reached = gop.hi
                self.video_time = float(self.pts[min(reached, self.n_frames - 1)] * self.tb)
                self.process(gop, prev)
                self.gop_n += 1
                prev, gop = gop, _Gop(self.gop_n, p, i, self.is_rap(p))
                if not self.active and self.pending:
                    break  # time to decide whether to seek
            else:  # end of stream: the last GOP runs to the last frame
                if gop is not None:
                    gop.close(gop.idx[0] if gop.idx[0] is not None else reached, self.n_frames)
                    self.process(gop, prev)
                    prev, gop = gop, None
                reached = self.n_frames  # pending clips (if any) need a seek back
                self.audio_time = float("inf")
                self.drain()
                self.settle(eof=True)
                for clip in self.active[:]:
                    clip.error = clip.error or "cut_mismatch: the stream ended early"
                    self.active.remove(clip)
                    self.finish(clip)

    # -- writing -----------------------------------------------------------------------

    def write(self, clip: _Clip) -> CutResult:
        span = clip.span
        segs = clip.segs
        if self.copy_only:  # keep the longest run of copied GOPs
            best: list[_Gop] = []
            cur: list[_Gop] = []
            for seg in [*segs, _Run(0)]:
                if isinstance(seg, _Gop):
                    cur.append(seg)
                else:
                    best, cur = (cur if len(cur) > len(best) else best), []
            if not best:
                raise _NoKeyframe()
            segs = list(best)
            span = Span(best[0].lo, best[-1].hi)
            clip.base = int(self.pts[span.start_frame])
        items: list[tuple[int, bytes, bool]] = []  # (pts from clip start, data, keyframe)
        copied, prev_copy = 0, False
        for seg in segs:
            if isinstance(seg, _Gop):
                for k, p in enumerate(seg.packets):
                    data = bytes(p)
                    if self.splice is not None:
                        data = self.splice.copied(data, k == 0 and not prev_copy)
                    items.append((int(p.pts) - clip.base, data, bool(p.is_keyframe)))
                copied += len(seg.packets)
                prev_copy = True
            else:
                for k, p in enumerate(seg.packets):
                    items.append((int(p.pts), self.splice.encoded(bytes(p), k == 0),
                                  bool(p.is_keyframe)))
                prev_copy = False
        want = (self.pts[span.start_frame:span.end_frame] - clip.base).tolist()
        got = sorted(x[0] for x in items)
        if got != want:
            raise ValueError(f"cut_mismatch: {len(got)} packets for {len(want)} frames {[(a, b) for a, b in zip(got, want, strict=False) if a != b][:3]}")
        rank = {p: k for k, p in enumerate(got)}
        depth = max(0, max(j - rank[x[0]] for j, x in enumerate(items)))
        end = (int(self.pts[span.end_frame]) - clip.base if span.end_frame < self.n_frames
               else got[-1] + self.step)
        tmp = _tmp(clip.path)
        os.makedirs(os.path.dirname(tmp) or ".", exist_ok=True)
        fmt = _FORMATS.get(os.path.splitext(clip.path)[1].lower(), "mp4")
        opts = {"movflags": "+faststart"} if fmt in ("mp4", "mov") else {}
        out = av.open(tmp, "w", format=fmt, options=opts)
        try:
            ost = out.add_stream_from_template(self.vstream, opaque=True)
            sar = pixel_aspect(self.vstream)  # the container's (MP4 pasp), which the template
            if sar:  # leaves behind when the bitstream does not say it too
                ost.codec_context.sample_aspect_ratio = sar
            if self.splice is not None:
                ost.codec_context.extradata = self.splice.extradata()
                if self.splice.codec_tag:
                    ost.codec_context.codec_tag = self.splice.codec_tag
            if self.copy_only and self.rotation:
                ost.set_display_rotation(self.rotation)
            timed: list[tuple[float, int, av.Packet]] = []
            for j, (pts, data, key) in enumerate(items):
                packet = av.Packet(data)
                k = rank[pts]
                packet.pts = pts
                packet.dts = got[j - depth] if j >= depth else got[0] - (depth - j) * self.step
                packet.duration = (got[k + 1] if k + 1 < len(got) else end) - pts
                packet.time_base, packet.stream, packet.is_keyframe = self.tb, ost, key
                timed.append((float(packet.dts * self.tb), 0, packet))
            audio = False
            if clip.audio is not None and self.copy_only:  # the span moved to GOP boundaries
                clip.audio.narrow(float(self.pts[span.start_frame] * self.tb),
                                  float((clip.base + end) * self.tb))
            if clip.audio is not None and not clip.audio.empty:
                astream = clip.audio.add_stream(out)
                timed += [(t, 1, p) for t, p in clip.audio.timed_packets(astream)
                          if t < float(end * self.tb)]
                audio = True
            for _, _, packet in sorted(timed, key=lambda x: (x[0], x[1])):
                out.mux(packet)
            out.close()
        except BaseException:
            with contextlib.suppress(Exception):
                out.close()
            _remove(tmp)
            raise
        size = os.path.getsize(tmp)
        os.replace(tmp, clip.path)
        cc = self.vstream.codec_context
        w, h = (cc.height, cc.width) if self.rotation in (90, 270) else (cc.width, cc.height)
        return CutResult(span, clip.path, len(items), w, h, size,
                         method="copy" if self.copy_only else "smart", copied_frames=copied,
                         audio=audio, codec=self.splice.family if self.splice else cc.name,
                         note=clip.note if audio else None)


class _NoKeyframe(ValueError):
    def __str__(self) -> str:
        return "no_keyframe_in_span: no whole GOP inside the span"


def _chain(first: list[av.Packet], rest: Iterator[av.Packet]) -> Iterator[av.Packet]:
    yield from first
    yield from rest


def _tmp(path: str) -> str:
    head, name = os.path.split(os.path.abspath(path))
    return os.path.join(head, f".{name}.tmp-{os.getpid()}")


def _remove(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.remove(path)


def smart_cut(source: str, spans: Sequence[Span], out_paths: Sequence[str], *,
              frame_pts: Sequence[int] | np.ndarray | None, rotation: int = 0,
              cfg: CutConfig, threads: int = 1, deinterlace: bool = False) -> list[CutResult]:
    """Cut ``spans`` of ``source`` in ``exact`` or ``keyframe`` mode (see the module doc).
    ``deinterlace`` (exact mode): the source is re-encoded in full, deinterlaced (a copied
    GOP would keep its fields)."""
    from clipfactory.media.reencode import reencode_clips

    threads = cfg.threads if cfg.threads > 0 else threads
    rotation = right_angle(rotation)
    copy_only = cfg.mode == "keyframe"
    results: list[CutResult | None] = [None] * len(spans)
    pts = usable_pts(frame_pts)
    n = len(pts) if pts is not None else None
    todo: list[int] = []
    for i, span in enumerate(spans):
        if span.start_frame < 0 or span.end_frame <= span.start_frame:
            err = f"bad_span: [{span.start_frame}, {span.end_frame})"
        elif n is not None and span.end_frame > n:
            err = f"out_of_range: span ends at {span.end_frame}, source has {n} frames"
        else:
            todo.append(i)
            continue
        results[i] = CutResult(span, out_paths[i], 0, 0, 0, 0, err,
                               method="copy" if copy_only else "smart")
    if not todo:
        return results  # type: ignore[return-value]

    def full(idx: list[int], why: str,
             container: av.container.InputContainer | None = None) -> None:
        if copy_only:
            for i in idx:
                results[i] = CutResult(spans[i], out_paths[i], 0, 0, 0, 0,
                                       f"copy_failed: {why}", method="copy")
            return
        redo = reencode_clips(source, [spans[i] for i in idx], [out_paths[i] for i in idx],
                              frame_pts=frame_pts, rotation=rotation, cfg=cfg, threads=threads,
                              fallback=why, container=container,
                              deinterlace=deinterlace and not copy_only)
        for i, r in zip(idx, redo, strict=True):
            results[i] = r

    if pts is None:
        full(todo, "no_pts")
        return results  # type: ignore[return-value]
    try:
        container = av.open(source, metadata_errors="ignore")
    except Exception as e:
        raise MediaError("cut", "open_failed", str(e)) from e
    failed: list[tuple[int, str]] = []
    why: str | None = None
    try:
        vstream = video_stream(container, source, threads)
        splice: SpliceCodec | None = None
        if copy_only:
            if container.format.name.split(",")[0] not in _COPY_CONTAINERS:
                why = f"container_{container.format.name.split(',')[0]}"
            elif edited_out(source, container):
                why = "edit_list"  # a copy would carry what the edit left out
        elif deinterlace:
            why = "interlaced"  # every frame is made progressive
        elif rotation:
            why = "rotated_source"  # clips are made upright in their pixels
        elif edited_out(source, container):
            why = "edit_list"  # packets the edit left out share the shown frames' times
        else:
            got = splice_codec(container, vstream, cfg.crf, cfg.edge_preset)
            if isinstance(got, str):
                why = got
            elif open_gops(source, got):
                why = "hevc_open_gop"  # nothing to copy: x264's full re-encode is faster
            elif mpeg4_b_frames(source, got):
                why = "mpeg4_b_frames"  # its decoder slides a frame at each join
            else:
                splice = got
        if why is not None:
            full(todo, why, container)  # the source stays opened once
        else:
            astream, note = pick_audio_stream(container, cfg.audio == "keep")
            cutter = _Cutter(container, vstream, astream, pts, splice, cfg, threads, rotation)
            clips = []
            for i in todo:
                clip = _Clip(i, spans[i], out_paths[i], int(pts[spans[i].start_frame]))
                if astream is not None:
                    e = spans[i].end_frame
                    t1 = (pts[e] if e < len(pts) else pts[-1] + cutter.step) * cutter.tb
                    clip.audio = AudioTrack(astream, float(pts[spans[i].start_frame] *
                                                           cutter.tb), float(t1))
                clips.append(clip)
            cutter.run(clips)
            for i, r in cutter.results.items():
                results[i] = r if note is None else _with_note(r, note)
            failed = [(c.i, err) for c, err in cutter.failed]
            for i in todo:
                if results[i] is None and all(i != f for f, _ in failed):
                    failed.append((i, "splice_failed: not reached"))
    finally:
        container.close()
    for err in sorted({e for _, e in failed}):
        full([i for i, e in failed if e == err], err)
    return results  # type: ignore[return-value]


def _with_note(r: CutResult, note: str) -> CutResult:
    from dataclasses import replace

    return replace(r, note=note)
