"""An MP4 whose edit list leaves a part out (QuickTime's "delete a part", saved without
re-encoding): its clips hold the frames shown, not the part left out. Before, the smart cut
copied packets the demuxer marks discard, whose timestamps are among the shown frames': a clip
held 30 frames of the removed part, and audio of it. Such a source is re-encoded in full
(`fallback: edit_list`), and keyframe mode refuses it (`copy_failed: edit_list`)."""

from __future__ import annotations

import struct
from fractions import Fraction

import av
import numpy as np
import pytest

from clipfactory.config import CutConfig
from clipfactory.media.cut import cut_clips
from clipfactory.records import Span
from clipfactory.testing.synth import ShotSpec, mux_with_audio, tone_frames

SHOTS = [ShotSpec(90, seed=1510), ShotSpec(90, seed=1511), ShotSpec(90, seed=1512)]


def _write(path):
    with av.open(str(path), "w") as out:
        vs = out.add_stream("libx264", rate=30, options={"preset": "veryfast"})
        vs.width, vs.height, vs.pix_fmt = 160, 90, "yuv420p"
        vs.codec_context.gop_size = 30
        vs.codec_context.time_base = vs.time_base = Fraction(1, 90000)
        aus = out.add_stream("aac", rate=48000, layout="mono")
        mux_with_audio(out, vs, aus, SHOTS, 270, tone_frames(48000, 9, 1024, chirp=True))


def _boxes(b, start, end):
    i = start
    while i + 8 <= end:
        size, typ = struct.unpack(">I4s", b[i:i + 8])
        yield i, size, typ
        i += size


def _set_elst(path, track, entries):
    """Replace track ``track``'s edit list with ``(duration, media_time)`` entries (the moov
    box follows mdat, so no chunk offset moves)."""
    b = bytearray(path.read_bytes())
    moov = next((o, s) for o, s, t in _boxes(b, 0, len(b)) if t == b"moov")
    trak = [(o, s) for o, s, t in _boxes(b, moov[0] + 8, sum(moov)) if t == b"trak"][track]
    edts = next((o, s) for o, s, t in _boxes(b, trak[0] + 8, sum(trak)) if t == b"edts")
    elst = next((o, s) for o, s, t in _boxes(b, edts[0] + 8, sum(edts)) if t == b"elst")
    body = struct.pack(">4sI", b"elst", 0) + struct.pack(">I", len(entries)) + b"".join(
        struct.pack(">IiI", d, m, 1 << 16) for d, m in entries)
    new = struct.pack(">I", 4 + len(body)) + body
    delta = len(new) - elst[1]
    b[elst[0]:sum(elst)] = new
    for off in (edts[0], trak[0], moov[0]):
        b[off:off + 4] = struct.pack(">I", struct.unpack(">I", b[off:off + 4])[0] + delta)
    path.write_bytes(bytes(b))


@pytest.fixture
def edited(tmp_path):
    """9 s of media shown as media 0-2 s, then 4-7 s: 150 frames, media 0-59 then 120-209."""
    path = tmp_path / "edited.mp4"
    _write(path)
    # movie timescale 1000; media times past x264's 2-frame delay and AAC's 1024 samples
    _set_elst(path, 0, [(2000, 6000), (3000, 6000 + 120 * 3000)])
    _set_elst(path, 1, [(2000, 1024), (3000, 1024 + 4 * 48000)])
    return path


def _frames(path):
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24").astype(np.int16) for f in c.decode(video=0)]


def test_clips_of_an_edited_mp4_hold_the_frames_shown(edited, tmp_path):
    shown = _frames(edited)
    assert len(shown) == 150
    with av.open(str(edited)) as c:
        pts = [f.pts for f in c.decode(video=0)]
    outs = [str(tmp_path / "a.mp4"), str(tmp_path / "b.mp4")]
    spans = [Span(0, 60), Span(60, 120)]
    for r, span, out in zip(cut_clips(str(edited), spans, outs, frame_pts=pts, cfg=CutConfig()),
                            spans, outs, strict=True):
        assert r.error is None and r.fallback == "edit_list" and r.frames == 60
        got = _frames(out)
        assert len(got) == 60
        worst = max(float(np.abs(g - w).mean()) for g, w in
                    zip(got, shown[span.start_frame:span.end_frame], strict=True))
        assert worst < 4.0, worst  # the shown frames, re-encoded; not the part left out
        with av.open(out) as c:
            audio_s = sum(f.samples for f in c.decode(audio=0)) / 48000
        assert audio_s == pytest.approx(2.0, abs=0.03)  # not 3 s with the removed part's


def test_keyframe_mode_refuses_an_edited_mp4(edited, tmp_path):
    with av.open(str(edited)) as c:
        pts = [f.pts for f in c.decode(video=0)]
    res = cut_clips(str(edited), [Span(0, 60)], [str(tmp_path / "a.mp4")], frame_pts=pts,
                    cfg=CutConfig(mode="keyframe"))
    assert res[0].error == "copy_failed: edit_list"
