"""Transcode mode and the full re-encode's target: encoders, scaling, frame rate, 10-bit,
bitrate, NVENC selection, audio copy (sync, completeness around seeks, late packets)."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from clipfactory.config import CutConfig
from clipfactory.media import reencode
from clipfactory.media.cutresult import CutResult
from clipfactory.media.encoders import (
    encoder_options,
    nvenc_available,
    parse_bitrate,
    resolve_encoder,
)
from clipfactory.media.reencode import reencode_clips
from clipfactory.records import Span
from clipfactory.testing.compare import psnr
from clipfactory.testing.synth import ShotSpec, write_audio_only, write_video

AAC_FRAME = 1024 / 48000  # one AAC frame at 48 kHz: the audio edge tolerance
HAS_NVENC = nvenc_available("h264_nvenc")


@dataclass
class Source:
    path: str
    pts: list[int]
    times: list[Fraction]  # exact frame times, pts * time base
    luma: list[np.ndarray]


def _decode(path: str) -> Source:
    with av.open(path) as c:  # the stream's fields are only valid while it is open
        vs = c.streams.video[0]
        frames = list(c.decode(vs))
        return Source(path, [f.pts for f in frames], [f.pts * vs.time_base for f in frames],
                      [f.to_ndarray(format="gray") for f in frames])


def _scaled(luma: np.ndarray, width: int, height: int) -> np.ndarray:
    frame = av.VideoFrame.from_ndarray(luma, format="gray")
    return frame.reformat(width=width, height=height, interpolation="AREA").to_ndarray()


def _audio(path: str) -> tuple[np.ndarray, np.ndarray]:
    """Decoded mono samples of the first audio stream and each sample's time (s)."""
    with av.open(path) as c:
        frames = list(c.decode(c.streams.audio[0]))
        samples = np.concatenate([f.to_ndarray()[0] for f in frames])
        times = np.concatenate([float(f.pts * f.time_base) + np.arange(f.samples) /
                                f.sample_rate for f in frames])
        return samples, times


def _cut(src: Source, spans: list[Span], tmp: Path, name: str = "c",
         **cfg: object) -> list[CutResult]:
    outs = [str(tmp / f"{name}{i}.mp4") for i in range(len(spans))]
    results = reencode_clips(src.path, spans, outs, frame_pts=src.pts,
                             cfg=CutConfig(**{"mode": "transcode", **cfg}))
    for r in results:
        assert r.error is None, r.error
    return results


@pytest.fixture(scope="module")
def srcdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("transcode")


@pytest.fixture(scope="module")
def src(srcdir: Path) -> Source:
    """6 s at 30 fps, 320x180, keyframe every second, a 440 Hz sine as audio."""
    shots = [ShotSpec(90, "texture", 1), ShotSpec(90, "texture", 2)]
    return _decode(write_video(srcdir / "src.mp4", shots, gop=30, audio=True).path)


def test_resolve_encoder_here() -> None:
    software = {"h264": "libx264", "hevc": "libx265", "av1": "libsvtav1", "vp9": "libvpx-vp9"}
    for family, name in software.items():
        assert resolve_encoder(CutConfig(codec=family, gpu="never")) == name
    assert resolve_encoder(CutConfig(codec="h264")) == ("h264_nvenc" if HAS_NVENC
                                                        else "libx264")
    assert resolve_encoder(CutConfig(codec="libx265")) == "libx265"  # a name is used as given
    with pytest.raises(ValueError, match="no NVENC encoder for vp9"):
        resolve_encoder(CutConfig(codec="vp9", gpu="always"))
    with pytest.raises(ValueError, match="unknown codec"):
        resolve_encoder(CutConfig(codec="h266"))


@pytest.mark.skipif(HAS_NVENC, reason="NVENC works on this machine")
def test_gpu_always_raises_without_nvenc(src: Source, tmp_path: Path) -> None:
    nvenc_available.cache_clear()
    t = time.perf_counter()
    assert not nvenc_available("hevc_nvenc")
    assert time.perf_counter() - t < 1.0  # no GPU: the probe fails at once
    with pytest.raises(ValueError, match="'always' but h264_nvenc does not open"):
        resolve_encoder(CutConfig(codec="h264", gpu="always"))
    with pytest.raises(ValueError, match="h264_nvenc does not open"):
        _cut(src, [Span(0, 10)], tmp_path, gpu="always")
    assert not list(tmp_path.iterdir())


def test_encoder_options_map_quality() -> None:
    cfg = CutConfig(crf=23, preset="medium")
    assert encoder_options("libx264", cfg) == {"preset": "medium", "crf": "23"}
    assert encoder_options("libx265", cfg)["x265-params"] == "log-level=error"
    assert encoder_options("libsvtav1", cfg) == {"preset": "10", "crf": "23"}
    assert encoder_options("libsvtav1", CutConfig(preset="6"))["preset"] == "6"
    assert encoder_options("libvpx-vp9", cfg) == {"deadline": "good", "cpu-used": "5",
                                                  "row-mt": "1", "crf": "23", "b": "0"}
    assert encoder_options("h264_nvenc", cfg) == {"preset": "p4", "rc": "vbr", "cq": "23",
                                                  "b": "0"}
    rated = CutConfig(bitrate="2.5M")
    for name in ("libx264", "libsvtav1", "libvpx-vp9", "hevc_nvenc"):
        opts = encoder_options(name, rated)
        assert opts["b"] == "2500000" and "crf" not in opts and "cq" not in opts
    assert parse_bitrate("800k") == 800_000 and parse_bitrate("4M") == 4_000_000
    with pytest.raises(ValueError, match="bad bitrate"):
        parse_bitrate("fast")


def test_h264_scaled_to_max_height_keeps_source_times(src: Source, tmp_path: Path) -> None:
    spans = [Span(10, 70), Span(150, 180)]  # the second ends at the source's last frame
    for r, span in zip(_cut(src, spans, tmp_path, max_height=90, audio="drop"), spans,
                       strict=True):
        assert (r.width, r.height, r.codec, r.method, r.fallback) == (160, 90, "h264",
                                                                      "transcode", None)
        out = _decode(r.path)
        assert len(out.luma) == r.frames == span.num_frames
        assert out.luma[0].shape == (90, 160)
        for j, got in enumerate(out.luma):
            assert psnr(got, _scaled(src.luma[span.start_frame + j], 160, 90)) >= 30, j
        t0 = src.times[span.start_frame]
        assert out.times == [t - t0 for t in src.times[span.start_frame:span.end_frame]]


def test_scaling_fits_the_rotated_picture(srcdir: Path, tmp_path: Path) -> None:
    path = write_video(srcdir / "rot.mp4", [ShotSpec(30, "texture", 5)], rotation=90).path
    src = _decode(path)
    (r,) = reencode_clips(path, [Span(0, 30)], [str(tmp_path / "r.mp4")], frame_pts=src.pts,
                          rotation=90, cfg=CutConfig(mode="transcode", max_width=100,
                                                     max_height=100))
    assert r.error is None and (r.width, r.height) == (56, 100)  # 180x320 upright, fit 100
    out = _decode(r.path)
    for got, coded in zip(out.luma, src.luma, strict=True):
        assert psnr(got, _scaled(np.rot90(coded), 56, 100)) >= 30


@pytest.mark.parametrize("codec", ["av1", "vp9"])
def test_av1_and_vp9(src: Source, tmp_path: Path, codec: str) -> None:
    (r,) = _cut(src, [Span(40, 70)], tmp_path, codec=codec, gpu="never", audio="drop")
    assert r.codec == codec and r.frames == 30
    with av.open(r.path) as c:
        assert c.streams.video[0].codec_context.codec.canonical_name == codec
    out = _decode(r.path)
    assert len(out.luma) == 30
    assert min(psnr(a, b) for a, b in zip(out.luma, src.luma[40:70], strict=True)) >= 30


def test_fps_halved_takes_every_other_frame(src: Source, tmp_path: Path) -> None:
    spans = [Span(10, 70), Span(151, 180)]  # 2 s, and 29 frames to the source's end
    r1, r2 = _cut(src, spans, tmp_path, fps=15, audio="drop")
    assert (r1.frames, r2.frames) == (30, 15)  # ceil(29 / 30 s * 15)
    for r, span in ((r1, spans[0]), (r2, spans[1])):
        out = _decode(r.path)
        assert len(out.luma) == r.frames
        assert out.times == [Fraction(k, 15) for k in range(r.frames)]
        for k, got in enumerate(out.luma):
            want = span.start_frame + 2 * k
            own = psnr(got, src.luma[want])
            assert own >= 35
            for other in (want - 1, want + 1):  # not a neighbour (the last has none after)
                if other < len(src.luma):
                    assert psnr(got, src.luma[other]) < own - 6, (k, other)


def test_fps_from_vfr_source_is_evenly_spaced(srcdir: Path, tmp_path: Path) -> None:
    shots = [ShotSpec(45, "texture", 6), ShotSpec(45, "texture", 7)]
    src = _decode(write_video(srcdir / "vfr.mp4", shots, vfr=True).path)
    gaps = np.diff([float(t) for t in src.times])
    assert gaps.max() > 2.5 * gaps.min()  # really variable
    span = Span(5, 80)
    (r,) = _cut(src, [span], tmp_path, fps=24)
    t0 = src.times[span.start_frame]
    duration = src.times[span.end_frame] - t0
    out = _decode(r.path)
    assert r.frames == len(out.luma) == math.ceil(duration * 24)
    assert out.times == [Fraction(k, 24) for k in range(r.frames)]
    for k, got in enumerate(out.luma):  # the latest source frame at or before k / 24
        want = max(i for i in range(span.start_frame, span.end_frame)
                   if src.times[i] - t0 <= Fraction(k, 24))
        assert psnr(got, src.luma[want]) >= 35, k


def test_bitrate_mode_undercuts_crf18(src: Source, tmp_path: Path) -> None:
    span = Span(0, 90)
    (crf,) = _cut(src, [span], tmp_path, name="crf", crf=18, audio="drop")
    (rated,) = _cut(src, [span], tmp_path, name="rate", bitrate="50k", audio="drop")
    assert rated.bytes < crf.bytes / 2
    assert rated.bytes * 8 / 3.0 < 1.5 * 50_000  # 3 s at about the asked average rate


@pytest.mark.parametrize("codec", ["hevc", "av1"])
def test_10bit_output(src: Source, tmp_path: Path, codec: str) -> None:
    (r,) = _cut(src, [Span(20, 40)], tmp_path, codec=codec, gpu="never",
                pix_fmt="yuv420p10le", audio="drop")
    with av.open(r.path) as c:
        vs = c.streams.video[0]
        assert vs.codec_context.pix_fmt == "yuv420p10le"
        frames = list(c.decode(vs))
    assert len(frames) == 20 and {f.format.name for f in frames} == {"yuv420p10le"}
    for f, ref in zip(frames, src.luma[20:40], strict=True):
        assert psnr(f.to_ndarray(format="gray"), ref) >= 30


def test_10bit_unsupported_is_a_clip_error(src: Source, tmp_path: Path) -> None:
    (r,) = reencode_clips(src.path, [Span(0, 10)], [str(tmp_path / "v.mp4")],
                          frame_pts=src.pts, cfg=CutConfig(mode="transcode", codec="vp9",
                                                           pix_fmt="yuv420p10le"))
    assert r.error == "unsupported_pix_fmt: libvpx-vp9 cannot encode yuv420p10le"
    assert not list(tmp_path.iterdir())


def test_exact_mode_fallback_ignores_transcode_target(src: Source, tmp_path: Path) -> None:
    cfg = CutConfig(mode="exact", max_height=90, fps=10, audio="drop")
    (r,) = reencode_clips(src.path, [Span(5, 35)], [str(tmp_path / "f.mp4")],
                          frame_pts=src.pts, cfg=cfg, fallback="open_gop")
    assert (r.method, r.fallback, r.codec) == ("reencode", "open_gop", "h264")
    assert (r.width, r.height, r.frames) == (320, 180, 30)  # source size, every frame
    out = _decode(r.path)
    assert out.times == [t - src.times[5] for t in src.times[5:35]]


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_NVENC, reason="h264_nvenc does not open here (no GPU)")
def test_nvenc_h264(src: Source, tmp_path: Path) -> None:
    (r,) = _cut(src, [Span(30, 90)], tmp_path, codec="h264", gpu="always")
    assert r.codec == "h264" and r.frames == 60
    out = _decode(r.path)
    assert len(out.luma) == 60
    assert min(psnr(a, b) for a, b in zip(out.luma, src.luma[30:90], strict=True)) >= 30


def _check_audio(r: CutResult, t0: float,
                 source: tuple[np.ndarray, np.ndarray] | None = None) -> None:
    """Audio over the whole clip (one AAC frame of slack at each end), from -1 frame..0, in
    sync: the 440 Hz sine's phase from 0.1 s matches the source's at ``t0 + t`` (the synth
    formula, or the decoded ``source`` audio)."""
    assert r.audio and r.note is None
    with av.open(r.path) as c:
        first = next(p for p in c.demux(c.streams.audio[0]) if p.size)
        assert -AAC_FRAME - 1e-6 <= float(first.pts * first.time_base) <= 1e-6
    samples, times = _audio(r.path)
    clip = r.frames / 30
    assert abs(len(samples) / 48000 - clip) <= 2 * AAC_FRAME + 1e-3
    window = (times >= 0.1) & (times < 0.3)
    if source is None:
        ref = 0.3 * np.sin(2 * np.pi * 440 * (t0 + times[window]))
    else:
        ref = np.interp(t0 + times[window], source[1], source[0])
    assert np.corrcoef(samples[window], ref)[0, 1] > (0.9 if source is None else 0.99)


def test_audio_kept_in_sync_and_interleaved(src: Source, tmp_path: Path) -> None:
    spans = [Span(15, 75), Span(100, 160)]
    for r, span in zip(_cut(src, spans, tmp_path), spans, strict=True):
        _check_audio(r, float(src.times[span.start_frame]))
        with av.open(r.path) as c:  # file order: neither stream runs ahead of the other
            seen = {"audio": -1.0, "video": -1.0}
            for p in c.demux():
                if p.size:
                    seen[p.stream.type] = float(p.dts * p.time_base)
                    if min(seen.values()) >= 0:
                        assert abs(seen["audio"] - seen["video"]) < 0.5


@pytest.mark.parametrize("ext", ["mp4", "ts"])
def test_audio_complete_after_a_seek(srcdir: Path, tmp_path: Path, ext: str,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The second span starts on a keyframe 6 s after the first ends: reached by a seek."""
    shots = [ShotSpec(150, "texture", 8), ShotSpec(150, "texture", 9)]
    path = write_video(srcdir / f"long.{ext}", shots, width=160, height=96, gop=30,
                       audio=True).path
    src = _decode(path)
    seeks: list[int] = []
    real_open = av.open

    class Counting:  # the real container, its seeks counted
        def __init__(self, c: av.container.InputContainer) -> None:
            self._c = c

        def seek(self, offset: int, **k: object) -> None:
            seeks.append(offset)
            self._c.seek(offset, **k)

        def __getattr__(self, name: str) -> object:
            return getattr(self._c, name)

    monkeypatch.setattr(reencode.av, "open", lambda p, *a, **k: (
        Counting(real_open(p, *a, **k)) if p == path else real_open(p, *a, **k)))
    spans = [Span(0, 30), Span(210, 240)]
    results = _cut(src, spans, tmp_path)
    monkeypatch.undo()
    assert seeks
    source_audio = _audio(path)
    for r, span in zip(results, spans, strict=True):
        _check_audio(r, float(src.times[span.start_frame]), source_audio)


def test_audio_waits_for_late_packets(srcdir: Path, tmp_path: Path) -> None:
    """Audio stored 0.6 s after its video (Matroska demuxes in file order): each clip's
    video is complete before its audio has been read."""
    video = write_video(srcdir / "silent.mp4", [ShotSpec(120, "texture", 10)], width=160,
                        height=96).path
    audio = write_audio_only(srcdir / "sine.m4a", 4.2)
    path = str(srcdir / "late.mkv")
    with av.open(video) as v, av.open(audio) as a, \
            av.open(path, "w", options={"max_interleave_delta": "1"}) as out:  # call order
        vs, aus = v.streams.video[0], a.streams.audio[0]
        ov, oa = out.add_stream_from_template(vs), out.add_stream_from_template(aus)
        apk = [p for p in a.demux(aus) if p.size]
        for p in v.demux(vs):
            while p.size and apk and apk[0].pts * apk[0].time_base <= p.dts * p.time_base - 0.6:
                q = apk.pop(0)
                q.stream = oa
                out.mux(q)
            if p.size:
                p.stream = ov
                out.mux(p)
        for q in apk:
            q.stream = oa
            out.mux(q)
    src = _decode(path)
    spans = [Span(0, 30), Span(30, 60)]
    for r, span in zip(_cut(src, spans, tmp_path), spans, strict=True):
        _check_audio(r, float(src.times[span.start_frame]), _audio(path))


def test_audio_drop_and_no_timestamps(src: Source, tmp_path: Path) -> None:
    (r,) = _cut(src, [Span(0, 30)], tmp_path, audio="drop")
    assert not r.audio and r.note is None
    with av.open(r.path) as c:
        assert not c.streams.audio
    (r,) = reencode_clips(src.path, [Span(0, 30)], [str(tmp_path / "n.mp4")], frame_pts=None,
                          cfg=CutConfig(mode="transcode"))
    assert r.error is None and not r.audio and r.note is not None
    assert "timestamps" in r.note
    with av.open(r.path) as c:
        assert not c.streams.audio
