"""Anamorphic sources (PAL/NTSC DV and DVD, HDV 1440x1080): clips keep the shape of their
pixels, whichever way they are cut, and models and people see the picture as it is shown."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from clipfactory.annotate.frames import sample_frames
from clipfactory.config import Config, CutConfig
from clipfactory.media.cut import cut_clips
from clipfactory.media.grab import grab_frames
from clipfactory.pipeline import run
from clipfactory.records import Span
from clipfactory.sinks.parts import read_index
from clipfactory.stages.base import ClipInput

W, H, N = 352, 288, 75
WIDE = Fraction(64, 45)  # PAL 16:9: 352x288 shown as 500x288


def _write(path: Path, sar: Fraction | None, fmt: str | None = None,
           rotation: int = 0) -> list[int]:
    """A moving picture whose pixels are ``sar`` wide (None: square); GOPs of 25 frames with
    B-frames, so a clip starting mid-GOP has re-encoded frames. Returns the frames' pts."""
    rng = np.random.default_rng(3)
    base = rng.integers(0, 255, (H // 8, 2 * W // 8, 3), dtype=np.uint8).repeat(8, 0).repeat(8, 1)
    with av.open(str(path), "w", format=fmt) as out:
        s = out.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = W, H, "yuv420p"
        if sar:
            s.codec_context.sample_aspect_ratio = sar
        s.options = {"g": "25", "bf": "2", "crf": "20", "x264-params": "scenecut=0"}
        if rotation:
            s.set_display_rotation(rotation)
        for i in range(N):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(base[:, 4 * i:4 * i + W]),
                                               format="rgb24")
            out.mux(s.encode(frame))
        out.mux(s.encode(None))
    with av.open(str(path)) as c:
        return [f.pts for f in c.decode(video=0)]


def _aspects(path: str) -> tuple[Fraction | None, list[Fraction | None]]:
    """The container's pixel aspect, and each decoded frame's as its bitstream says it."""
    with av.open(path) as c:
        s = c.streams.video[0]
        per_frame = []
        for packet in c.demux(s):
            for _ in s.codec_context.decode(packet):
                per_frame.append(s.codec_context.sample_aspect_ratio)
        return s.sample_aspect_ratio, per_frame


@pytest.mark.parametrize("fmt", [None, "mpegts"])
def test_every_cut_keeps_the_pixel_shape_on_every_frame(tmp_path: Path, fmt: str | None) -> None:
    src = tmp_path / ("dv.ts" if fmt else "dv.mp4")
    pts = _write(src, WIDE, fmt)
    span = Span(7, 61)  # starts and ends mid-GOP: re-encoded head and tail around copied GOPs
    cases = {
        "smart": (CutConfig(), 0, WIDE),
        "reencode": (CutConfig(deinterlace="always"), 0, WIDE),  # a full re-encode
        "transcode": (CutConfig(mode="transcode", max_width=176), 0, WIDE),  # scaled down
        "turned": (CutConfig(mode="transcode"), 90, 1 / WIDE),  # rotated: pixels turn too
    }
    for name, (cfg, rotation, want) in cases.items():
        out = tmp_path / f"{name}.mp4"
        res = cut_clips(str(src), [span], [str(out)], frame_pts=pts, cfg=cfg,
                        rotation=rotation)[0]
        assert res.error is None and res.frames == span.num_frames, (name, res)
        if name == "smart":
            assert res.method == "smart" and 0 < res.copied_frames < res.frames, res
        if name == "transcode":
            assert (res.width, res.height) == (176, 144), res
        stream_sar, frames = _aspects(str(out))
        assert stream_sar == want, (name, stream_sar)
        assert len(frames) == span.num_frames and set(frames) == {want}, (name, frames)


def test_square_pixels_stay_unmarked(tmp_path: Path) -> None:
    src = tmp_path / "square.mp4"
    pts = _write(src, None)
    out = tmp_path / "clip.mp4"
    res = cut_clips(str(src), [Span(7, 61)], [str(out)], frame_pts=pts,
                    cfg=CutConfig(mode="transcode"))[0]
    assert res.error is None
    stream_sar, frames = _aspects(str(out))
    assert not stream_sar and not any(frames), (stream_sar, frames)


def test_pictures_for_models_and_people_are_shown_shape(tmp_path: Path) -> None:
    src = tmp_path / "dv.mp4"
    _write(src, WIDE)
    shown = W * WIDE / H  # 16:9
    grabbed = grab_frames(str(src), [0.5, 2.0], max_side=320)
    for rgb in grabbed:
        assert rgb is not None and rgb.shape[1] == 320, rgb.shape
        assert abs(rgb.shape[1] / rgb.shape[0] - shown) < 0.02, rgb.shape
    sampled = sample_frames(ClipInput("c", str(src), num_frames=N, fps=25.0), 3, short_side=144)
    assert len(sampled) == 3
    for rgb in sampled:
        assert rgb.shape[0] == 144 and abs(rgb.shape[1] / 144 - shown) < 0.02, rgb.shape
    # the stretch is a resampling of the stored picture, not a crop: the left and right
    # edges of the shown picture are the stored picture's
    with av.open(str(src)) as c:
        stored = next(c.decode(video=0)).to_ndarray(format="rgb24").astype(float)
    first = grab_frames(str(src), [0.0], max_side=500)[0].astype(float)
    assert first.shape[:2] == (288, 500)
    for col in (12, W // 2 + 4, W - 5):  # the middles of 8-pixel blocks
        shown_col = round((col + 0.5) * 500 / W - 0.5)
        assert np.abs(stored[:, col] - first[:, shown_col]).mean() < 12, col


def test_the_index_and_the_card_name_anamorphic_clips(tmp_path: Path) -> None:
    media = tmp_path / "media"
    media.mkdir()
    _write(media / "dv.mp4", WIDE)
    _write(media / "web.mp4", None)
    out = tmp_path / "out"
    run(media, out, Config(skip=["dedup", "filters"]))
    rows = read_index(out).to_pylist()
    by_source = {Path(r["source"]).name: r for r in rows}
    assert by_source["dv.mp4"]["sar"] == "64:45" and by_source["web.mp4"]["sar"] is None, rows
    card = (out / "README.md").read_text()
    assert "352x288 (SAR 64:45)" in card and "| 352x288 |" in card, card


def test_a_shape_only_the_container_gives_is_kept(tmp_path: Path) -> None:
    """An MP4 ``pasp`` box (or a Matroska display size) over a bitstream that says nothing:
    what an editor's or a remuxer's aspect override leaves."""
    square = tmp_path / "square.mp4"
    _write(square, None)
    src = tmp_path / "boxed.mp4"
    with av.open(str(square)) as i, av.open(str(src), "w") as o:
        ost = o.add_stream_from_template(i.streams.video[0])
        ost.codec_context.sample_aspect_ratio = WIDE
        for packet in i.demux(i.streams.video[0]):
            if packet.dts is not None:
                packet.stream = ost
                o.mux(packet)
    with av.open(str(src)) as c:
        s = c.streams.video[0]
        assert s.sample_aspect_ratio == WIDE and not s.codec_context.sample_aspect_ratio
        pts = [f.pts for f in c.decode(s)]
    for name, cfg in (("smart", CutConfig()), ("keyframe", CutConfig(mode="keyframe")),
                      ("transcode", CutConfig(mode="transcode"))):
        out = tmp_path / f"{name}.mp4"
        res = cut_clips(str(src), [Span(7, 61)], [str(out)], frame_pts=pts, cfg=cfg)[0]
        assert res.error is None, res
        stream_sar, _ = _aspects(str(out))
        assert stream_sar == WIDE, (name, stream_sar)


@pytest.mark.parametrize("mode", ["keyframe", "exact"])
def test_a_turned_anamorphic_clip_has_its_aspect_turned_too(tmp_path: Path, mode: str) -> None:
    """A phone-turned anamorphic source: `width`, `height` and `sar` in the index describe the
    picture as shown, in both modes (keyframe mode kept the stored `sar` with the turned size:
    shown square instead of 9:16)."""
    media = tmp_path / "media"
    media.mkdir()
    _write(media / "dv.mp4", WIDE, rotation=90)
    cfg = Config(skip=["dedup", "filters"])
    cfg.cut.mode = mode
    run(media, tmp_path / "out", cfg)
    rows = read_index(tmp_path / "out").to_pylist()
    assert rows
    for r in rows:
        assert (r["width"], r["height"]) == (H, W)
        assert r["sar"] == "45:64"  # 288 x 45/64 by 352: 9:16, the 500x288 picture turned
