"""PCM audio (cameras: DSLR MOVs, XAVC S, AVI; 8-bit PCM and ADPCM of old cameras; AVCHD\nLPCM) goes into clips as FLAC, sample for sample; MP2 and Vorbis are copied."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from clipfactory.config import CutConfig
from clipfactory.media.cut import cut_clips
from clipfactory.records import Span
from clipfactory.testing.synth import ShotSpec, write_video

RATE = 48000
SHOTS = [ShotSpec(100, "texture", 61), ShotSpec(100, "texture", 62), ShotSpec(100, "texture", 63)]


def _with_pcm(path: Path, codec: str, work: Path) -> tuple[list[int], float]:
    """Write ``path``: the shots' H.264 video and a stereo track of noise in ``codec`` (the
    same 24-bit values in s16 or s32's top bits), packets of 1001 samples. Returns the video
    frames' pts and time base, as read back."""
    plain = write_video(work / f"plain{path.suffix}", SHOTS, gop=60).path  # the same framing
    wide, byte = codec.startswith("pcm_s24") or codec == "pcm_bluray", codec == "pcm_u8"
    fmt = "s32" if wide else "u8" if byte else "s16"
    noise = np.random.default_rng(5).integers(-(1 << 23), 1 << 23, (10 * RATE, 2))
    samples = (noise << 8 if wide else (noise >> 16) + 128 if byte else noise >> 8).astype(
        {"s32": np.int32, "u8": np.uint8, "s16": np.int16}[fmt])
    with av.open(plain) as inp, av.open(str(path), "w") as out:
        vin = inp.streams.video[0]
        vout = out.add_stream_from_template(vin)
        aout = out.add_stream(codec, rate=RATE, layout="stereo")
        if codec.startswith("pcm"):
            aout.codec_context.format = fmt
        for packet in inp.demux(vin):
            if packet.dts is not None:
                packet.stream = vout
                out.mux(packet)
        for at in range(0, len(samples), 1001):
            frame = av.AudioFrame.from_ndarray(samples[at:at + 1001].reshape(1, -1),
                                               format=fmt, layout="stereo")
            frame.sample_rate, frame.pts, frame.time_base = RATE, at, Fraction(1, RATE)
            out.mux(aout.encode(frame))
        out.mux(aout.encode(None))
    with av.open(str(path)) as c:
        return [f.pts for f in c.decode(video=0)], float(c.streams.video[0].time_base)


def _full_scale(frame: av.AudioFrame) -> np.ndarray:
    """A frame's samples, interleaved, as 32-bit integers at full scale (8-bit and 16-bit
    samples shifted up), so that any two exact representations compare equal."""
    a = frame.to_ndarray()
    a = a.T.reshape(-1) if frame.format.is_planar else a.reshape(-1)
    name = frame.format.name.rstrip("p")
    if name == "u8":
        return (a.astype(np.int32) - 128) << 24
    return a.astype(np.int32) << (16 if name == "s16" else 0)


def _samples(path: str) -> tuple[np.ndarray, int, str]:
    """Interleaved samples (:func:`_full_scale`), the first one's time in samples, and the
    codec of ``path``."""
    with av.open(path) as c:
        stream = c.streams.audio[0]
        frames = list(c.decode(stream))
        first = round(frames[0].pts * frames[0].time_base * RATE)
        return (np.concatenate([_full_scale(f) for f in frames]), first,
                stream.codec_context.name)


@pytest.mark.parametrize(("name", "codec", "mode"), [
    ("cam.mov", "pcm_s16le", "exact"),  # a camera MOV
    ("cam24.mov", "pcm_s24le", "exact"),
    ("old.avi", "pcm_s16le", "exact"),  # AVI's H.264 is Annex B, spliced as MPEG-TS's is
    ("compact.avi", "pcm_u8", "exact"),  # an old compact camera's 8-bit sound
    ("adpcm.avi", "adpcm_ima_wav", "exact"),  # ...or its ADPCM: its decoded samples
    ("00001.m2ts", "pcm_bluray", "exact"),  # AVCHD/Blu-ray 24-bit LPCM in MPEG-TS
    ("old.avi", "pcm_s16le", "transcode"),  # the full re-encode's path
    ("00001.m2ts", "pcm_bluray", "transcode"),
])
def test_pcm_becomes_flac_holding_the_sources_samples(tmp_path: Path, name: str,
                                                       codec: str, mode: str) -> None:
    src = tmp_path / name
    pts, tb = _with_pcm(src, codec, tmp_path)
    whole, at, got_codec = _samples(str(src))
    assert (at, got_codec) == (0, codec)
    spans = [Span(17, 133), Span(150, 200), Span(201, 300)]
    outs = [str(tmp_path / f"c{i}.mp4") for i in range(len(spans))]
    results = cut_clips(str(src), spans, outs, frame_pts=pts, cfg=CutConfig(mode=mode))
    for span, res in zip(spans, results, strict=True):
        assert res.error is None and res.audio, res
        assert res.method == ("smart" if mode == "exact" else "transcode"), res
        clip, first, clip_codec = _samples(res.path)
        assert clip_codec == "flac"
        t0 = pts[span.start_frame] * tb
        t1 = pts[span.end_frame] * tb if span.end_frame < len(pts) else pts[-1] * tb + 1 / 30
        t1 = min(t1, len(whole) / 2 / RATE)  # (AVI's video starts a frame late: it outlasts)
        # the clip starts at most one source packet before its first frame...
        assert -1017 <= first <= 0
        # ...holds the source's samples from there, bit for bit...
        begin = round(t0 * RATE) + first
        assert np.array_equal(clip, whole[2 * begin:2 * begin + len(clip)])
        # ...and covers the span, ending at most one packet past it (ADPCM: blocks of 1017)
        assert t1 - t0 - 1e-6 <= len(clip) / 2 / RATE + first / RATE <= t1 - t0 + 1017 / RATE + 1e-6


@pytest.mark.parametrize(("codec", "rate"), [("mp3", 44100), ("mp2", 48000), ("vorbis", 44100)])
def test_mp3_mp2_and_vorbis_audio_are_copied(tmp_path: Path, codec: str, rate: int) -> None:
    """MP3 (old AVI, FLV and MP4 files), DVB/DVD's MP2 and Ogg's and early WebM's Vorbis go
    into the MP4 clip as they are. MP3 was dropped before: FFmpeg names its decoder
    ``mp3float``, and the check went by the decoder's name."""
    plain = write_video(tmp_path / "plain.mkv", SHOTS, gop=60).path
    src = tmp_path / "s.mkv"
    with av.open(plain) as inp, av.open(str(src), "w") as out:
        vout = out.add_stream_from_template(inp.streams.video[0])
        aout = out.add_stream(codec, rate=rate, layout="stereo")
        aout.codec_context.options = {"strict": "-2"}  # FFmpeg's own Vorbis encoder
        for packet in inp.demux(inp.streams.video[0]):
            if packet.dts is not None:
                packet.stream = vout
                out.mux(packet)
        fmt = aout.codec_context.codec.audio_formats[0].name
        for at in range(0, 10 * rate, 1024):
            t = (at + np.arange(1024)) / rate
            x = 0.3 * np.sin(2 * np.pi * 440 * t)
            arr = np.stack([x, x]) if fmt.endswith("p") else np.stack([x, x], 1).reshape(1, -1)
            kind = {"s16": np.int16, "s32": np.int32}.get(fmt[:3])
            arr = (arr * np.iinfo(kind).max).astype(kind) if kind else arr.astype(np.float32)
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(arr), format=fmt,
                                               layout="stereo")
            frame.sample_rate, frame.pts, frame.time_base = rate, at, Fraction(1, rate)
            out.mux(aout.encode(frame))
        out.mux(aout.encode(None))
    with av.open(str(src)) as c:
        pts = [f.pts for f in c.decode(video=0)]
        tb = float(c.streams.video[0].time_base)
    span = Span(45, 200)
    res = cut_clips(str(src), [span], [str(tmp_path / "c.mp4")], frame_pts=pts,
                    cfg=CutConfig())[0]
    assert res.error is None and res.audio and res.method == "smart", res
    with av.open(res.path) as c:
        # (FFmpeg reads MPEG audio in MP4 with its MP3 decoder, which decodes every layer)
        assert c.streams.audio[0].codec_context.codec.canonical_name in {codec, "mp3"}
        mono = np.concatenate([f.to_ndarray().reshape(-1, 2)[:, 0] if not f.format.is_planar
                               else f.to_ndarray()[0] for f in c.decode(audio=0)])
    seconds = (pts[span.end_frame] - pts[span.start_frame]) * tb
    assert abs(len(mono) / rate - seconds) < 0.1, (len(mono) / rate, seconds)
    spectrum = np.abs(np.fft.rfft(mono.astype(np.float64)))
    assert abs(np.argmax(spectrum) * rate / len(mono) - 440) < 2  # the tone, not noise
