"""A small corpus whose run drops clips for several reasons (too dark, static, too short, near
duplicate) and fails one input, shared by the report tests."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import pytest

from clipfactory.testing.synth import ShotSpec, write_video

W, H = 256, 144
SHOTS = [
    ShotSpec(75, "texture", 1),
    ShotSpec(60, "dark", 2),
    ShotSpec(60, "static", 3),
    ShotSpec(70, "texture", 4),
    ShotSpec(30, "texture", 5),  # too short
]


def _half(src: str, dst: str) -> None:
    """Decode ``src`` and re-encode it at half size: a near duplicate."""
    with av.open(src) as i, av.open(dst, "w") as o:
        s = o.add_stream("libx264", rate=30)
        s.width, s.height, s.pix_fmt = W // 2, H // 2, "yuv420p"
        s.options = {"crf": "24", "preset": "ultrafast"}
        for k, f in enumerate(i.decode(video=0)):
            g = f.reformat(width=W // 2, height=H // 2, format="yuv420p")
            g.pts, g.time_base = k, Fraction(1, 30)
            o.mux(s.encode(g))
        o.mux(s.encode(None))


@pytest.fixture(scope="session")
def report_corpus(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("report_corpus")
    main = write_video(d / "main.mp4", SHOTS, width=W, height=H, gop=30)
    _half(main.path, str(d / "copy small.mp4"))
    (d / "broken.mp4").write_text("not a video at all")
    return d
