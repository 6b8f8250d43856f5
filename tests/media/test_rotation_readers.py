"""A phone's video cut in ``keyframe`` mode keeps its display matrix (the packets are copied,
the pixels stay as stored), while ``exact`` mode turns the pixels upright. Whatever reads the
clips for people and models (the frames of the embedding and caption stages, the report's
thumbnails) sees them upright either way."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from clipfactory.annotate.frames import sample_frames
from clipfactory.config import CutConfig
from clipfactory.media.cut import cut_clips
from clipfactory.media.grab import grab_frames
from clipfactory.media.probe import probe
from clipfactory.records import Span
from clipfactory.stages.base import ClipInput
from clipfactory.testing.synth import ShotSpec, write_video

W, H = 320, 176


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    err = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 99.0 if err == 0 else 10 * np.log10(255.0 ** 2 / err)


@pytest.mark.parametrize("rotation", [90, 270])
def test_clips_that_keep_the_display_matrix_are_read_upright(tmp_path: Path, rotation: int
                                                             ) -> None:
    src = tmp_path / "phone.mp4"
    write_video(src, [ShotSpec(90, "texture", 1)], width=W, height=H, rotation=rotation, gop=30)
    info = probe(str(src))
    assert info.rotation == rotation
    with av.open(str(src)) as c:
        pts = np.array([f.pts for f in c.decode(video=0)])
    clips = {}
    for mode in ("keyframe", "exact"):  # the span is whole GOPs: both cut the same frames
        out = tmp_path / f"{mode}.mp4"
        (r,) = cut_clips(str(src), [Span(30, 60)], [str(out)], frame_pts=pts,
                         rotation=info.rotation, cfg=CutConfig(mode=mode))
        assert (r.width, r.height) == (H, W)  # the shown size, recorded either way
        clips[mode] = out
    with av.open(str(clips["keyframe"])) as c:  # the matrix is kept, the pixels are as stored
        f = next(c.decode(video=0))
        assert (f.width, f.height, round(f.rotation) % 360) == (W, H, rotation)

    # the embedding and caption stages' frames
    seen = {m: sample_frames(ClipInput(m, str(p), num_frames=30, fps=30), 3, short_side=H)
            for m, p in clips.items()}
    for a, b in zip(seen["keyframe"], seen["exact"], strict=True):
        assert a.shape == b.shape == (W, H, 3)  # portrait, as the phone showed it
        assert _psnr(a, b) > 30  # the same picture, not a turned one

    # the report's thumbnails of kept clips (read from the clip, no rotation given)
    times = [0.0, 0.5, 0.9]
    grabbed = {m: grab_frames(str(p), times, max_side=W) for m, p in clips.items()}
    from_source = grab_frames(str(src), [1.0 + t for t in times], max_side=W,
                              rotation=info.rotation)
    for k, e, s in zip(grabbed["keyframe"], grabbed["exact"], from_source, strict=True):
        assert k is not None and e is not None and s is not None
        assert k.shape == e.shape == s.shape == (W, H, 3)
        assert _psnr(k, s) > 30 and _psnr(e, s) > 30
