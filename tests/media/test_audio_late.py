"""Audio that starts after the video (a browser or webcam recording's Opus track 0.1 s late):
a clip re-encoded in full still carries it. Before, the re-encoder asked for the first audio
packet before any had come and the clip was dropped (`encode_failed: ValueError: min() arg
is an empty sequence`)."""

from __future__ import annotations

import av
import pytest

from clipfactory.config import CutConfig
from clipfactory.media.cut import cut_clips
from clipfactory.records import Span
from clipfactory.testing.synth import ShotSpec, mux_with_audio, tone_frames

LATE_S = 0.1


def _write(path):
    shots = [ShotSpec(75, seed=406), ShotSpec(75, seed=407)]
    with av.open(str(path), "w") as out:
        vs = out.add_stream("libx264", rate=30, options={"preset": "ultrafast"})
        vs.width, vs.height, vs.pix_fmt = 160, 90, "yuv420p"
        vs.set_display_rotation(90)  # exact mode re-encodes a rotated source in full
        aus = out.add_stream("libopus", rate=48000, layout="mono")
        mux_with_audio(out, vs, aus, shots, 150, tone_frames(48000, 5, 960, start_s=LATE_S))


def _audio_s(path):
    with av.open(str(path)) as c:
        return sum(f.samples for f in c.decode(audio=0)) / 48000


@pytest.mark.parametrize("mode", ["exact", "transcode"])
def test_a_full_reencode_keeps_late_starting_opus_audio(tmp_path, mode):
    src = tmp_path / "late.mkv"
    _write(src)
    with av.open(str(src)) as c:
        pts = [f.pts for f in c.decode(video=0)]
    outs = [str(tmp_path / "a.mp4"), str(tmp_path / "b.mp4")]
    res = cut_clips(str(src), [Span(0, 75), Span(75, 150)], outs, frame_pts=pts,
                    rotation=90, cfg=CutConfig(mode=mode))
    for r in res:
        assert r.error is None, r.error
        assert r.method == ("reencode" if mode == "exact" else "transcode") and r.frames == 75
        assert r.audio
    # the first clip's audio starts 0.1 s in: it holds the rest of its 2.5 s
    assert _audio_s(outs[0]) == pytest.approx(2.5 - LATE_S, abs=0.05)
    assert _audio_s(outs[1]) == pytest.approx(2.5, abs=0.05)
