"""Interlaced sources (camcorder 1080i, broadcast, DV) become progressive clips, frame for frame."""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pytest

from clipfactory.config import Config, CutConfig
from clipfactory.media.cut import cut_clips
from clipfactory.pipeline import run
from clipfactory.records import Span
from clipfactory.sinks.parts import read_index
from clipfactory.testing.compare import psnr

W, H, STEP = 320, 180, 12  # the picture pans STEP pixels a frame, STEP/2 a field


def _wide() -> np.ndarray:
    """Random 4-pixel-wide stripes, shaded top to bottom: a step of a frame shows other
    stripes, and lines change smoothly downwards, as a deinterlacer's rebuilt lines assume."""
    stripes = np.random.default_rng(9).integers(40, 216, (3 * W // 4, 3)).repeat(4, axis=0)
    shade = np.linspace(0.7, 1.0, H)[:, None, None]
    return (stripes[None] * shade).astype(np.uint8)


_WIDE = _wide()


def _moment(x: int) -> np.ndarray:
    x %= 2 * W
    return _WIDE[:, x:x + W]


def _write(path: Path, frames: int, codec: str) -> None:
    """A pan shot as an interlaced camera records it: in each frame, the lines of the field
    shown first are one moment, the other field's lines the moment half a frame later. x264
    writes top field first (as HDV and AVCHD cameras); PyAV's MPEG-2 bottom field first (as
    DV)."""
    first = 0 if codec == "libx264" else 1  # the first field's first line
    with av.open(str(path), "w") as out:
        s = out.add_stream(codec, rate=30)
        s.width, s.height, s.pix_fmt = W, H, "yuv420p"
        s.options = ({"x264-params": "interlaced=1:tff=1:keyint=30:scenecut=0", "crf": "16"}
                     if codec == "libx264" else {"flags": "+ildct+ilme", "top": "1",
                                                 "qscale": "2", "g": "15"})
        for i in range(frames):
            img = _moment(STEP * i).copy()
            img[1 - first::2] = _moment(STEP * i + STEP // 2)[1 - first::2]
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
            frame.pts = i
            out.mux(s.encode(frame))
        out.mux(s.encode(None))


def _luma(rgb: np.ndarray) -> np.ndarray:
    return (rgb @ np.array([0.299, 0.587, 0.114])).round().astype(np.uint8)


def _combing(gray: np.ndarray) -> float:
    """How far each line is from the mean of its neighbours: fields from two moments make
    every other line jump."""
    g = gray.astype(np.int32)
    return float(np.abs(g[1:-1] - (g[:-2] + g[2:]) // 2).mean())


def _frames(path: str) -> tuple[list[np.ndarray], list[int], list[bool]]:
    with av.open(path) as c:
        frames = list(c.decode(video=0))
    return ([f.to_ndarray(format="rgb24") for f in frames], [f.pts for f in frames],
            [f.interlaced_frame for f in frames])


@pytest.mark.parametrize(("name", "codec"), [("cam.mp4", "libx264"), ("tape.mpg", "mpeg2video")])
def test_interlaced_frames_come_out_progressive_one_for_one(tmp_path: Path, name: str,
                                                            codec: str) -> None:
    src = tmp_path / name
    _write(src, 300, codec)
    rgb, pts, fields = _frames(str(src))
    assert len(rgb) == 300 and all(fields)
    source_combing = np.mean([_combing(f.mean(axis=2)) for f in rgb])
    # the gap between the spans is over 2 s: the second one is reached by a seek
    spans = [Span(0, 40), Span(45, 100), Span(200, 290)]
    outs = [str(tmp_path / f"c{i}.mp4") for i in range(len(spans))]
    results = cut_clips(str(src), spans, outs, frame_pts=pts, cfg=CutConfig(), interlaced=True)
    for span, res in zip(spans, results, strict=True):
        assert res.error is None and res.fallback == "interlaced" and res.deinterlaced, res
        clip, _, clip_fields = _frames(res.path)
        assert len(clip) == span.num_frames and not any(clip_fields)
        combing = np.mean([_combing(f.mean(axis=2)) for f in clip])
        assert combing < 0.6 * source_combing, (combing, source_combing)
        for k in range(0, span.num_frames, 7):
            i = span.start_frame + k
            # frame i shows the moment of the field shown first (the deinterlacer keeps that
            # field and rebuilds the other), not the other field's, nor the frame before or
            # after. In luma: 4:2:0 chroma of a frame mixes its two fields.
            own = psnr(_luma(clip[k]), _luma(_moment(STEP * i)))
            assert own > 26, (span, k, own)  # a wrong moment is about 17 dB
            for x in (-STEP, -STEP // 2, STEP // 2, STEP):
                assert psnr(_luma(clip[k]), _luma(_moment(STEP * i + x))) < own - 10, (span, k, x)
    kept = cut_clips(str(src), spans[:1], [str(tmp_path / "kept.mp4")], frame_pts=pts,
                     cfg=CutConfig(deinterlace="never"), interlaced=True)[0]
    clip, _, _ = _frames(kept.path)
    assert np.mean([_combing(f.mean(axis=2)) for f in clip]) > 0.8 * source_combing


def test_a_run_finds_an_interlaced_source_and_deinterlaces_its_clips(tmp_path: Path) -> None:
    media = tmp_path / "media"
    media.mkdir()
    _write(media / "cam.mp4", 90, "libx264")
    run(media, tmp_path / "out", Config(skip=["dedup", "filters"]))
    rows = read_index(tmp_path / "out").to_pylist()
    assert rows and all(json.loads(r["extra"])["cut"]["fallback"] == "interlaced"
                        for r in rows), rows
    # transcode mode has no fallback to name: the record says so itself
    cfg = Config.model_validate({"skip": ["dedup", "filters"], "cut": {"mode": "transcode"}})
    run(media, tmp_path / "out2", cfg)
    rows = read_index(tmp_path / "out2").to_pylist()
    assert rows and all(json.loads(r["extra"])["cut"]["deinterlaced"] for r in rows), rows
