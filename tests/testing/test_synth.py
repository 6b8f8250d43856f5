"""The synthetic video generator: pixels, encoders, metadata, broken files and the corpus."""

from __future__ import annotations

import itertools
from pathlib import Path

import av
import numpy as np
import pytest

from clipfactory.testing.compare import psnr
from clipfactory.testing.synth import (
    ShotSpec,
    SynthVideo,
    frame_times,
    make_corpus,
    render_frame,
    write_audio_only,
    write_broken,
    write_video,
)

W, H = 320, 180
TWO = (ShotSpec(10, "texture", 1), ShotSpec(10, "texture", 2))
_BROKEN = [ShotSpec(30, seed=11), ShotSpec(30, seed=12), ShotSpec(30, seed=13)]  # write_broken's


def luma(img: np.ndarray) -> np.ndarray:
    return img.astype(np.float64) @ np.array([0.299, 0.587, 0.114])


def mad(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(np.abs(a.astype(np.int16) - b.astype(np.int16))))


def lap_var(img: np.ndarray) -> float:
    g = luma(img)
    lap = 4 * g[1:-1, 1:-1] - g[:-2, 1:-1] - g[2:, 1:-1] - g[1:-1, :-2] - g[1:-1, 2:]
    return float(lap.var())


def decode(path: str | Path) -> list[av.VideoFrame]:
    with av.open(str(path)) as c:
        return list(c.decode(video=0))


def shot(kind: str, seed: int = 0, n: int = 12) -> list[np.ndarray]:
    return [render_frame([ShotSpec(n, kind, seed)], i, W, H) for i in range(n)]


# --- pixels -------------------------------------------------------------------------------


def test_render_is_deterministic_rgb_and_bounded():
    a = render_frame(TWO, 13, W, H)
    assert a.shape == (H, W, 3) and a.dtype == np.uint8
    assert np.array_equal(a, render_frame(list(TWO), 13, W, H))
    assert np.array_equal(a, render_frame(TWO[1:], 3, W, H))  # frame 13 = shot 2, frame 3
    with pytest.raises(IndexError):
        render_frame(TWO, 20, W, H)
    with pytest.raises(ValueError):
        ShotSpec(5, "sparkly")


def test_texture_is_bright_sharp_and_pans_smoothly():
    frames = shot("texture")
    assert luma(frames[0]).mean() > 60
    assert lap_var(frames[0]) > 100
    steps = [mad(a, b) for a, b in itertools.pairwise(frames)]
    assert all(s > 1.0 for s in steps)  # never static
    other = shot("texture", seed=1)[0]
    assert mad(frames[0], other) > 4 * max(steps)  # a cut is far bigger than in-shot motion
    means = [f.reshape(-1, 3).mean(0) for f in (frames[0], other, shot("texture", 2)[0])]
    assert min(np.abs(means[i] - means[j]).max() for i, j in ((0, 1), (0, 2), (1, 2))) > 20


def test_special_kinds():
    tex, dark, still, blurry = (shot(k, 5) for k in ("texture", "dark", "static", "blurry"))
    assert 4 < luma(dark[0]).mean() < 12 and mad(dark[0], dark[1]) > 0  # dark but moving
    assert all(np.array_equal(still[0], f) for f in still)
    assert luma(still[0]).mean() > 40
    assert lap_var(blurry[0]) < lap_var(tex[0]) / 50 and mad(blurry[0], blurry[1]) > 0
    flash = shot("flash", 5, n=20)
    white = [i for i, f in enumerate(flash) if f.min() == 255]
    assert white == [9, 10]
    assert mad(flash[8], flash[11]) < mad(flash[8], flash[9]) / 5  # same scene either side


# --- encoding -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cuts_video(tmp_path_factory) -> SynthVideo:
    shots = [ShotSpec(15, "texture", 3), ShotSpec(15, "dark", 4), ShotSpec(15, "texture", 5)]
    return write_video(tmp_path_factory.mktemp("synth") / "cuts.mp4", shots, bframes=2)


def test_x264_matches_render_at_cuts(cuts_video):
    v = cuts_video
    assert (v.frames, v.cuts, v.fps, v.width, v.height) == (45, (15, 30), 30.0, W, H)
    with av.open(v.path) as c:
        assert c.streams.video[0].frames == 45
    got = [f.to_ndarray(format="rgb24") for f in decode(v.path)]
    assert len(got) == 45
    for i in (0, 13, 14, 15, 16, 28, 29, 30, 31, 44):
        assert psnr(got[i], render_frame(v.shots, i, W, H)) > 35, i
    within = max(mad(got[i], got[i + 1]) for i in range(44) if i + 1 not in v.cuts)
    across = min(mad(got[c - 1], got[c]) for c in v.cuts)
    assert across > 5 * within


@pytest.mark.parametrize(
    ("codec", "ext", "name"),
    [("libx264", "mp4", "h264"), ("libvpx-vp9", "webm", "vp9"), ("libsvtav1", "mkv", "av1"),
     ("libsvtav1", "mp4", "av1"), ("mpeg4", "avi", "mpeg4"), ("libx265", "mkv", "hevc")],
)
def test_codecs_round_trip(tmp_path, codec, ext, name):
    if codec not in av.codecs_available:
        pytest.skip(f"{codec} not in this FFmpeg build")
    v = write_video(tmp_path / f"v.{ext}", TWO, codec=codec)
    frames = decode(v.path)
    with av.open(v.path) as c:
        assert c.format.name.split(",")[0] in {"mov", "matroska", "avi"}
        assert c.streams.video[0].codec_context.codec.id == av.Codec(name).id
    assert len(frames) == 20
    for i in (0, 9, 10, 19):
        assert psnr(frames[i].to_ndarray(format="rgb24"), render_frame(TWO, i, W, H)) > 35


def test_pixel_formats_and_odd_sizes(tmp_path):
    v10 = write_video(tmp_path / "ten.mkv", TWO[:1], pix_fmt="yuv420p10le")
    f = decode(v10.path)[4]
    assert f.format.name == "yuv420p10le"
    assert psnr(f.to_ndarray(format="rgb24"), render_frame(TWO, 4, W, H)) > 35
    odd = write_video(tmp_path / "odd.mp4", TWO[:1], pix_fmt="yuv444p", width=321, height=181)
    f = decode(odd.path)[4]
    assert (f.format.name, f.width, f.height) == ("yuv444p", 321, 181)
    assert psnr(f.to_ndarray(format="rgb24"), render_frame(TWO, 4, 321, 181)) > 40
    with pytest.raises(ValueError, match="even"):
        write_video(tmp_path / "bad.mp4", TWO[:1], width=321, height=181)


@pytest.mark.parametrize("rotation", [0, 90, 180, 270])
def test_rotation_metadata(tmp_path, rotation):
    v = write_video(tmp_path / "r.mp4", [ShotSpec(3)], rotation=rotation)
    frame = decode(v.path)[0]
    assert frame.rotation % 360 == rotation
    assert (frame.width, frame.height) == (W, H)  # stored unrotated


def test_vfr_timestamps(tmp_path):
    v = write_video(tmp_path / "vfr.mp4", TWO, vfr=True)
    times = [float(f.time) for f in decode(v.path)]
    assert len(times) == 20
    gaps = np.diff(times)
    assert (gaps > 0).all() and gaps.max() > 2.5 * gaps.min()
    assert np.allclose(times, frame_times(20, 30, vfr=True), atol=1e-3)
    cfr = np.diff([float(f.time) for f in decode(write_video(tmp_path / "c.mp4", TWO).path)])
    assert np.allclose(cfr, 1 / 30, atol=1e-4)
    with pytest.raises(ValueError):
        write_video(tmp_path / "vfr.avi", TWO, codec="mpeg4", vfr=True)


def test_gop_and_bframes(tmp_path, cuts_video):
    v = write_video(tmp_path / "gop.mp4", [*TWO, *TWO], gop=8, bframes=0)
    assert [i for i, f in enumerate(decode(v.path)) if f.key_frame] == [0, 8, 16, 24, 32]
    with av.open(v.path) as c:
        assert all(p.pts == p.dts for p in c.demux(video=0) if p.size)
    with av.open(cuts_video.path) as c:  # written with bframes=2: decode order != display
        assert any(p.pts != p.dts for p in c.demux(video=0) if p.size)


def test_x264_params_reach_the_encoder(tmp_path):
    # keyint=7 instead of the default 250: keyframes every 7 frames
    v = write_video(tmp_path / "k.mp4", [*TWO, *TWO], bframes=0,
                    x264_params="keyint=7:scenecut=0")
    assert [i for i, f in enumerate(decode(v.path)) if f.key_frame] == [0, 7, 14, 21, 28, 35]
    with pytest.raises(ValueError, match="libx264"):
        write_video(tmp_path / "k.webm", TWO, codec="libvpx-vp9", x264_params="keyint=12")


def test_audio_tracks(tmp_path):
    v = write_video(tmp_path / "av.mp4", TWO, audio=True)
    with av.open(v.path) as c:
        assert [s.type for s in c.streams] == ["video", "audio"]
        a = c.streams.audio[0]
        assert a.codec_context.name == "aac"
        assert abs(float(a.duration * a.time_base) - 20 / 30) < 0.05
    webm = write_video(tmp_path / "av.webm", TWO, codec="libvpx-vp9", audio=True)
    with av.open(webm.path) as c:  # WebM cannot carry AAC: Opus there
        assert [s.codec_context.name for s in c.streams] == ["vp9", "opus"]
    p = write_audio_only(tmp_path / "a.m4a", seconds=1.0)
    with av.open(p) as c:
        assert not c.streams.video and c.streams.audio[0].codec_context.name == "aac"
        assert abs(float(c.duration / av.time_base) - 1.0) < 0.1


def test_same_input_same_bytes(tmp_path):
    a = write_video(tmp_path / "a.mp4", TWO).path
    b = write_video(tmp_path / "b.mp4", TWO).path
    assert Path(a).read_bytes() == Path(b).read_bytes()


# --- broken files and corpus ---------------------------------------------------------------


def test_broken_files_fail_as_intended(tmp_path):
    paths = write_broken(tmp_path)
    assert set(paths) == {"zero_byte", "text", "no_moov", "cut_payload", "garbage_middle",
                          "audio_only"}
    assert Path(paths["zero_byte"]).stat().st_size == 0
    for name in ("zero_byte", "text", "no_moov"):
        with pytest.raises(av.error.InvalidDataError):
            av.open(paths[name])
    with av.open(paths["cut_payload"]) as c:
        expected, got = c.streams.video[0].frames, 0
        try:
            for _ in c.decode(video=0):
                got += 1
        except av.error.FFmpegError:
            pass
    assert expected == 90 and 0 < got < expected
    with av.open(paths["garbage_middle"]) as c:
        assert c.streams.video[0].frames == 90  # moov intact
        frames: list[np.ndarray] = []
        try:
            for f in c.decode(video=0):
                frames.append(f.to_ndarray(format="rgb24"))
            damaged = any(psnr(f, render_frame(_BROKEN, i, W, H)) < 30
                          for i, f in enumerate(frames))
        except av.error.FFmpegError:
            damaged = True
    assert damaged and len(frames) > 10
    with av.open(paths["audio_only"]) as c:
        assert not c.streams.video and len(c.streams.audio) == 1
    again = write_broken(tmp_path / "again")
    for name, p in paths.items():
        assert Path(p).read_bytes() == Path(again[name]).read_bytes(), name


def test_make_corpus(tmp_path):
    paths = make_corpus(tmp_path, seconds=12, videos=3, width=160, height=96, fps=15,
                        with_duplicate=True)
    names = [Path(p).name for p in paths]
    assert names == ["video_000.mp4", "video_001.mp4", "café clip 01.mp4",
                     "video_000_small.mp4"]
    counts = {}
    for p in paths:
        with av.open(p) as c:
            s = c.streams.video[0]
            counts[Path(p).name] = (s.frames, s.width, s.height)
    assert sum(counts[n][0] for n in names[:3]) == 12 * 15
    assert counts["video_000_small.mp4"] == (counts["video_000.mp4"][0], 80, 48)
    means = [luma(f.to_ndarray(format="rgb24")).mean() for f in decode(paths[1])]
    assert min(means) < 15 and max(means) > 60  # video 1 holds the dark shot


def test_preset_reaches_the_encoder(tmp_path):
    """``ultrafast`` (the default) writes no B-frames; ``veryfast`` writes them, as most
    footage has, and every frame is still there."""
    fast = write_video(tmp_path / "u.mp4", [*TWO, *TWO])
    typical = write_video(tmp_path / "v.mp4", [*TWO, *TWO], preset="veryfast")
    kinds = {}
    for name, v in (("ultrafast", fast), ("veryfast", typical)):
        with av.open(v.path) as c:
            kinds[name] = {int(f.pict_type) for f in c.decode(video=0)}
    b = int(av.video.frame.PictureType.B)
    assert b not in kinds["ultrafast"] and b in kinds["veryfast"]
    assert len(decode(typical.path)) == len(decode(fast.path)) == 40
