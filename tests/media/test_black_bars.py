"""Letterbox and pillarbox bars: the picture inside them is found, and brightness, sharpness,
motion and camera motion are measured there, not on the bars."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from clipfactory.config import AnalysisConfig, Config, FilterConfig
from clipfactory.filters import ClipSignals, build_filters, first_rejection
from clipfactory.media.analyse import analyse
from clipfactory.media.framesignals import black_bars
from clipfactory.media.motion import classify_clip
from clipfactory.media.probe import probe
from clipfactory.testing.camera import write_camera_move
from clipfactory.testing.synth import ShotSpec, render_frame


def _frames(n: int, h: int, w: int, scale: float = 1.0, kind: str = "texture"
            ) -> list[np.ndarray]:
    shots = [ShotSpec(n, kind, seed=1)]
    return [(render_frame(shots, i, w, h).astype(np.float32) * scale).astype(np.uint8)
            for i in range(n)]


def _boxed(frames: list[np.ndarray], h: int, w: int) -> list[np.ndarray]:
    """``frames`` in the middle of a black ``h`` x ``w`` frame."""
    fh, fw = frames[0].shape[:2]
    y0, x0 = (h - fh) // 2, (w - fw) // 2
    out = []
    for f in frames:
        b = np.zeros((h, w, 3), np.uint8)
        b[y0:y0 + fh, x0:x0 + fw] = f
        out.append(b)
    return out


def _write(path: Path, frames: list[np.ndarray], codec: str = "libx264") -> str:
    h, w = frames[0].shape[:2]
    with av.open(str(path), "w") as out:
        s = out.add_stream(codec, rate=30, options={"crf": "18"} if codec == "libx264" else {
            "b": "0", "crf": "18", "deadline": "realtime", "cpu-used": "8"})
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        for i, f in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(f, format="rgb24")
            frame.pts = i
            out.mux(s.encode(frame))
        out.mux(s.encode(None))
    return str(path)


def _verdict(path: str) -> tuple[str | None, float, object]:
    info = probe(path)
    sig = analyse(info, AnalysisConfig(gpu="never"))
    clip = ClipSignals(sig.brightness, sig.sharpness, sig.motion, info.width, info.height, 16.0,
                       0.1, 0.01)  # camera and object motion: a moving shot
    return first_rejection(build_filters(FilterConfig()), clip), float(sig.brightness.mean()), sig


def test_the_picture_inside_symmetric_bars_and_nothing_else():
    g = np.full((4, 90, 160), 100.0, np.float32)
    letter, pillar, dark_sky, black = g.copy(), g.copy(), g.copy(), np.zeros_like(g)
    letter[:, :12], letter[:, -12:] = 16, 16  # 2.39:1 in 16:9
    pillar[:, :, :20], pillar[:, :, -21:] = 0, 0  # 4:3 in 16:9, a pixel off centre
    dark_sky[:, :30] = 10  # one dark side: picture, not a bar
    assert black_bars(letter) == (12, 78, 0, 160)
    assert black_bars(pillar) == (0, 90, 20, 139)
    assert black_bars(dark_sky) == (0, 90, 0, 160)
    assert black_bars(black) is None  # no picture yet (a fade from black): undecided
    thin = g.copy()
    thin[:, :, :70], thin[:, :, -70:] = 0, 0  # would leave a sliver: not bars
    assert black_bars(thin) == (0, 90, 0, 160)


@pytest.mark.parametrize("box", [(180, 426), (240, 320)], ids=["pillarbox", "letterbox"])
def test_a_blurred_shot_in_bars_is_still_blurred(tmp_path, box):
    """The bars' edge dominated the Laplacian: an out-of-focus shot dropped as blurry
    full-frame passed once boxed (median sharpness 21.6 -> 515)."""
    frames = _frames(40, 180, 320, kind="blurry")
    bare, _, _ = _verdict(_write(tmp_path / "bare.mp4", frames))
    boxed, _, sig = _verdict(_write(tmp_path / "boxed.mp4", _boxed(frames, *box)))
    assert bare == boxed == "blurry"
    assert sig.picture is not None


def test_a_dim_pillarboxed_phone_shot_is_measured_on_its_picture(tmp_path):
    """A 9:16 evening shot (mean luma ~41) is kept; pillarboxed into 16:9 its bars made it
    three times darker (13) and it was dropped as too_dark."""
    frames = _frames(40, 180, 102, scale=0.5)
    bare, b_bare, _ = _verdict(_write(tmp_path / "bare.mp4", frames))
    boxed, b_boxed, sig = _verdict(_write(tmp_path / "boxed.mp4", _boxed(frames, 180, 320)))
    assert bare is None and boxed is None
    assert abs(b_boxed - b_bare) < 3
    top, bottom, left, right = sig.picture
    assert (top, bottom) == (0.0, 1.0) and abs(left - 109 / 320) < 0.02 \
        and abs(right - 211 / 320) < 0.02


@pytest.mark.parametrize("codec,ext", [("libx264", "mp4"), ("libvpx-vp9", "webm")])
def test_a_pan_in_a_pillarbox_is_a_pan_at_the_picture_s_speed(tmp_path, codec, ext):
    """H.264's bars export still vectors: a pan in a 9:16 pillarbox read as static (the bars
    won the robust fit); by phase correlation (VP9) it read at half its speed."""
    base = write_camera_move(tmp_path / f"pan.{ext}", "pan_right", speed=0.3, seconds=3,
                             width=102, height=180, codec=codec)
    with av.open(str(base)) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    path = _write(tmp_path / f"boxed.{ext}", _boxed(frames, 180, 320), codec)
    got = {}
    for name, p in (("bare", str(base)), ("boxed", path)):
        sig = analyse(probe(p), AnalysisConfig(gpu="never"))
        got[name] = classify_clip(sig.camera[1:], sig.fps, sig.times[1:])
    assert got["bare"].label == got["boxed"].label == "pan_right"
    assert abs(got["boxed"].camera - got["bare"].camera) < 0.06  # a share of the picture


def test_black_bars_off_measures_the_whole_frame(tmp_path):
    frames = _boxed(_frames(40, 180, 102, scale=0.5), 180, 320)
    path = _write(tmp_path / "boxed.mp4", frames)
    sig = analyse(probe(path), AnalysisConfig(gpu="never", black_bars=False))
    assert sig.picture is None and float(sig.brightness.mean()) < 20
    assert Config.model_validate({"analysis": {"black_bars": False}}).analysis.black_bars is False


def test_each_clip_says_where_its_picture_is(tmp_path):
    """The clips keep their bars (frame-exact); the index says where the picture is, so a
    loader can crop to it."""
    import json

    import pyarrow.parquet as pq

    from clipfactory.pipeline import run

    src = tmp_path / "in"
    src.mkdir()
    _write(src / "boxed.mp4", _boxed(_frames(90, 180, 240), 180, 320))
    _write(src / "bare.mp4", _frames(90, 180, 320))
    run(src, tmp_path / "out", Config(workers=1))
    extra = {r["source"].rsplit("/", 1)[-1]: json.loads(r["extra"])
             for r in pq.read_table(tmp_path / "out" / "index.parquet").to_pylist()}
    assert "picture" not in extra["bare.mp4"]
    pic = extra["boxed.mp4"]["picture"]
    assert (pic["top"], pic["bottom"]) == (0.0, 1.0)
    assert abs(pic["left"] - 40 / 320) < 0.02 and abs(pic["right"] - 280 / 320) < 0.02
