from pathlib import Path

import numpy as np
import pytest

from clipfactory.config import AnalysisConfig, ShotConfig
from clipfactory.dedup.perceptual import hamming
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
