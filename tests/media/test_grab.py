"""grab_frames: exact frames at given times, whichever way it reaches them (seeking to a
keyframe between two targets, or decoding on), and the report's cheaper preview decode."""

from __future__ import annotations

import av
import numpy as np
import pytest
from av.video.reformatter import Interpolation

from clipfactory.media.grab import grab_frames
from clipfactory.testing.compare import psnr
from clipfactory.testing.synth import ShotSpec, write_video

SHOTS = [ShotSpec(90, "texture", 21), ShotSpec(90, "texture", 22)]


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, list[np.ndarray]]:
    """A moving texture, keyframes every 30 frames, 2 B-frames; every frame at 160 px."""
    path = str(tmp_path_factory.mktemp("grab") / "v.mp4")
    write_video(path, SHOTS, gop=30, bframes=2)
    with av.open(path) as c:
        frames = [f.reformat(width=160, height=90, format="rgb24",
                             interpolation=Interpolation.AREA).to_ndarray()
                  for f in c.decode(video=0)]
    return path, frames


def test_frames_are_exact_whether_it_seeks_or_decodes_on(video) -> None:
    path, frames = video
    # 1 s apart (under the 3 s seek gap): 40 -> 70 crosses the keyframe at 60 (a seek),
    # 70 -> 85 does not (decode on); 179 is the last frame
    idx = [5, 40, 70, 85, 100, 179]
    got = grab_frames(path, [i / 30 for i in idx], max_side=160)
    for i, g in zip(idx, got, strict=True):
        assert g is not None and np.array_equal(g, frames[i]), i
    assert grab_frames(path, [7.0], max_side=160) == [None]  # past the end


def test_preview_frames_are_close_to_the_exact_ones(video) -> None:
    path, frames = video
    idx = [0, 29, 59, 89, 119, 149, 179]  # the ends of GOPs: where drift is largest
    got = grab_frames(path, [i / 30 for i in idx], max_side=160, preview=True)
    for i, g in zip(idx, got, strict=True):
        assert g is not None and g.shape == frames[i].shape
        assert psnr(g, frames[i]) >= 35, i
