"""grab_frames: exact frames at given times, whichever way it reaches them (seeking to a
keyframe between two targets, or decoding on, leaving undecoded the H.264 pictures before a
target that nothing depends on), and the report's cheaper preview decode."""

from __future__ import annotations

import av
import numpy as np
import pytest
from av.video.reformatter import Interpolation

from clipfactory.media.digest import plane_digest
from clipfactory.media.grab import _decode, grab_frames
from clipfactory.media.splice import disposable_check
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


def test_a_time_asked_twice_gets_the_same_frame(video) -> None:
    """A 1-frame clip's first, middle and last frame, and two clips sharing a frame: each
    time gets the first frame at or after it (before, a repeated time got the next frame, and
    every later time of the file one frame on)."""
    path, frames = video
    idx = [30, 30, 30, 45, 46, 46, 61, 61]
    got = grab_frames(path, [i / 30 for i in idx], max_side=160)
    for i, g in zip(idx, got, strict=True):
        assert g is not None and np.array_equal(g, frames[i]), i


def test_preview_frames_are_close_to_the_exact_ones(video) -> None:
    path, frames = video
    idx = [0, 29, 59, 89, 119, 149, 179]  # the ends of GOPs: where drift is largest
    got = grab_frames(path, [i / 30 for i in idx], max_side=160, preview=True)
    for i, g in zip(idx, got, strict=True):
        assert g is not None and g.shape == frames[i].shape
        assert psnr(g, frames[i]) >= 35, i


@pytest.fixture(scope="module", params=["none", "normal"])
def bframes(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
            ) -> tuple[str, dict[int, str], set[int]]:
    """150 frames, 3 B-frames per P (pyramid or not), a keyframe every 75: the path, each
    frame's digest by pts, and the pts of the packets no other picture depends on."""
    path = str(tmp_path_factory.mktemp("bframes") / f"{request.param}.mp4")
    write_video(path, [ShotSpec(150, "texture", 15)], bframes=3,
                x264_params=f"keyint=75:scenecut=0:bframes=3:b-adapt=0:b-pyramid={request.param}")
    with av.open(path) as c:
        vs = c.streams.video[0]
        skip = disposable_check(vs)
        assert skip is not None
        disposable = {int(p.pts) for p in c.demux(vs) if p.size and skip(p)}
    with av.open(path) as c:
        frames = {int(f.pts): plane_digest(f) for f in c.decode(video=0)}
    assert len(frames) == 150 and disposable
    return path, frames, disposable


def test_pictures_nothing_needs_before_the_target_are_not_decoded(bframes) -> None:
    path, frames, disposable = bframes
    order = sorted(frames)
    aim = order[60]  # inside the first GOP's second half
    with av.open(path) as c:
        vs = c.streams.video[0]
        got = {int(f.pts): plane_digest(f) for f in _decode(c, vs, disposable_check(vs), [aim])}
    assert set(got) == {p for p in frames if p >= aim or p not in disposable}
    assert {p for p in disposable if p < aim} and not {p for p in disposable if p < aim} & set(got)
    assert all(got[p] == frames[p] for p in got)  # every picture decoded is bit for bit


def test_frames_are_exact_when_the_ones_before_them_are_skipped(bframes) -> None:
    path, frames, disposable = bframes
    with av.open(path) as c:
        tb = c.streams.video[0].time_base
        t0 = c.streams.video[0].start_time or 0
    with av.open(path) as c:
        exact = [f.reformat(width=160, height=90, format="rgb24",
                            interpolation=Interpolation.AREA).to_ndarray()
                 for f in c.decode(video=0)]
    order = sorted(frames)
    # a target that is itself a disposable picture, the one after it, and targets one at a
    # time and together (decoding on from one to the next)
    picks = [i for i, p in enumerate(order) if p in disposable and 10 < i < 140][:3]
    picks += [picks[0] + 1, 74, 75, 149]
    for i in picks:
        g = grab_frames(path, [float((order[i] - t0) * tb)], max_side=160)[0]
        assert g is not None and np.array_equal(g, exact[i]), i
    together = grab_frames(path, [float((order[i] - t0) * tb) for i in picks], max_side=160)
    for i, g in zip(picks, together, strict=True):
        assert g is not None and np.array_equal(g, exact[i]), i


def test_frames_are_exact_from_a_file_without_an_index(tmp_path) -> None:
    """MPEG-TS has no index: FFmpeg's seek guesses from timestamps and lands past the target,
    or at the end of the file. The grab seeks further back until it starts at a keyframe at or
    before the target, so every frame is the one a full decode gives there (before, most
    came from the keyframe after the target, or were missing)."""
    path = str(tmp_path / "v.ts")
    write_video(path, [ShotSpec(300, "texture", 23), ShotSpec(300, "texture", 24)], gop=30,
                bframes=2)
    with av.open(path) as c:
        frames = [f.reformat(width=160, height=90, format="rgb24",
                             interpolation=Interpolation.AREA).to_ndarray()
                  for f in c.decode(video=0)]
    idx = [3, 95, 250, 299, 300, 471, 530, 575, 599]  # ~3 s apart: each one a seek
    times = [i / 30 for i in idx]
    for order in (times, times[::-1]):  # in any order (the grab sorts them)
        got = grab_frames(path, order, max_side=160)
        for t, g in zip(order, got, strict=True):
            i = round(t * 30)
            assert g is not None and np.array_equal(g, frames[i]), i
    assert grab_frames(path, [20.5], max_side=160) == [None]  # past the end


def test_frames_of_a_bare_elementary_stream_are_counted(tmp_path) -> None:
    """A bare ``.h264`` stream (a Raspberry Pi's, a security camera's) has no timestamps:
    frame n is at n / rate, as the analysis pass counts it. The grab gave nothing there."""
    mp4 = write_video(tmp_path / "v.mp4", SHOTS, gop=30, bframes=2).path
    raw = str(tmp_path / "v.h264")
    with av.open(mp4) as i, av.open(raw, "w", format="h264") as o:
        s_out = o.add_stream_from_template(i.streams.video[0])
        for packet in i.demux(video=0):
            if packet.dts is not None:
                packet.stream = s_out
                o.mux(packet)
    with av.open(raw) as c:
        assert c.streams.video[0].start_time is None
        frames = [f.reformat(width=160, height=90, format="rgb24",
                             interpolation=Interpolation.AREA).to_ndarray()
                  for f in c.decode(video=0)]
    idx = [2, 40, 41, 150, 179]
    got = grab_frames(raw, [i / 30 for i in idx[::-1]], max_side=160)[::-1]
    for i, g in zip(idx, got, strict=True):
        assert g is not None and np.array_equal(g, frames[i]), i
    assert grab_frames(raw, [6.5], max_side=160) == [None]  # past the end
