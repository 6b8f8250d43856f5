from pathlib import Path

import numpy as np
import pytest

from clipfactory.config import AnalysisConfig, ShotConfig
from clipfactory.dedup.perceptual import hamming, phash64
from clipfactory.media.analyse import analyse, analysis_size
from clipfactory.media.probe import probe
from clipfactory.shots import make_detector
from clipfactory.testing.compare import remux
from clipfactory.testing.synth import ShotSpec, write_video

KINDS = [ShotSpec(45, "texture", 1), ShotSpec(45, "dark", 2), ShotSpec(45, "static", 3),
         ShotSpec(45, "blurry", 4), ShotSpec(45, "flash", 5), ShotSpec(45, "texture", 6)]


@pytest.fixture(scope="module")
def kinds_video(media_dir):
    return write_video(media_dir / "kinds.mp4", KINDS, gop=60)


def _run(path, **kw):
    return analyse(probe(str(path)), AnalysisConfig(), make_detector(ShotConfig()), **kw)


def test_one_pass_finds_every_cut_and_no_flash(kinds_video):
    sig = _run(kinds_video.path)
    assert sig.frames == 270 and sig.decode_errors == 0
    assert [(t.start_frame, t.end_frame) for t in sig.transitions] == [
        (c - 1, c) for c in kinds_video.cuts]
    assert sig.pts is not None and np.all(np.diff(sig.pts) > 0)
    assert sig.times[0] == 0 and sig.times[-1] == pytest.approx(269 / 30)
    assert sig.keyframe[0] and sig.keyframe[60] and not sig.damaged.any()


def test_signals_separate_the_shot_kinds(kinds_video):
    sig = _run(kinds_video.path)
    shot = {s.kind: slice(i * 45 + 1, i * 45 + 45) for i, s in enumerate(KINDS)}
    tex = shot["texture"]
    assert sig.brightness[shot["dark"]].mean() < 16 < 40 < sig.brightness[tex].mean()
    assert sig.motion[shot["static"]].mean() < 0.3 < 1.0 < sig.motion[tex].mean()
    assert np.median(sig.sharpness[shot["blurry"]]) < 80 < 200 < np.median(sig.sharpness[tex])
    # perceptual hashes: stable inside a shot, far apart across a cut
    assert hamming(int(sig.phash[10]), int(sig.phash[12])) <= 8
    assert hamming(int(sig.phash[10]), int(sig.phash[260])) >= 16


def test_exact_digest_is_content_not_container(tmp_path, kinds_video):
    copy = tmp_path / "remux.mkv"
    remux(kinds_video.path, copy)
    a, b = _run(kinds_video.path), _run(copy)
    assert copy.read_bytes() != Path(kinds_video.path).read_bytes()
    assert np.array_equal(a.digest, b.digest)
    assert len(np.unique(a.digest)) > 200  # distinct frames hash differently (static shot repeats)


def test_span_restriction_keeps_absolute_frame_numbers(kinds_video):
    sig = _run(kinds_video.path, start_s=2.0, end_s=5.0)
    assert sig.frames == 150  # decoded up to 5 s, numbering from the file start
    assert not sig.analysed[:60].any() and sig.analysed[60:].all()
    assert [t.end_frame for t in sig.transitions] == [90, 135]


def test_damaged_frames_are_flagged(broken):
    info = probe(broken["garbage_middle"])
    sig = analyse(info, AnalysisConfig(), None)
    assert sig.frames >= 60
    assert sig.damaged.any() or sig.decode_errors > 0


def test_analysis_size_keeps_aspect_and_caps_portrait():
    cfg = AnalysisConfig()
    assert analysis_size(1920, 1080, cfg) == (160, 90)
    assert analysis_size(16, 16, cfg) == (16, 16)
    w, h = analysis_size(100, 4000, cfg)
    assert h == 160 and w >= 16 and w % 2 == 0 and h % 2 == 0


@pytest.mark.parametrize("codec,rotation", [("libx264", 90), ("mpeg4", 0)])
def test_batched_signals_equal_each_frame_on_its_own(media_dir, codec, rotation):
    """The one pass computes its signals a batch at a time; every value equals the per-frame
    definition on the same decoded frames, in and after the skipped head of a span, and the
    phase-correlation motion (MPEG-4 exports no usable vectors) equals phase_motion's."""
    import av
    from av.video.reformatter import Interpolation, VideoReformatter

    from clipfactory.media.motion import phase_motion
    from clipfactory.testing.compare import reference_signals

    path = media_dir / f"batched_{codec}.mkv"
    write_video(path, [ShotSpec(50, "texture", 3), ShotSpec(40, "fastpan", 4)], codec=codec,
                rotation=rotation)
    sig = _run(path, start_s=0.5)
    info = probe(str(path))
    aw, ah = analysis_size(info.width, info.height, AnalysisConfig())
    scaler, prev, want = VideoReformatter(), None, []
    with av.open(str(path)) as c:
        for frame in c.decode(video=0):
            rgb = scaler.reformat(frame, width=aw, height=ah, format="rgb24",
                                  interpolation=Interpolation.AREA, threads=1).to_ndarray()
            want.append(reference_signals(rgb, prev))
            prev = want[-1][0] if len(want) > 15 else None  # 15 frames before 0.5 s
    assert sig.frames == len(want) == 90 and sig.analysed.sum() == 75
    for i, (gray, b, s, m) in enumerate(want):
        if i < 15:
            assert sig.brightness[i] == sig.sharpness[i] == sig.phash[i] == 0
            continue
        assert (sig.brightness[i], sig.sharpness[i], sig.motion[i]) == \
            (np.float32(b), np.float32(s), np.float32(m)), i
        assert int(sig.phash[i]) == phash64(np.rot90(gray, rotation // 90)), i
    measured = np.flatnonzero(~np.isnan(sig.camera[:, 0]))
    assert len(measured) >= 5
    if codec == "mpeg4":
        assert sig.motion_source == "phase"
        for i in measured:
            g = phase_motion(want[i - 1][0], want[i][0])
            assert np.array_equal(sig.camera[i], np.float32(
                [g.tx, g.ty, g.zoom, g.rot, g.residual])), i


def test_the_batched_signals_are_charged_to_their_stages(kinds_video):
    from clipfactory.media import stagetime

    with stagetime.measure() as clock:
        _run(kinds_video.path)
    split = clock.seconds()
    # the batch runs inside the signals lap and moves its perceptual hashes to hashing
    assert split["signals"] > 0 and split["hashing"] > 0 and split["decode"] > 0
    assert all(v >= 0 for v in split.values())
