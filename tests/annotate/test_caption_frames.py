"""Which frames of a clip a caption model is sent, and the times its windows claim."""

from __future__ import annotations

import av
import numpy as np
import pytest

from clipfactory.annotate.caption_frames import read_caption_frames, sample_plan
from clipfactory.stages.base import ClipInput
from clipfactory.testing.synth import ShotSpec, write_video


@pytest.mark.parametrize("fps", [30.0, 25.0, 4.0])
def test_windows_span_the_frames_they_hold(tmp_path, fps):
    """A 4 s clip at 25 fps. At ``fps: 30`` (above the clip's rate) several samples fell on
    one frame, windows were cut every 8 distinct frames, but timed as 8 samples at 30 fps:
    the last window said 3.20-3.47 s while its frames were 3.84-4.00 s."""
    path = tmp_path / "c.mp4"
    write_video(path, [ShotSpec(100, "texture", 1)], width=96, height=64, fps=25)
    clip = ClipInput("c", str(path), num_frames=100, fps=25.0)
    cf = read_caption_frames(clip, fps, 8, 96)
    idx, windows, _ = sample_plan(100, 25.0, fps, 8)
    assert len(idx) == len(set(idx)) == round(4.0 * min(fps, 25.0))
    assert len(cf.windows) == len(windows) and cf.fps == min(fps, 25.0)
    for w, ix in zip(cf.windows, windows, strict=True):
        assert len(w.frames) == len(ix) <= 8
        assert all(w.start_s <= i / 25 < w.end_s for i in ix), (w.start_s, w.end_s, ix)
    assert cf.windows[0].start_s == 0.0 and cf.windows[-1].end_s == 4.0
    assert all(a.end_s == b.start_s for a, b in zip(cf.windows, cf.windows[1:], strict=False))
    # the frames sent are the clip's frames at those indices (96 px: not scaled)
    with av.open(str(path)) as c:
        decoded = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    for w, ix in zip(cf.windows, windows, strict=True):
        assert all(np.array_equal(f, decoded[i]) for f, i in zip(w.frames, ix, strict=True))
