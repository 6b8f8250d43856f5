"""Smart cut (``exact`` mode) and ``keyframe`` mode on sources with known GOP structures.

Every clip must decode to exactly the source frames of its span: the copied GOPs bit for bit
(and packet for packet), the re-encoded edges at PSNR >= 35 dB, with timestamps from 0 that
keep the source's spacing.
"""

from __future__ import annotations

import itertools
import os
import re
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import pytest

from clipfactory.config import CutConfig
from clipfactory.media.cut import cut_clips
from clipfactory.media.splice import _length_nals, _parse_sps, splice_codec
from clipfactory.records import Span
from clipfactory.testing.compare import psnr
from clipfactory.testing.synth import ShotSpec, write_video

SHOTS = [ShotSpec(150, "texture", 11), ShotSpec(150, "texture", 12)]


@dataclass
class Src:
    path: str
    pts: list[int]
    luma: list[np.ndarray]
    keys: list[int]  # frame indices of keyframe packets
    packets: dict[int, bytes]  # pts -> packet bytes
    tb: float


def _load(path: str) -> Src:
    with av.open(path) as c:
        vs = c.streams.video[0]
        frames = list(c.decode(vs))
        pts = [f.pts for f in frames]
        luma = [f.to_ndarray(format="gray") for f in frames]
        c.seek(0, stream=vs)
        packets = [p for p in c.demux(vs) if p.size]
        keys = sorted(pts.index(p.pts) for p in packets if p.is_keyframe)
        return Src(path, pts, luma, keys, {p.pts: bytes(p) for p in packets},
                   float(vs.time_base))


def _open_gop(path: str) -> str:
    write_video(path, [ShotSpec(300, "texture", 13)], bframes=3,
                x264_params="open-gop=1:keyint=60:scenecut=0:bframes=3")
    return path


SOURCES = {
    "h264-short-gop": ("a.mp4", {"gop": 12, "bframes": 2}),
    "h264-long-gop": ("b.mp4", {"gop": 120, "bframes": 3}),
    "h264-scenecut-keys": ("c.mp4", {"bframes": 3}),
    "h264-vfr-mkv": ("d.mkv", {"gop": 45, "bframes": 3, "vfr": True}),
    "vp9-webm": ("e.webm", {"codec": "libvpx-vp9", "gop": 60}),
    "av1": ("f.mp4", {"codec": "libsvtav1", "gop": 60}),
    "mpeg4-part2": ("g.mp4", {"codec": "mpeg4", "gop": 50}),
    "h264-open-gop": ("h.mp4", None),
    "h264-mpegts": ("i.ts", {"gop": 30, "bframes": 2}),  # Annex B, parameter sets in band
    "h264-flv": ("k.flv", {"gop": 30, "bframes": 2}),  # millisecond timestamps
    "h264-avi": ("j.avi", {"gop": 30}),  # Annex B too (B-frames in AVI: no pts, re-encoded)
    # HEVC: x265 runs under the source's parameter-set ids, in band (hev1)
    "hevc-mp4": ("l.mp4", {"codec": "libx265", "gop": 30, "bframes": 3, "preset": "fast"}),
    "hevc-mkv": ("m.mkv", {"codec": "libx265", "gop": 45}),
    "hevc-mpegts": ("n.ts", {"codec": "libx265", "gop": 30, "bframes": 2, "preset": "fast"}),
    "hevc-main10": ("o.mp4", {"codec": "libx265", "gop": 30, "pix_fmt": "yuv420p10le"}),
}


@pytest.fixture(scope="module", params=sorted(SOURCES))
def src(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Src:
    name, kw = SOURCES[request.param]
    path = str(tmp_path_factory.mktemp("smart") / name)
    if kw is None:
        return _load(_open_gop(path))
    return _load(write_video(path, SHOTS, **kw).path)


def _spans(src: Src) -> list[Span]:
    """Edges off keyframes, on keyframes, one whole GOP, single frames, to the very end."""
    n, k = len(src.pts), src.keys
    mid = k[len(k) // 2] if len(k) > 2 else n // 2
    spans = [Span(7, n - 9), Span(0, 30), Span(mid - 1, mid + 1), Span(n - 40, n), Span(5, 6),
             Span(mid, min(n, mid + 70))]
    spans.append(Span(k[-1] - 3, n))  # the last GOP and the end of the stream
    if len(k) > 2:
        spans.append(Span(k[1], k[2]))  # exactly one GOP
    return spans


def _copied_frames(src: Src, span: Span) -> int:
    """Frames the cut copies: the closed GOPs that lie wholly inside the span, plus, where the
    span ends inside a GOP that starts in it, that GOP's longest decode-order prefix of
    packets presenting exactly its first frames up to the span's end."""
    bounds = [*src.keys, len(src.pts)]
    whole = sum(b - a for a, b in itertools.pairwise(bounds)
                if a >= span.start_frame and b <= span.end_frame)
    order = [src.pts.index(p) for p in src.packets]  # frame indices in decode order
    for a, b in itertools.pairwise(bounds):
        if span.start_frame <= a < span.end_frame < b:
            gop = [i for i in order if a <= i < b]
            prefix = [k for k in range(1, span.end_frame - a + 1) if max(gop[:k]) == a + k - 1]
            whole += max(prefix, default=0)
    return whole


def _avcc_nals(data: bytes, hevc: bool = False) -> bytes:
    """An Annex-B packet's picture NAL units in 4-byte length framing: what an MP4 holds of
    it (H.264: parameter sets go to the avcC, access-unit delimiters and filler are dropped;
    HEVC: every NAL unit, as the MP4 muxer rewrites it)."""
    nals = [n.rstrip(b"\0") for n in re.split(b"\0\0\1", data)[1:]]
    return b"".join(len(n).to_bytes(4, "big") + n for n in nals
                    if n and (hevc or n[0] & 31 not in (7, 8, 9, 12)))


def _decode(path: str) -> tuple[list[np.ndarray], list[int], float, list[bytes]]:
    with av.open(path) as c:
        vs = c.streams.video[0]
        frames = list(c.decode(vs))
        c.seek(0, stream=vs)
        packets = [bytes(p) for p in c.demux(vs) if p.size]
        return ([f.to_ndarray(format="gray") for f in frames], [f.pts for f in frames],
                float(vs.time_base), packets)


def test_exact_clips_are_the_source_frames(src: Src, tmp_path: Path) -> None:
    spans = _spans(src)
    outs = [str(tmp_path / f"c{i}.mp4") for i in range(len(spans))]
    results = cut_clips(src.path, spans, outs, frame_pts=src.pts, cfg=CutConfig(audio="drop"))
    open_gop = src.path.endswith("h.mp4")
    any_copied = False
    for span, res in zip(spans, results, strict=True):
        assert res.error is None, (span, res.error)
        assert res.method == "smart" and res.fallback is None, (span, res)
        assert os.path.getsize(res.path) == res.bytes > 0
        luma, pts, tb, packets = _decode(res.path)
        assert len(luma) == res.frames == span.num_frames, span
        # timestamps from 0, increasing, with the source's spacing (VFR stays VFR)
        want = [(p - src.pts[span.start_frame]) * src.tb for p in
                src.pts[span.start_frame:span.end_frame]]
        assert pts[0] == 0
        assert np.allclose([p * tb for p in pts], want, atol=1e-3), span
        expect_copied = 0 if open_gop else _copied_frames(src, span)
        assert res.copied_frames == expect_copied, (span, res.copied_frames)
        any_copied |= expect_copied > 0
        for j, got in enumerate(luma):
            assert psnr(got, src.luma[span.start_frame + j]) >= 35, (span, j)
        if expect_copied:
            # copied GOPs: their packets are in the clip unchanged (an MPEG-4/AV1 copied run
            # may carry a header in front of its first packet) and decode bit-identical
            inside = set(src.pts[span.start_frame:span.end_frame])
            out_set = set(packets)
            annexb = src.path.endswith((".ts", ".avi"))  # the same NAL units, MP4 framing
            hevc = src.path.endswith(("l.mp4", "m.mkv", "n.ts", "o.mp4"))
            same = [p for p, b in src.packets.items()
                    if p in inside and (_avcc_nals(b, hevc) if annexb else b) in out_set]
            assert len(same) >= expect_copied - 1, span
            identical = sum(np.array_equal(luma[j], src.luma[span.start_frame + j])
                            for j in range(span.num_frames))
            assert identical >= expect_copied, span
    if not open_gop:
        assert any_copied


def _xvid_like(path: str, codec: str) -> str:
    """MPEG-4 Part 2 as Xvid writes it by default (B-frames, closed GOPs), or MPEG-2 with
    B-frames: 4:2:0 sources that are re-encoded in full without a conversion of their own."""
    from clipfactory.testing.synth import render_frame

    with av.open(path, "w") as out:
        opts = {"flags": "+cgop", "sc_threshold": "1000000000", "qmin": "1", "qmax": "3"}
        s = out.add_stream(codec, rate=30, options=opts)
        s.width, s.height, s.pix_fmt = 160, 96, "yuv420p"
        s.codec_context.gop_size, s.codec_context.max_b_frames = 30, 2
        for i in range(200):
            frame = av.VideoFrame.from_ndarray(render_frame(SHOTS, i, 160, 96), format="rgb24")
            out.mux(s.encode(frame))
        out.mux(s.encode(None))
    return path


@pytest.mark.parametrize(("name", "codec", "why"), [
    ("x.mp4", "mpeg4", "mpeg4_b_frames"), ("x.mkv", "mpeg4", "mpeg4_b_frames"),
    ("x.ts", "mpeg2video", "codec_mpeg2video")])
def test_b_frame_sources_re_encoded_in_full_keep_every_frame_in_overlapping_clips(
        tmp_path: Path, name: str, codec: str, why: str) -> None:
    """Xvid-like MPEG-4 Part 2 (B-frames, closed GOPs) was spliced: the edge encoder writes
    no B-frames, and the decoder, switching between the two VOL headers at each join,
    doubled the frame before a copied run and dropped the last one of a copied run before an
    edge. Re-encoded in full now. Overlapping clips of a full re-encode shared each decoded
    frame, which the first clip's encoder left rebased to its own timeline: the second clip's
    timestamps jumped where the first one ended."""
    src = _load(_xvid_like(str(tmp_path / name), codec))
    spans = [Span(10, 130), Span(30, 60), Span(100, 180), Span(130, 200), Span(119, 180)]
    outs = [str(tmp_path / f"c{i}.mp4") for i in range(len(spans))]
    results = cut_clips(src.path, spans, outs, frame_pts=src.pts, cfg=CutConfig(audio="drop"))
    for span, res in zip(spans, results, strict=True):
        assert res.error is None and res.fallback == why, (span, res)
        luma, pts, tb, _ = _decode(res.path)
        assert len(luma) == res.frames == span.num_frames, span
        want = [(p - src.pts[span.start_frame]) * src.tb for p in
                src.pts[span.start_frame:span.end_frame]]
        assert np.allclose([p * tb for p in pts], want, atol=1e-3), span
        for j, got in enumerate(luma):
            assert psnr(got, src.luma[span.start_frame + j]) >= 35, (span, j)


@pytest.mark.parametrize("name", ["k.mp4", "k.ts"])
def test_keyframe_mode_copies_whole_gops_and_reports_the_span(tmp_path: Path, name: str) -> None:
    src = _load(write_video(tmp_path / name, SHOTS, gop=30, bframes=2, audio=True).path)
    spans = [Span(10, 100), Span(30, 60), Span(31, 59), Span(0, 300)]
    outs = [str(tmp_path / f"k{i}.mp4") for i in range(len(spans))]
    results = cut_clips(src.path, spans, outs, frame_pts=src.pts, cfg=CutConfig(mode="keyframe"))
    assert [r.span for r in results[:2]] == [Span(30, 90), Span(30, 60)]
    assert results[3].span == Span(0, 300)
    assert results[2].error and results[2].error.startswith("no_keyframe_in_span")
    assert not os.path.exists(outs[2])
    for res in (results[0], results[1], results[3]):
        assert res.method == "copy" and res.copied_frames == res.span.num_frames
        luma, pts, _, _ = _decode(res.path)
        assert len(luma) == res.span.num_frames and pts[0] == 0
        for j, got in enumerate(luma):
            assert np.array_equal(got, src.luma[res.span.start_frame + j])
        assert res.audio
        # the audio starts with the span the clip holds, not the one planned: at most one
        # AAC frame before it (the planned [10, 100) kept packets from frame 10 on, 0.67 s
        # early in a reader that ignores the MP4 edit list)
        with av.open(res.path) as c:
            first = next(p for p in c.demux(c.streams.audio[0]) if p.size)
            assert float(first.pts * first.time_base) >= -1024 / 48000 - 1e-6, res.span


def _audio(path: str) -> tuple[np.ndarray, float, int]:
    with av.open(path) as c:
        frames = list(c.decode(audio=0))
        rate = frames[0].sample_rate
        samples = np.concatenate([f.to_ndarray()[0] for f in frames])
        return samples, float(frames[0].pts * frames[0].time_base), rate


@pytest.mark.parametrize("name", ["a.mp4", "a.webm", "a.flv"])
def test_audio_is_cut_in_sync(tmp_path: Path, name: str) -> None:
    kw = {"codec": "libvpx-vp9"} if name.endswith("webm") else {"bframes": 2}
    src = _load(write_video(tmp_path / name, SHOTS, gop=60, audio=True, **kw).path)
    spans = [Span(37, 250), Span(121, 122), Span(200, 300)]
    outs = [str(tmp_path / f"a{i}.mp4") for i in range(len(spans))]
    results = cut_clips(src.path, spans, outs, frame_pts=src.pts, cfg=CutConfig())
    frame_s = 1024 / 48000 if name.endswith("mp4") else 960 / 48000  # AAC / Opus frame
    for span, res in zip(spans, results, strict=True):
        assert res.error is None and res.audio, res
        t0 = src.pts[span.start_frame] * src.tb
        t1 = (src.pts[span.end_frame] * src.tb if span.end_frame < len(src.pts)
              else src.pts[-1] * src.tb + 1 / 30)
        samples, start, rate = _audio(res.path)
        assert -frame_s - 1e-3 <= start <= 1e-3
        assert abs(len(samples) / rate - (t1 - t0)) <= 2 * frame_s + 1e-3, span
        if len(samples) > rate // 20:
            # in sync: the 440 Hz sine is where the source had it at t0, to within 1 ms (WebM
            # stores millisecond timestamps: up to 0.5 ms off by itself). The lag search stays
            # inside half a period (1.1 ms), so the best lag is unique.
            n = np.arange(rate // 100, len(samples) - rate // 100)
            lags = np.arange(-48, 49)
            score = [np.dot(samples[n], np.sin(2 * np.pi * 440 * (t0 + start + (n + lag) / rate)))
                     for lag in lags]
            best = int(lags[int(np.argmax(score))])
            assert abs(best) <= rate // 1000, (span, best)
            assert max(score) > 0.9 * 0.3 * len(n) / 2  # and it is the sine, not noise
    dropped = cut_clips(src.path, spans[:1], [str(tmp_path / "d.mp4")], frame_pts=src.pts,
                        cfg=CutConfig(audio="drop"))[0]
    with av.open(dropped.path) as c:
        assert not c.streams.audio and not dropped.audio


@pytest.mark.parametrize(("name", "kw", "reason"), [
    ("r.mp4", {"rotation": 90}, "rotated_source"),
    ("x.mp4", {"pix_fmt": "yuv420p10le"}, "pix_fmt_yuv420p10le"),
    ("m.mkv", {"codec": "mpeg2video"}, "codec_mpeg2video"),
])
def test_unspliceable_sources_are_reencoded_and_say_why(tmp_path: Path, name: str,
                                                         kw: dict[str, object],
                                                         reason: str) -> None:
    src = _load(write_video(tmp_path / name, SHOTS[:1], **kw).path)
    res = cut_clips(src.path, [Span(10, 100)], [str(tmp_path / "o.mp4")], frame_pts=src.pts,
                    rotation=kw.get("rotation", 0), cfg=CutConfig())[0]
    assert res.error is None and res.method == "reencode" and res.fallback == reason
    luma, _, _, _ = _decode(res.path)
    assert len(luma) == 90
    if "rotation" not in kw:
        assert psnr(luma[0], src.luma[10]) >= 35


def _two_encodes_ts(path: Path) -> str:
    """An MPEG-TS whose H.264 changes its parameter sets at frame 60 (two encodes joined, as
    an HLS download whose segments come from two encoder configurations): both SPS have id 0,
    with different reference counts. Timestamps run on across the join."""
    from fractions import Fraction

    from clipfactory.testing.synth import render_frame

    tb = Fraction(1, 30)
    with av.open(str(path), "w", format="mpegts") as out:
        stream = out.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = 320, 180, "yuv420p"
        for part, refs in ((0, 1), (1, 3)):
            enc = av.CodecContext.create("libx264", "w")
            enc.width, enc.height, enc.pix_fmt = 320, 180, "yuv420p"
            enc.time_base, enc.framerate = tb, Fraction(30)
            enc.options = {"preset": "ultrafast", "x264-params":
                           f"keyint=30:scenecut=0:ref={refs}"}
            for i in range(part * 60, part * 60 + 60):
                frame = av.VideoFrame.from_ndarray(render_frame(SHOTS[:1], i, 320, 180),
                                                   format="rgb24")
                frame.pts, frame.time_base = i, tb
                for packet in enc.encode(frame):
                    packet.stream = stream
                    out.mux(packet)
            for packet in enc.encode(None):
                packet.stream = stream
                out.mux(packet)
    return str(path)


def test_mpegts_parameter_set_change_is_reencoded_not_spliced(tmp_path: Path) -> None:
    """Copied Annex-B packets lose their in-band SPS/PPS to the clip's avcC, so a GOP whose
    parameter sets are not the stream's first must not be copied: its clip is re-encoded in
    full and says why, and every clip still holds exactly its source frames."""
    src = _load(_two_encodes_ts(tmp_path / "two.ts"))
    assert len(src.pts) == 120 and src.keys == [0, 30, 60, 90]
    spans = [Span(5, 55), Span(40, 100), Span(62, 118)]
    outs = [str(tmp_path / f"t{i}.mp4") for i in range(len(spans))]
    first, across, second = cut_clips(src.path, spans, outs, frame_pts=src.pts,
                                      cfg=CutConfig(audio="drop"))
    assert first.method == "smart" and first.fallback is None and first.copied_frames == 25
    for res in (across, second):
        assert res.method == "reencode", res
        assert res.fallback.startswith("splice_failed: ValueError: the stream changes its "
                                       "parameter sets"), res.fallback
    for span, res in zip(spans, (first, across, second), strict=True):
        assert res.error is None
        luma, _, _, _ = _decode(res.path)
        assert len(luma) == span.num_frames
        for j, got in enumerate(luma):
            assert psnr(got, src.luma[span.start_frame + j]) >= 35, (span, j)


def test_many_clips_one_open_few_seeks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = _load(write_video(tmp_path / "m.mp4", [ShotSpec(900, "texture", 14)], gop=60,
                            bframes=2).path)
    opened: list[str] = []
    seeks: list[int] = []
    real_open, real_seek = av.open, av.container.InputContainer.seek

    def counting_open(*a: object, **k: object) -> object:
        opened.append(str(a[0]))
        return real_open(*a, **k)

    def counting_seek(self: object, offset: int, **k: object) -> None:
        seeks.append(offset)
        return real_seek(self, offset, **k)

    monkeypatch.setattr(av, "open", counting_open)
    monkeypatch.setattr(av.container.InputContainer, "seek", counting_seek)
    spans = [Span(a, a + 45) for a in range(10, 850, 50)]  # 17 clips, 5-frame gaps
    spans += [Span(700, 760), Span(20, 40)]  # behind the reader: needs one seek back
    outs = [str(tmp_path / f"m{i}.mp4") for i in range(len(spans))]
    results = cut_clips(src.path, spans, outs, frame_pts=src.pts, cfg=CutConfig())
    monkeypatch.undo()
    assert [o for o in opened if o == src.path] == [src.path]
    assert len(seeks) <= 2  # sorted, close together: read forward in one pass
    for span, res in zip(spans, results, strict=True):
        assert res.error is None and res.frames == span.num_frames


def test_h264_parameter_sets_get_their_own_ids(tmp_path: Path) -> None:
    src = write_video(tmp_path / "p.mp4", SHOTS[:1], gop=30, bframes=2).path
    with av.open(src) as c:
        vs = c.streams.video[0]
        splice = splice_codec(c, vs, 18, "veryfast")
        assert not isinstance(splice, str)
        sps = _parse_sps(splice.sps[0])
        assert (sps.id, sps.chroma_format, sps.bit_depth, sps.frame_mbs_only) == (0, 1, 8, True)
    res = cut_clips(src, [Span(5, 65)], [str(tmp_path / "o.mp4")],
                    frame_pts=_load(src).pts, cfg=CutConfig())[0]
    with av.open(res.path) as c:
        x = bytes(c.streams.video[0].codec_context.extradata)
        packets = [bytes(p) for p in c.demux(video=0) if p.size]
    assert x[0] == 1 and x[5] & 31 == 2  # avcC with both SPS
    # the first (re-encoded) packet's slices use the new PPS id 1; the copied GOP's use 0
    nal_types = [{n[0] & 31 for n in _length_nals(p, 4)} for p in packets]
    assert 5 in nal_types[0] and 5 in nal_types[25]  # IDRs: head at 0, copied GOP at 30-5
    assert not any({7, 8} & t for t in nal_types)  # no in-band parameter sets


def test_bad_spans_and_no_temp_files(tmp_path: Path) -> None:
    src = _load(write_video(tmp_path / "b.mp4", SHOTS[:1], gop=30).path)
    spans = [Span(5, 5), Span(-1, 3), Span(100, 200), Span(0, 10)]
    outs = [str(tmp_path / "out" / f"b{i}.mp4") for i in range(len(spans))]
    results = cut_clips(src.path, spans, outs, frame_pts=src.pts, cfg=CutConfig())
    assert [r.error.split(":")[0] if r.error else None for r in results] == [
        "bad_span", "bad_span", "out_of_range", None]
    assert sorted(os.listdir(tmp_path / "out")) == ["b3.mp4"]


def _bframe_source(path: str, pyramid: str) -> str:
    write_video(path, [ShotSpec(150, "texture", 15)], bframes=3,
                x264_params=f"keyint=75:scenecut=0:bframes=3:b-adapt=0:b-pyramid={pyramid}")
    return path


def _skipping_is_the_decoders_own(path: str, disposable: set[int],
                                  digests: dict[int, object]) -> None:
    """``disposable`` (pts) is exactly what FFmpeg's ``skip_frame=nonref`` drops, and a
    decoder never fed those packets gives every other picture of ``digests`` bit for bit."""
    from clipfactory.media.digest import plane_digest

    with av.open(path) as c:
        c.streams.video[0].codec_context.skip_frame = "NONREF"
        assert {int(f.pts) for f in c.decode(video=0)} == set(digests) - disposable
    with av.open(path) as c:
        vs = c.streams.video[0]
        kept = [p for p in c.demux(vs) if p.size and int(p.pts) not in disposable]
        cc = av.CodecContext.create(vs.codec_context.name, "r")
        cc.extradata = vs.codec_context.extradata
        got = {}
        for p in [*kept, None]:
            for f in cc.decode(p):
                got[int(f.pts)] = plane_digest(f)
    assert got == {p: d for p, d in digests.items() if p not in disposable}


@pytest.mark.parametrize(("pyramid", "ext"), [("none", "mp4"), ("normal", "mp4"),
                                              ("normal", "ts")])
def test_disposable_packets_are_the_decoders_own_non_references(tmp_path: Path,
                                                                pyramid: str, ext: str) -> None:
    """``SpliceCodec.disposable`` marks exactly the packets FFmpeg's own non-reference skipping
    drops (AVCC and Annex-B framing), and a decoder that never sees them gives every other
    picture bit for bit."""
    from clipfactory.media.digest import plane_digest

    path = _bframe_source(str(tmp_path / f"{pyramid}.{ext}"), pyramid)
    with av.open(path) as c:
        vs = c.streams.video[0]
        splice = splice_codec(c, vs, 18, "ultrafast")
        assert not isinstance(splice, str)
        packets = [p for p in c.demux(vs) if p.size]
        disposable = {int(p.pts) for p in packets if splice.disposable(p)}
    with av.open(path) as c:
        frames = {int(f.pts): (plane_digest(f), int(f.pict_type)) for f in c.decode(video=0)}
    b_frames = {p for p, (_, kind) in frames.items() if kind == int(av.video.frame.PictureType.B)}
    assert disposable and disposable <= b_frames
    assert (disposable == b_frames) == (pyramid == "none")  # pyramid B-frames are references
    _skipping_is_the_decoders_own(path, disposable, {p: d for p, (d, _) in frames.items()})


def test_the_cutter_does_not_decode_what_nothing_needs(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Clips starting late in a long GOP: the non-reference pictures before them are never
    decoded, and the clip files are byte for byte what decoding everything gives."""
    from clipfactory.media import smartcut
    from clipfactory.media.splice import SpliceCodec

    src = _load(_bframe_source(str(tmp_path / "s.mp4"), "normal"))
    spans = [Span(60, 100), Span(130, 150)]  # keyframes at 0 and 75
    decoded: list[int] = []
    real = smartcut._Cutter._decode

    def counting(self: smartcut._Cutter, packet: av.Packet | None) -> list[av.VideoFrame]:
        if packet is not None:
            decoded.append(int(packet.pts))
        return real(self, packet)

    monkeypatch.setattr(smartcut._Cutter, "_decode", counting)
    fast = cut_clips(src.path, spans, [str(tmp_path / f"f{i}.mp4") for i in range(2)],
                     frame_pts=src.pts, cfg=CutConfig(audio="drop"))
    fed = decoded[:]
    decoded.clear()
    monkeypatch.setattr(SpliceCodec, "disposable", lambda self, packet: False)
    full = cut_clips(src.path, spans, [str(tmp_path / f"a{i}.mp4") for i in range(2)],
                     frame_pts=src.pts, cfg=CutConfig(audio="drop"))
    assert set(fed) < set(decoded)
    assert len(fed) < len(decoded) - 20  # ~2/3 of the B-frames before 60 and 130
    for a, b, span in zip(fast, full, spans, strict=True):
        assert a.error is None and b.error is None
        assert Path(a.path).read_bytes() == Path(b.path).read_bytes(), span
        luma, _, _, _ = _decode(a.path)
        assert len(luma) == span.num_frames
        for j, got in enumerate(luma):
            assert psnr(got, src.luma[span.start_frame + j]) >= 35, (span, j)


def _nal_types(data: bytes) -> list[int]:
    """HEVC NAL unit types of a 4-byte length-framed packet."""
    out, i = [], 0
    while i + 4 < len(data):
        n = int.from_bytes(data[i:i + 4], "big")
        out.append((data[i + 4] >> 1) & 63)
        i += 4 + n
    return out


def test_hevc_runs_carry_their_parameter_sets_in_band(tmp_path: Path) -> None:
    """Each run starts with the parameter sets it was coded with (VPS 32, SPS 33, PPS 34):
    the encoder's before a re-encoded run, the source's before a copied one, in a track
    whose sample entry allows that (hev1)."""
    made = write_video(tmp_path / "made.mp4", SHOTS, codec="libx265", gop=30).path
    # as Apple's hvc1 files: the hvcC's arrays say they hold every parameter set
    with av.open(made) as i, av.open(str(tmp_path / "s.mp4"), "w") as o:
        ost = o.add_stream_from_template(i.streams.video[0], opaque=True)
        ost.codec_context.codec_tag = "hvc1"  # the muxer marks the arrays complete
        for packet in i.demux(i.streams.video[0]):
            if packet.dts is not None:
                packet.stream = ost
                o.mux(packet)
    src = _load(str(tmp_path / "s.mp4"))
    res = cut_clips(src.path, [Span(20, 100)], [str(tmp_path / "c.mp4")], frame_pts=src.pts,
                    cfg=CutConfig())[0]
    copied = _copied_frames(src, Span(20, 100))  # GOPs 30-89, then a prefix of 90's
    assert res.method == "smart" and res.codec == "hevc" and res.copied_frames == copied > 60
    with av.open(src.path) as c:
        assert c.streams.video[0].codec_context.extradata[23] & 0x80  # complete, as hvc1 says
    with av.open(res.path) as c:
        assert c.streams.video[0].codec_context.codec_tag == "hev1"
        hvcc = bytes(c.streams.video[0].codec_context.extradata)
        assert hvcc[23] & 0x80 == 0  # in-band sets allowed: the arrays are not complete
        packets = [bytes(p) for p in c.demux(c.streams.video[0]) if p.size]
    starts = [k for k, p in enumerate(packets) if _nal_types(p)[:3] == [32, 33, 34]]
    assert starts == [0, 10, 10 + copied], starts  # the head, the copied run, the tail
    def sets(p: bytes) -> bytes:  # the packet's first three NAL units
        i = 0
        for _ in range(3):
            i += 4 + int.from_bytes(p[i:i + 4], "big")
        return p[:i]

    assert sets(packets[0]) == sets(packets[10 + copied]) != sets(packets[10])  # x265's, source's
    luma, _, _, _ = _decode(res.path)
    assert all(np.array_equal(luma[j], src.luma[20 + j]) for j in range(10, 10 + copied))


def test_an_open_gop_hevc_source_is_reencoded_in_full(tmp_path: Path) -> None:
    """x265's default: CRA keyframes with RASL pictures that need the GOP before them. No GOP
    can be copied, and x265 re-encoding every frame would cost about twice x264's re-encode,
    so the clip is x264's (``fallback: hevc_open_gop``)."""
    from clipfactory.testing.synth import render_frame

    path = tmp_path / "open.mp4"
    with av.open(str(path), "w") as out:
        s = out.add_stream("libx265", rate=30)
        s.width, s.height, s.pix_fmt = 320, 180, "yuv420p"
        s.options = {"preset": "fast", "crf": "20",
                     "x265-params": "keyint=30:min-keyint=30:open-gop=1:log-level=error"}
        for i in range(120):
            out.mux(s.encode(av.VideoFrame.from_ndarray(render_frame(SHOTS, i, 320, 180),
                                                        format="rgb24")))
        out.mux(s.encode(None))
    src = _load(str(path))
    assert any(8 in _nal_types(p) for p in src.packets.values())  # RASL pictures
    res = cut_clips(src.path, [Span(10, 100)], [str(tmp_path / "o.mp4")], frame_pts=src.pts,
                    cfg=CutConfig())[0]
    assert (res.method, res.fallback, res.codec, res.frames) == \
        ("reencode", "hevc_open_gop", "h264", 90), res
    luma, _, _, _ = _decode(res.path)
    assert len(luma) == 90 and all(psnr(luma[j], src.luma[10 + j]) >= 35 for j in range(90))


def test_hdr_hevc_stays_ten_bit_with_its_colours(tmp_path: Path) -> None:
    """A phone's HDR video (Main 10, HLG, BT.2020): copied frames are the source's 10-bit
    samples, re-encoded ones are Main 10 too, and every frame keeps the transfer, primaries
    and matrix (before, the clip was an 8-bit x264 re-encode: ``pix_fmt_yuv420p10le``)."""
    from clipfactory.testing.synth import render_frame

    path = tmp_path / "hlg.mp4"
    with av.open(str(path), "w") as out:
        s = out.add_stream("libx265", rate=30)
        s.width, s.height, s.pix_fmt = 320, 180, "yuv420p10le"
        s.options = {"preset": "ultrafast", "crf": "20", "x265-params":
                     "keyint=30:min-keyint=30:scenecut=0:open-gop=0:log-level=error:"
                     "colorprim=bt2020:transfer=arib-std-b67:colormatrix=bt2020nc"}
        for i in range(90):
            rgb = av.VideoFrame.from_ndarray(render_frame(SHOTS, i, 320, 180), format="rgb24")
            out.mux(s.encode(rgb.reformat(format="yuv420p10le")))
        out.mux(s.encode(None))
    with av.open(str(path)) as c:
        frames = list(c.decode(video=0))
        source = [(f.to_ndarray(), f.color_trc, f.color_primaries, f.colorspace) for f in frames]
        pts = [f.pts for f in frames]
    res = cut_clips(str(path), [Span(5, 70)], [str(tmp_path / "c.mp4")], frame_pts=pts,
                    cfg=CutConfig())[0]
    copied = res.copied_frames  # GOPs 30-59, and a prefix of the next
    assert (res.method, res.fallback, res.codec) == ("smart", None, "hevc") and copied >= 30
    with av.open(res.path) as c:
        assert c.streams.video[0].codec_context.profile == "Main 10"
        clip = [(f.to_ndarray(), f.color_trc, f.color_primaries, f.colorspace)
                for f in c.decode(video=0)]
    assert len(clip) == 65
    tags = {src[1:] for src in source}
    assert len(tags) == 1 and {got[1:] for got in clip} == tags  # HLG (18), BT.2020 (9, 9)
    for j, (samples, *_) in enumerate(clip):
        want = source[5 + j][0]
        assert samples.dtype == np.uint16
        if 25 <= j < 25 + copied:  # the copied frames: the source's own samples
            assert np.array_equal(samples, want), j
        else:
            assert np.abs(samples.astype(int) - want).mean() < 8, j  # of 1023


@pytest.mark.parametrize("ext", ["mp4", "ts"])
def test_hevc_disposable_packets_are_the_decoders_own_non_references(tmp_path: Path,
                                                                     ext: str) -> None:
    """HEVC's sub-layer non-reference pictures of the top sub-layer (x265's non-pyramid
    B-frames, ``TRAIL_N``): exactly what FFmpeg's ``skip_frame=nonref`` drops, and a decoder
    that never sees them gives every other picture bit for bit. The cutter and the frame
    grab then skip the ones no clip or grab wants, as for H.264."""
    from clipfactory.media.digest import plane_digest
    from clipfactory.media.splice import disposable_check

    path = write_video(tmp_path / f"b.{ext}", [ShotSpec(150, "texture", 15)],
                       codec="libx265", gop=75, bframes=3, preset="fast").path
    with av.open(path) as c:
        vs = c.streams.video[0]
        splice = splice_codec(c, vs, 18, "ultrafast")
        assert not isinstance(splice, str)
        check = disposable_check(vs)
        assert check is not None
        packets = [p for p in c.demux(vs) if p.size]
        disposable = {int(p.pts) for p in packets if splice.disposable(p)}
        assert disposable == {int(p.pts) for p in packets if check(p)}
    with av.open(path) as c:
        frames = {int(f.pts): plane_digest(f) for f in c.decode(video=0)}
    assert 0 < len(disposable) < len(frames) // 2  # the pyramid's middle B-frames are kept
    _skipping_is_the_decoders_own(path, disposable, frames)
