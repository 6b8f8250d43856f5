"""Compressed audio copied from an AVI (MP3, the DivX/Xvid pairing) stays in sync with the
clip's video. AVI times audio in whole codec frames (1152/44100 s for MP3): shifted by whole
ticks, a clip starting between two of them had its audio up to half a frame off (12.9 ms
here, for the whole clip). It is now timed in samples."""

from __future__ import annotations

import io

import av
import numpy as np

from clipfactory.config import CutConfig
from clipfactory.media.cut import cut_clips
from clipfactory.records import Span
from clipfactory.testing.synth import ShotSpec, mux_with_audio, tone_frames

RATE = 44100


def _write(path):
    shots = [ShotSpec(66, seed=900), ShotSpec(84, seed=901)]
    with av.open(str(path), "w") as out:
        vs = out.add_stream("mpeg4", rate=30, options={"qmin": "1", "qmax": "3"})
        vs.width, vs.height, vs.pix_fmt = 160, 90, "yuv420p"
        vs.codec_context.bit_rate = 2_000_000
        vs.codec_context.max_b_frames = 0
        aus = out.add_stream("libmp3lame", rate=RATE, layout="mono")
        aus.codec_context.bit_rate = 64000
        res = av.AudioResampler(format=aus.codec_context.format.name, layout="mono", rate=RATE)
        mux_with_audio(out, vs, aus, shots, 150, tone_frames(RATE, 5, 1152, chirp=True),
                       resampler=res)


def _placed(src):
    """Mono samples placed by their timestamps: (time of sample 0, samples)."""
    with av.open(src) as c:
        placed = [(float(f.pts * f.time_base), f.to_ndarray().mean(axis=0))
                  for f in c.decode(audio=0)]
    t0 = min(p for p, _ in placed)
    end = max(p + len(m) / RATE for p, m in placed)
    out = np.zeros(round((end - t0) * RATE) + 1)
    for p, m in placed:
        i = round((p - t0) * RATE)
        out[i:i + len(m)] = m[: len(out) - i]
    return t0, out


def test_mp3_copied_from_an_avi_is_in_sync(tmp_path):
    src = tmp_path / "divx_mp3.avi"
    _write(src)
    with av.open(str(src)) as c:
        pts = [f.pts for f in c.decode(video=0)]
        vtimes = [float(p * c.streams.video[0].time_base) for p in pts]
    out = tmp_path / "b.mp4"
    [r] = cut_clips(str(src), [Span(66, 150)], [str(out)], frame_pts=pts, cfg=CutConfig())
    assert r.error is None and r.audio
    s_t0, s_audio = _placed(str(src))
    c_t0, c_audio = _placed(io.BytesIO(out.read_bytes()))
    start = vtimes[66]  # between two MP3 frames of the source
    n = int(0.25 * RATE)
    for at in (0.3, 1.2, 2.2):  # where the clip's audio matches the source's best
        ci = round((at - c_t0) * RATE)
        si = round((start + at - s_t0) * RATE)
        seg = c_audio[ci:ci + n]
        best = max(range(si - 1000, si + 1000), key=lambda j: float(np.dot(seg, s_audio[j:j + n])))
        assert abs(best - si) / RATE * 1000 <= 1.0, (at, (best - si) / RATE * 1000)
