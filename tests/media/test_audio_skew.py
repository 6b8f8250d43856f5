"""Audio stored behind its video in the file (a broadcast TS sends video ahead by the decoder's
buffer; a loose muxer): the clips still carry their whole audio. A fixed wait (1 s re-encoding,
2 s smart cut) cut them short in silence; the wait is now learned from the file (MuxLag), and
past its cap the clip says its audio was cut short."""

from __future__ import annotations

import av
import pytest

from clipfactory.config import CutConfig
from clipfactory.media.audio import AUDIO_CUT_SHORT, MuxLag
from clipfactory.media.cut import cut_clips
from clipfactory.records import Span
from clipfactory.testing.synth import ShotSpec, mux_with_audio, tone_frames


def _write(path, rotation=0):
    shots = [ShotSpec(90, seed=s) for s in (501, 502, 503)]
    with av.open(str(path), "w") as out:
        vs = out.add_stream("libx264", rate=30, options={"preset": "ultrafast"})
        vs.width, vs.height, vs.pix_fmt = 160, 90, "yuv420p"
        vs.codec_context.gop_size = 30
        if rotation:
            vs.set_display_rotation(rotation)
        aus = out.add_stream("aac", rate=48000, layout="mono")
        mux_with_audio(out, vs, aus, shots, 270, tone_frames(48000, 9, 1024))


def _skew(src, dst, seconds):
    """``src`` rewritten with its audio packets stored ``seconds`` after the video of the same
    time (the same packets and timestamps)."""
    with av.open(str(src)) as inp, av.open(str(dst), "w",
                                           options={"max_interleave_delta": "1"}) as out:
        packets = [p for p in inp.demux() if p.dts is not None]
        packets.sort(key=lambda p: float(p.dts * p.time_base)
                     + (seconds if p.stream.type == "audio" else 0))
        vs = out.add_stream_from_template(inp.streams.video[0])
        aus = out.add_stream_from_template(inp.streams.audio[0])
        for p in packets:
            p.stream = vs if p.stream.type == "video" else aus
            out.mux(p)


def _audio_s(path):
    with av.open(str(path)) as c:
        return sum(f.samples for f in c.decode(audio=0)) / 48000


def _cut(src, tmp_path, rotation):
    with av.open(str(src)) as c:
        pts = [f.pts for f in c.decode(video=0)]
    outs = [str(tmp_path / f"c{i}.mp4") for i in range(3)]
    res = cut_clips(str(src), [Span(0, 90), Span(90, 180), Span(180, 270)], outs,
                    frame_pts=pts, rotation=rotation, cfg=CutConfig())
    return res, outs


@pytest.mark.parametrize(("rotation", "seconds", "method"), [
    (0, 2.5, "smart"), (90, 1.5, "reencode")])
def test_clips_keep_audio_stored_behind_the_video(tmp_path, rotation, seconds, method):
    _write(tmp_path / "a.mkv", rotation)
    _skew(tmp_path / "a.mkv", tmp_path / "skewed.mkv", seconds)
    res, outs = _cut(tmp_path / "skewed.mkv", tmp_path, rotation)
    for r, out in zip(res, outs, strict=True):
        assert r.error is None and r.method == method and r.audio
        assert r.note is None
        assert _audio_s(out) >= 3.0 - 0.025  # to within one AAC frame at the end


def test_past_the_cap_the_clip_says_its_audio_was_cut_short(tmp_path, monkeypatch):
    monkeypatch.setattr(MuxLag, "CAP_S", 1.5)  # rather than 10 s of footage to skew past it
    _write(tmp_path / "a.mkv")
    _skew(tmp_path / "a.mkv", tmp_path / "skewed.mkv", 2.5)
    res, outs = _cut(tmp_path / "skewed.mkv", tmp_path, 0)
    short = [r for r in res[:2] if r.note and r.note.startswith(AUDIO_CUT_SHORT)]
    assert short, [r.note for r in res]
    for r, out in zip(res[:2], outs, strict=False):
        if r in short:
            assert _audio_s(out) < 3.0 - 0.1
    assert res[2].note is None  # the last clip is written at the end of the file, complete
