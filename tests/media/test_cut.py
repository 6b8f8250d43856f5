"""Frame-exact cutting: counts, content, timestamps, formats, rotation, failures, one open."""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import pytest

from clipfactory.config import CutConfig
from clipfactory.errors import MediaError
from clipfactory.media import reencode as cut_mod
from clipfactory.media.cut import CutResult, cut_clips
from clipfactory.records import Span
from clipfactory.testing.compare import psnr
from clipfactory.testing.synth import ShotSpec, write_broken, write_video

SHOTS = [ShotSpec(150, "texture", 1), ShotSpec(150, "texture", 2)]
REENCODE = CutConfig(mode="transcode")  # every frame re-encoded at the source's size
LONG = [ShotSpec(300, "texture", 3), ShotSpec(300, "texture", 4)]


@dataclass
class Source:
    path: str
    pts: list[int | None]  # what the analysis pass records: frame.pts of every decoded frame
    luma: list[np.ndarray]  # decoded luma (8-bit) of every frame
    times: list[float]


def _decode_all(path: str) -> Source:
    """A plain full decode, like the pipeline's analysis pass (corrupt packets are skipped)."""
    pts, luma, times = [], [], []
    with av.open(path) as c:
        vs = c.streams.video[0]
        for packet in c.demux(vs):
            try:
                frames = packet.decode()
            except av.FFmpegError:
                continue
            for f in frames:
                pts.append(f.pts)
                luma.append(f.to_ndarray(format="gray"))
                times.append(float(f.pts * vs.time_base) if f.pts is not None else 0.0)
    return Source(path, pts, luma, times)


def _source(tmp: Path, name: str, shots: list[ShotSpec], **kw: object) -> Source:
    return _decode_all(write_video(tmp / name, shots, **kw).path)


@pytest.fixture(scope="module")
def srcdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("src")


@pytest.fixture(scope="module")
def bframes_src(srcdir: Path) -> Source:  # x264 scene-cut keyframes and 3 B-frames
    return _source(srcdir, "bframes.mp4", SHOTS, bframes=3)


@pytest.fixture(scope="module", params=["mp4", "ts"])
def long_gop_src(srcdir: Path, request: pytest.FixtureRequest) -> Source:
    """Keyframes at 0, 250, 500 only. MPEG-TS seeks land late (after the target): retried."""
    return _source(srcdir, f"longgop.{request.param}", LONG, gop=250, bframes=3)


def _read(path: str) -> tuple[list[np.ndarray], list[float], list[int], list[str]]:
    """Decoded luma, times (s), keyframe indices and [pix_fmts..., first frame's rotation]."""
    with av.open(path) as c:
        vs = c.streams.video[0]
        frames = list(c.decode(vs))
        return ([f.to_ndarray(format="gray") for f in frames],
                [float(f.pts * vs.time_base) for f in frames],
                [i for i, f in enumerate(frames) if f.key_frame],
                [f.format.name for f in frames] + [str(f.rotation) for f in frames[:1]])


def _check_clip(res: CutResult, src: Source, ref=lambda a: a) -> list[float]:
    """Exact frame count, every frame close to its source frame, edges unlike neighbours."""
    span = res.span
    assert res.error is None, res.error
    assert res.frames == span.num_frames
    assert os.path.getsize(res.path) == res.bytes > 0
    if res.path.endswith(".mp4"):  # +faststart: the index comes before the media data
        head = Path(res.path).read_bytes()
        assert -1 < head.find(b"moov") < head.find(b"mdat")
    luma, times, _keys, fmts = _read(res.path)
    assert len(luma) == span.num_frames
    assert luma[0].shape == (res.height, res.width)
    assert set(fmts[:-1]) == {"yuv420p"} and fmts[-1] == "0"  # no rotation metadata left
    for j, got in enumerate(luma):
        assert psnr(got, ref(src.luma[span.start_frame + j])) >= 35, (span, j)
    for edge, neighbour in ((0, span.start_frame - 1), (-1, span.end_frame)):
        if 0 <= neighbour < len(src.luma):
            own = psnr(luma[edge], ref(src.luma[span.start_frame if edge == 0 else
                                                 span.end_frame - 1]))
            assert psnr(luma[edge], ref(src.luma[neighbour])) < min(own - 6, 35), (span, edge)
    assert times[0] == 0 and all(b > a for a, b in itertools.pairwise(times))
    return times


def _no_temp_files(directory: Path) -> None:
    assert not [p for p in directory.rglob("*") if p.name.startswith(".")]


def test_bframes_source_spans_on_and_off_keyframes(bframes_src: Source, tmp_path: Path) -> None:
    assert len(bframes_src.pts) == 300
    spans = [Span(200, 260), Span(0, 45), Span(149, 151), Span(150, 151), Span(290, 300),
             Span(60, 140)]
    outs = [str(tmp_path / "nested" / f"c{i}.mp4") for i in range(len(spans))]
    results = cut_clips(bframes_src.path, spans, outs, frame_pts=bframes_src.pts)
    assert [r.span for r in results] == spans and [r.path for r in results] == outs
    for r in results:
        times = _check_clip(r, bframes_src)
        assert np.allclose(np.diff(times), 1 / 30, atol=1e-3)
        assert (r.width, r.height) == (320, 180)
        keys = _read(r.path)[2]
        assert keys[0] == 0 and np.diff([*keys, r.frames]).max() <= 60  # GOP <= 2 s
    _no_temp_files(tmp_path)


def _count_io(monkeypatch: pytest.MonkeyPatch, source: str) -> tuple[list[str], list[int]]:
    """Count opens of ``source`` and seeks on it (a delegating wrapper around ``av.open``)."""
    opened: list[str] = []
    seeks: list[int] = []
    real_open = av.open

    class Counting:
        def __init__(self, c: av.container.InputContainer) -> None:
            self._c = c

        def seek(self, offset: int, **k: object) -> None:
            seeks.append(offset)
            self._c.seek(offset, **k)

        def __getattr__(self, name: str) -> object:
            return getattr(self._c, name)

    def counting_open(path: object, *a: object, **k: object) -> object:
        c = real_open(path, *a, **k)
        if str(path) == source:
            opened.append(str(path))
            return Counting(c)
        return c

    monkeypatch.setattr(cut_mod.av, "open", counting_open)
    return opened, seeks


def test_long_gop_seeks_and_opens_source_once(long_gop_src: Source, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    opened, seeks = _count_io(monkeypatch, long_gop_src.path)
    # 249|250 straddles a keyframe; 500 starts on one and is reached by seeking (the others
    # are decoded through: the keyframe before them is not ahead of the decoder).
    spans = [Span(249, 251), Span(5, 35), Span(100, 130), Span(400, 401), Span(500, 530),
             Span(598, 600)]
    outs = [str(tmp_path / f"c{i}.mp4") for i in range(len(spans))]
    results = cut_clips(long_gop_src.path, spans, outs, frame_pts=long_gop_src.pts, threads=2)
    monkeypatch.undo()
    assert opened == [long_gop_src.path]
    assert len(seeks) <= 10  # exact mode reads these GOPs forward; re-encoding seeks
    for r in results:
        _check_clip(r, long_gop_src)
    _no_temp_files(tmp_path)


def test_open_gop_seek_landing_late_is_retried(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    # Open GOPs: the frames just before each keyframe (117..119) are decoded after it, so a
    # seek for them lands on the keyframe (120), past the target; the cutter seeks again.
    path = str(tmp_path / "opengop.mp4")
    write_video(path, [ShotSpec(300, "texture", 5)], bframes=3,
                x264_params="open-gop=1:keyint=120:scenecut=0:bframes=3")
    src = _decode_all(path)
    opened, seeks = _count_io(monkeypatch, path)
    spans = [Span(0, 5), Span(117, 122), Span(238, 242)]
    results = cut_clips(path, spans, [str(tmp_path / f"o{i}.mp4") for i in range(3)],
                        frame_pts=src.pts, cfg=REENCODE)  # exact mode reads forward instead
    monkeypatch.undo()
    assert len(opened) == 1 and len(seeks) >= 3
    for r in results:
        _check_clip(r, src)


@pytest.mark.parametrize(("name", "kw"), [("fullrange.mp4", {"pix_fmt": "yuvj420p"}),
                                          ("rgb.mkv", {"codec": "libx264rgb",
                                                       "pix_fmt": "bgr24"})])
def test_full_range_and_rgb_sources(srcdir: Path, tmp_path: Path, name: str,
                                    kw: dict[str, str]) -> None:
    src = _source(srcdir, name, SHOTS[:1], **kw)
    # re-encoded clips are limited-range yuv420p (exact mode keeps a full-range source's
    # pixels as they are, and copies its GOPs)
    (r,) = cut_clips(src.path, [Span(10, 40)], [str(tmp_path / "c.mkv")], frame_pts=src.pts,
                     cfg=REENCODE)
    _check_clip(r, src)
    with av.open(r.path) as c:
        assert c.format.name.startswith("matroska")


def test_short_gop_and_no_pts_counting(srcdir: Path, tmp_path: Path) -> None:
    src = _source(srcdir, "shortgop.mp4", SHOTS, gop=10, bframes=2)
    spans = [Span(3, 17), Span(20, 30), Span(133, 201), Span(10, 25)]  # overlaps work too
    for frame_pts in (src.pts, None, [0] * len(src.pts)):  # duplicates: counted, no seeking
        outs = [str(tmp_path / f"{frame_pts is None}-{i}.mp4") for i in range(len(spans))]
        for r in cut_clips(src.path, spans, outs, frame_pts=frame_pts):
            _check_clip(r, src)


def test_vfr_keeps_spacing(srcdir: Path, tmp_path: Path) -> None:
    src = _source(srcdir, "vfr.mp4", SHOTS, vfr=True, bframes=2)
    gaps = np.diff(src.times)
    assert gaps.max() > 2 * gaps.min()  # really VFR
    spans = [Span(10, 50), Span(121, 199)]
    outs = [str(tmp_path / f"v{i}.mp4") for i in range(2)]
    for r in cut_clips(src.path, spans, outs, frame_pts=src.pts):
        times = _check_clip(r, src)
        want = np.array(src.times[r.span.start_frame:r.span.end_frame]) - src.times[
            r.span.start_frame]
        assert np.allclose(times, want, atol=2e-4)


def test_odd_size_444_is_cropped_even(srcdir: Path, tmp_path: Path) -> None:
    src = _source(srcdir, "odd444.mp4", SHOTS[:1], width=321, height=181, pix_fmt="yuv444p")
    (r,) = cut_clips(src.path, [Span(30, 60)], [str(tmp_path / "o.mp4")], frame_pts=src.pts)
    assert (r.width, r.height) == (320, 180)  # last column and row cropped
    _check_clip(r, src, ref=lambda a: a[:180, :320])


def test_10bit_becomes_8bit_420(srcdir: Path, tmp_path: Path) -> None:
    src = _source(srcdir, "ten.mp4", SHOTS[:1], pix_fmt="yuv420p10le")
    with av.open(src.path) as c:
        assert c.streams.video[0].codec_context.pix_fmt == "yuv420p10le"
    (r,) = cut_clips(src.path, [Span(0, 40)], [str(tmp_path / "t.mp4")], frame_pts=src.pts)
    _check_clip(r, src)  # checks that every decoded output frame is yuv420p


@pytest.mark.parametrize("rotation", [90, 180, 270])
def test_rotation_applied_like_ffmpeg_autorotate(srcdir: Path, tmp_path: Path,
                                                  rotation: int) -> None:
    src = _source(srcdir, f"rot{rotation}.mp4", SHOTS[:1], rotation=rotation)
    with av.open(src.path) as c:  # PyAV's convention: counter-clockwise, as probe records it
        assert next(c.decode(video=0)).rotation % 360 == rotation
    # ffmpeg's autorotate: theta = -av_display_rotation_get() = -frame.rotation, applied
    # clockwise (theta 90 -> transpose=clock, 270 -> transpose=cclock). np.rot90(k<0) is
    # clockwise, so the upright picture is np.rot90(coded, -theta // 90).
    theta = -rotation % 360
    (r,) = cut_clips(src.path, [Span(10, 30)], [str(tmp_path / "r.mp4")], frame_pts=src.pts,
                     rotation=rotation)
    assert (r.width, r.height) == ((180, 320) if rotation in (90, 270) else (320, 180))
    _check_clip(r, src, ref=lambda a: np.rot90(a, -theta // 90))


def test_bad_spans_give_errors_and_no_files(bframes_src: Source, tmp_path: Path) -> None:
    spans = [Span(290, 310), Span(10, 20), Span(5, 5)]
    outs = [str(tmp_path / f"e{i}.mp4") for i in range(3)]
    r_end, r_ok, r_empty = cut_clips(bframes_src.path, spans, outs, frame_pts=bframes_src.pts)
    assert r_end.error and r_end.error.startswith("out_of_range") and r_end.bytes == 0
    assert r_empty.error and r_empty.error.startswith("bad_span")
    _check_clip(r_ok, bframes_src)
    # Without pts the cutter only finds out at the end of the stream: a partial clip is removed.
    (r,) = cut_clips(bframes_src.path, [Span(290, 310)], [outs[0]], frame_pts=None)
    assert r.error == "cut_mismatch: got 10 of 20 frames"
    assert not os.path.exists(outs[0]) and not os.path.exists(outs[2])
    assert sorted(os.listdir(tmp_path)) == ["e1.mp4"]  # no temp files either


def test_unopenable_source_raises(tmp_path: Path) -> None:
    with pytest.raises(MediaError) as e:
        cut_clips(str(tmp_path / "missing.mp4"), [Span(0, 5)], [str(tmp_path / "x.mp4")],
                  frame_pts=None)
    assert (e.value.stage, e.value.reason) == ("cut", "open_failed")
    assert cut_clips(str(tmp_path / "missing.mp4"), [], [], frame_pts=None) == []


def test_corrupt_packets_do_not_kill_the_source(tmp_path: Path) -> None:
    path = write_broken(tmp_path / "broken")["garbage_middle"]
    src = _decode_all(path)
    n = len(src.pts)
    spans = [Span(0, 20), Span(n - 20, n)]
    outs = [str(tmp_path / "out" / f"g{i}.mp4") for i in range(2)]
    for frame_pts in (src.pts, None):
        results = cut_clips(path, [*spans, Span(25, n - 25)], [*outs, outs[0] + ".mid.mp4"],
                            frame_pts=frame_pts)
        for r in results[:2]:
            assert r.error is None and r.frames == 20
        assert results[2].error is None or results[2].error.startswith("cut_mismatch")
    _no_temp_files(tmp_path)
