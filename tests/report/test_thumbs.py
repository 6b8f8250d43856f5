"""Thumbnail strips hold exactly the first, middle and last frame of a span: every frame of the
generated video has its own flat colour, so a tile's colour says which frame it is."""

from __future__ import annotations

import io
import tarfile
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from clipfactory.report.thumbs import (
    GAP,
    THUMB_DIR,
    TILE,
    ThumbRequest,
    encode_jpeg,
    make_thumbs,
    prune_thumbs,
    span_times,
    thumb_name,
)

FPS = 30


def colour(i: int) -> tuple[int, int, int]:
    """Frame ``i``'s colour: neighbours differ by 20 levels in red (or green at a wrap)."""
    return 40 + 20 * (i % 10), 40 + 20 * ((i // 10) % 10), 128


def write_colours(path: Path, frames: range, width: int = 320, height: int = 180) -> str:
    with av.open(str(path), "w") as out:
        s = out.add_stream("libx264", rate=FPS)
        s.width, s.height, s.pix_fmt = width, height, "yuv420p"
        s.options = {"crf": "8", "preset": "ultrafast", "g": "30", "keyint_min": "30",
                     "sc_threshold": "0"}
        for k, i in enumerate(frames):
            img = np.empty((height, width, 3), np.uint8)
            img[:] = colour(i)
            f = av.VideoFrame.from_ndarray(img, "rgb24")
            f.pts, f.time_base = k, Fraction(1, FPS)
            out.mux(s.encode(f))
        out.mux(s.encode(None))
    return str(path)


def read_strip(path: Path) -> np.ndarray:
    with av.open(str(path)) as c:
        return next(c.decode(video=0)).to_ndarray(format="rgb24")


def tiles(strip: np.ndarray) -> list[np.ndarray]:
    w = (strip.shape[1] - 2 * GAP) // 3
    return [strip[:, k * (w + GAP):k * (w + GAP) + w] for k in range(3)]


def assert_frames(strip: np.ndarray, expected: list[int]) -> None:
    for tile, i in zip(tiles(strip), expected, strict=True):
        got = tile[4:-4, 4:-4].reshape(-1, 3).mean(axis=0)
        assert np.abs(got - colour(i)).max() < 8, (i, got, colour(i))


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> str:
    return write_colours(tmp_path_factory.mktemp("thumbs") / "colours.mp4", range(150))


def test_span_times_point_at_first_middle_and_last_frame():
    assert span_times(1.0, 30, 90, 3.0) == pytest.approx((1.0, 2.0, 3.0 - 1 / 30))
    assert span_times(0.0, 0, 1, 1 / 30) == (0.0, 0.0, 0.0)


def test_strip_from_a_source_span_seeks_to_the_right_frames(source, tmp_path):
    # span [10, 130): frames 10, 70, 129; the targets are 2 s apart, past one GOP each
    req = ThumbRequest("c1", source, span_times(10 / FPS, 10, 130, 130 / FPS))
    thumb = make_thumbs(tmp_path, [req])["c1"]
    assert thumb.file == f"{THUMB_DIR}/{thumb_name('c1')}" and not thumb.cached
    data = (tmp_path / thumb.file).read_bytes()
    assert data[:2] == b"\xff\xd8"  # a JPEG
    strip = read_strip(tmp_path / thumb.file)
    assert strip.shape == (90, 3 * TILE + 2 * GAP, 3)  # 320x180 scaled to 160x90
    assert_frames(strip, [10, 70, 129])


def test_strip_from_a_shard_member(tmp_path):
    # a kept clip is its own file inside the shard: frames 10..69 of the source, from pts 0
    clip = write_colours(tmp_path / "clip.mp4", range(10, 70))
    shard = tmp_path / "shard-000000.tar"
    with tarfile.open(shard, "w") as t:
        for name, data in (("k1.json", b"{}"), ("k1.mp4", Path(clip).read_bytes())):
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            t.addfile(ti, io.BytesIO(data))
    req = ThumbRequest("k1", str(shard), span_times(0.0, 0, 60, 2.0), member="k1.mp4")
    missing = ThumbRequest("k2", str(shard), span_times(0.0, 0, 60, 2.0), member="k2.mp4")
    out = make_thumbs(tmp_path, [req, missing])
    assert_frames(read_strip(tmp_path / out["k1"].file), [10, 40, 69])
    assert out["k2"].file is None and out["k2"].why == "not in its shard"


def test_cache_placeholders_and_prune(source, tmp_path):
    req = ThumbRequest("c1", source, span_times(0.0, 0, 30, 1.0))
    gone = ThumbRequest("c2", None, (0.0, 0.0, 0.0), unavailable="source gone")
    first = make_thumbs(tmp_path, [req, gone])
    path = tmp_path / first["c1"].file
    mtime = path.stat().st_mtime_ns
    again = make_thumbs(tmp_path, [req, gone])
    assert again["c1"].cached and path.stat().st_mtime_ns == mtime
    assert again["c2"].file is None and again["c2"].why == "source gone"
    remade = make_thumbs(tmp_path, [req], cache=False)
    assert not remade["c1"].cached
    stale = tmp_path / THUMB_DIR / thumb_name("old clip")
    stale.write_bytes(b"x")
    assert prune_thumbs(tmp_path, {first["c1"].file}) == 1
    assert not stale.exists() and path.exists()


def test_undecodable_source_gives_a_reason(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00" * 1000)
    out = make_thumbs(tmp_path, [ThumbRequest("b", str(bad), (0.0, 0.5, 1.0))])
    assert out["b"].file is None and out["b"].why.startswith("cannot read bad.mp4")


def test_encode_jpeg_round_trips_colours():
    img = np.zeros((16, 32, 3), np.uint8)
    img[:, :16] = (200, 30, 30)
    img[:, 16:] = (30, 30, 200)
    with av.open(io.BytesIO(encode_jpeg(img))) as c:
        back = next(c.decode(video=0)).to_ndarray(format="rgb24")
    assert back.shape == img.shape
    assert np.abs(back[4:12, 2:12].astype(int) - (200, 30, 30)).max() < 12
