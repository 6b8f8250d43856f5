"""Audio for cut clips: the source's packets over the clip's span, copied, in sync.

Compressed audio is never re-encoded (ffmpeg's AAC encoder runs at ~40x realtime per core,
slower than everything else in a smart cut). Uncompressed 16- and 24-bit PCM (what many
cameras record: DSLR and mirrorless MOVs, XAVC S, AVI, AVCHD LPCM; 8-bit PCM and ADPCM in old
cameras' AVIs) is not an MP4 audio format most readers take, so it becomes FLAC: lossless (the
clip decodes to the source's samples, bit for bit) at ~800x realtime per core, about half
PCM's size. A clip keeps every audio packet that overlaps its time span ``[t0, t1)`` with
timestamps shifted by ``-t0``, so audio and video share one timeline from 0:
the first packet may start up to one codec frame (~21 ms for AAC at 48 kHz) before 0 and the
last may run up to one frame past the end. MP4 writes the lead-in as an edit list, so players
(and FFmpeg) start at 0. Decoded duration therefore matches the clip to within one codec frame
at each end.
"""

from __future__ import annotations

import math
from fractions import Fraction

import av

__all__ = ["AUDIO_CUT_SHORT", "AudioTrack", "MuxLag", "codec_of", "pick_audio_stream"]

# codecs the MP4 muxer takes as they are (anything else: the clip has no audio, and says why).
# MP2 is DVB broadcasts' and DVDs' audio. Vorbis (Ogg Theora, early WebM) in MP4 is FFmpeg's
# own mapping: FFmpeg-based readers (PyAV, decord, torchcodec) decode it, browsers do not.
MP4_AUDIO = {"aac", "mp3", "mp2", "opus", "vorbis", "ac3", "eac3", "alac", "flac"}
# audio whose decoded samples FLAC holds exactly: 16-bit or narrower integers (8-bit PCM,
# A-law and mu-law telephone audio and the ADPCM of old cameras decode to 16-bit), and 24-bit
# PCM (decoded as s32 with 24 significant bits)
AUDIO_CUT_SHORT = "audio_cut_short"  # a clip's note: its audio was still to come


class MuxLag:
    """How far behind its video a file stores its audio, learned while demuxing.

    A clip whose video is complete waits for the audio packets up to its end, but not for
    ever (audio that stops early would hold every later clip). Most files interleave within
    a second; a broadcast TS (video sent ahead by the decoder's buffer) or a file muxed
    loosely stores audio 1-3 s behind, and a fixed wait cut those clips' audio short. So the
    wait is learned: each audio packet shows how far the video had got when it came, and a
    clip waits until the video is that far (plus half a second) past its end, at least
    ``floor`` and at most ``cap`` seconds. Past the cap the clip is written with the audio
    that came, and says so (:data:`AUDIO_CUT_SHORT`)."""

    MARGIN_S = 0.5
    CAP_S = 10.0

    def __init__(self, floor: float) -> None:
        self.floor = floor
        self.lag = 0.0

    def audio(self, audio_t: float, video_t: float) -> None:
        """An audio packet starting at ``audio_t`` came when the video had reached
        ``video_t`` (both source seconds; ``-inf`` before any video since a seek)."""
        if math.isfinite(video_t) and math.isfinite(audio_t):
            self.lag = max(self.lag, video_t - audio_t)

    @property
    def wait(self) -> float:
        """How far past a clip's end the video may go before its audio is taken as done."""
        return min(self.CAP_S, max(self.floor, self.lag + self.MARGIN_S))

    def cut_short(self, audio_t: float, end_t: float) -> str | None:
        """The note of a clip ending at ``end_t`` written when the audio had reached only
        ``audio_t`` because the wait hit its cap; None otherwise."""
        if audio_t >= end_t or self.lag + self.MARGIN_S <= self.CAP_S:
            return None
        return (f"{AUDIO_CUT_SHORT}: the file stores its audio {self.lag:.1f} s behind the "
                f"video; the clip's audio ends {max(0.0, end_t - audio_t):.2f} s early")


TO_FLAC = {"pcm_s16le", "pcm_s16be", "pcm_u8", "pcm_s8", "pcm_alaw", "pcm_mulaw",
           "adpcm_ima_wav", "adpcm_ima_qt", "adpcm_ms", "pcm_s24le", "pcm_s24be",
           "pcm_bluray", "pcm_dvd"}  # Blu-ray/AVCHD and DVD LPCM: 16, 20 or 24 bits


def codec_of(stream: av.AudioStream) -> str:
    """The stream's codec, by FFmpeg's codec name (``mp3``), not its decoder's (``mp3float``,
    which a check by decoder name took for a codec MP4 cannot hold)."""
    cc = stream.codec_context
    return cc.codec.canonical_name if cc is not None and cc.codec is not None else ""


def pick_audio_stream(container: av.container.InputContainer, keep: bool
                      ) -> tuple[av.AudioStream | None, str | None]:
    """The audio stream to copy, or ``(None, reason)`` when there is none or it cannot go in
    an MP4 (``reason`` is None when audio is simply off or absent)."""
    if not keep or not container.streams.audio:
        return None, None
    stream = container.streams.audio[0]
    name = codec_of(stream)
    if name not in MP4_AUDIO and name not in TO_FLAC:
        return None, f"audio_not_copied: {name or 'unknown'} cannot go in mp4"
    if stream.time_base is None:
        return None, "audio_not_copied: no time base"
    return stream, None


class AudioTrack:
    """The audio packets of one clip, collected while its source is demuxed."""

    def __init__(self, stream: av.AudioStream, t0: float, t1: float) -> None:
        self.stream, self.t0, self.t1 = stream, t0, t1
        self.tb: Fraction = stream.time_base
        self.packets: dict[int, av.Packet] = {}  # by pts: a seek may hand a packet over twice
        self.flac: _Flac | None = None  # PCM sources: the clip's FLAC encoder

    def offer(self, packet: av.Packet) -> None:
        """Keep ``packet`` if it overlaps the clip's span."""
        if packet.pts is None or not packet.size:
            return
        if self._overlaps(packet):
            self.packets.setdefault(packet.pts, packet)

    def _overlaps(self, packet: av.Packet) -> bool:
        start = float(packet.pts * self.tb)
        end = start + float((packet.duration or 0) * self.tb)
        return (end > self.t0 and start < self.t1) or (
            not packet.duration and self.t0 <= start < self.t1)

    def narrow(self, t0: float, t1: float) -> None:
        """The clip's span became ``[t0, t1)`` (keyframe mode moves it to GOP boundaries):
        the packets outside it go. Kept, those before the new start (up to a GOP of them)
        played that much early in a reader that ignores the MP4 edit list."""
        self.t0, self.t1 = t0, t1
        self.packets = {k: p for k, p in self.packets.items() if self._overlaps(p)}

    @property
    def empty(self) -> bool:
        return not self.packets

    def add_stream(self, out: av.container.OutputContainer) -> av.AudioStream:
        if codec_of(self.stream) in TO_FLAC:
            self.flac = _Flac(self.stream, out)
            return self.flac.ostream
        ostream = out.add_stream_from_template(self.stream, opaque=True)
        head = bytes(self.stream.codec_context.extradata or b"")
        if (codec_of(self.stream) == "opus" and head.startswith(b"OpusHead")
                and len(head) >= 12 and min(self.packets, default=round(self.t0 / self.tb))
                > (self.stream.start_time or 0)):
            # Opus pre-skip drops the encoder's priming samples at the start of the stream;
            # a clip from the middle has none, and would lose (and shift) real audio. (A
            # re-encode adds the stream before any packet came: the clip's start says.)
            ostream.codec_context.extradata = head[:10] + b"\0\0" + head[12:]
        return ostream

    def timed_packets(self, ostream: av.AudioStream, last: bool = True
                      ) -> list[tuple[float, av.Packet]]:
        """``(time from clip start, packet)`` with pts/dts shifted onto the clip's timeline,
        for the packets offered so far. ``last``: no more will come (a FLAC encoder gives
        out what it still holds)."""
        if self.flac is not None:
            return self.flac.encode([self.packets[p] for p in sorted(self.packets)], self.t0,
                                    last)
        tb = self.tb
        rate = self.stream.codec_context.sample_rate or 0
        if rate and tb > Fraction(1, rate):
            # a time base coarser than a sample (AVI's is one codec frame: 26 ms of MP3 at
            # 44.1 kHz): the clip's start falls between two ticks, and a shift by whole
            # ticks put the audio up to half a frame off the video. Timed in samples instead.
            tb = Fraction(1, rate)
        shift = self.t0 / tb  # in ``tb`` ticks, not rounded
        out = []
        for pts in sorted(self.packets):
            src = self.packets[pts]
            packet = av.Packet(bytes(src))
            packet.pts = packet.dts = round(pts * self.tb / tb - shift)
            packet.duration = round((src.duration or 0) * self.tb / tb)
            packet.time_base, packet.stream = tb, ostream
            packet.is_keyframe = True
            out.append((float(packet.pts * tb), packet))
        return out


class _Flac:
    """One clip's PCM made FLAC: the source packets decoded (PCM and block ADPCM decoding
    keep no state between packets, so the source's own decoder serves every clip) and encoded
    by an encoder of the clip's own. The packets are the ones a copy would keep; their samples
    are placed on a time base of one sample, so the clip start lands on the nearest sample
    even where the source's audio time base is a whole block (AVI: ~21 ms)."""

    def __init__(self, stream: av.AudioStream, out: av.container.OutputContainer) -> None:
        cc = stream.codec_context
        self.decoder = cc
        self.ostream: av.AudioStream = out.add_stream("flac", rate=cc.sample_rate)
        enc = self.ostream.codec_context
        enc.layout = cc.layout
        wide = codec_of(stream).startswith("pcm_s24") or (cc.format is not None and
                                                  cc.format.name.startswith("s32"))
        enc.format = "s32" if wide else "s16"
        # 8-bit and planar samples are made the encoder's format (exactly: same rate)
        self.convert = av.AudioResampler(format=enc.format, layout=cc.layout,
                                         rate=cc.sample_rate)
        self.src_tb: Fraction = stream.time_base
        self.tb = Fraction(1, cc.sample_rate)
        self.ostream.time_base = enc.time_base = self.tb

    def encode(self, packets: list[av.Packet], t0: float, last: bool
               ) -> list[tuple[float, av.Packet]]:
        """FLAC packets of ``packets`` (in pts order), timed from ``t0`` (source seconds);
        ``last``: flush the encoder."""
        got: list[av.Packet] = []
        for packet in packets:
            at = round((packet.pts * self.src_tb - Fraction(t0)) / self.tb)
            for frame in self.decoder.decode(packet):
                frames = (self.convert.resample(frame)
                          if frame.format.name != self.ostream.codec_context.format.name
                          else [frame])
                for f in frames:
                    f.pts, f.time_base = at, self.tb
                    at += f.samples
                    got += self.ostream.encode(f)
        if last:
            got += self.ostream.encode(None)
        for packet in got:
            packet.stream = self.ostream
        return [(float(p.pts * self.tb), p) for p in got]
