"""The built-in detector on rendered frames (no encoding): cuts, dissolves, fades, and silence on
the hard negatives. Encoded videos are in test_detect.py and the eval."""

import numpy as np
import pytest

from clipfactory.records import Transition
from clipfactory.shots import BuiltinDetector
from clipfactory.testing.synth import ShotSpec, _ground_truth, render_frame

W, H = 160, 90


def _detect(shots, det=None):
    det = det or BuiltinDetector()
    n = sum(s.frames for s in shots) + sum(s.transition_frames for s in shots[1:])
    for i in range(n):
        assert det.process(i, render_frame(shots, i, W, H)) == []
    return det.finish()


def _covers(found: Transition, truth: Transition, tol: int = 2) -> bool:
    """Same type, and the found span holds the true one (within ``tol``) without swallowing
    much more: no clip keeps a frame of the transition, few good frames are lost."""
    return (found.kind == truth.kind
            and truth.start_frame - 2 * tol <= found.start_frame <= truth.start_frame + tol
            and truth.end_frame - tol <= found.end_frame <= truth.end_frame + 2 * tol)


def test_hard_cuts_at_the_exact_frame():
    shots = [ShotSpec(40, "texture", 1), ShotSpec(50, "texture", 2), ShotSpec(30, "shake", 3)]
    assert _detect(shots) == [Transition("cut", 39, 40, _detect(shots)[0].score),
                              Transition("cut", 89, 90, _detect(shots)[1].score)]


@pytest.mark.parametrize("tail", [1, 2, 3])
def test_a_cut_in_the_last_frames_is_found(tail):
    """A cut 1-3 frames before the end (of the video, or of a manifest row's span): dropped
    before as a flash whose end cannot be seen, it let the last clip run into the next shot."""
    shots = [ShotSpec(60, "texture", 1), ShotSpec(tail, "texture", 2)]
    [cut] = _detect(shots)
    assert (cut.kind, cut.start_frame, cut.end_frame) == ("cut", 59, 60)


@pytest.mark.parametrize("length", [10, 17, 25])
def test_dissolves_are_found_whole(length):
    shots = [ShotSpec(50, "texture", 4), ShotSpec(50, "texture", 5, "dissolve", length),
             ShotSpec(50, "object", 6, "dissolve", 12)]
    found, truth = _detect(shots), _ground_truth(shots)[1]
    assert len(found) == 2 and all(_covers(f, t) for f, t in zip(found, truth, strict=True))


@pytest.mark.parametrize(("out", "black", "fade_in"), [(12, 4, 12), (8, 0, 8), (20, 10, 0)])
def test_fades_through_black_are_one_transition(out, black, fade_in):
    shots = [ShotSpec(50, "texture", 7), ShotSpec(50, "texture", 8, "fade", out, black, fade_in)]
    found, truth = _detect(shots), _ground_truth(shots)[1]
    assert len(found) == 1 and _covers(found[0], truth[0]), found


@pytest.mark.parametrize("kind", ["fastpan", "shake", "strobe", "photoflash", "object", "noisy",
                                  "flash", "dark", "static"])
def test_hard_negatives_are_quiet(kind):
    found = _detect([ShotSpec(150, kind, 11)])
    # a flash starting in the last frames, its end past the stream's, is cut off as a new
    # shot there would be (no clip may hold those frames): photoflash's last one starts at 147
    late = 150 - BuiltinDetector().min_shot_frames
    assert found == [] or (kind == "photoflash" and len(found) == 1
                           and found[0].kind == "cut" and found[0].end_frame > late), found


def test_gradual_detection_can_be_turned_off():
    shots = [ShotSpec(50, "texture", 4), ShotSpec(50, "texture", 5, "dissolve", 15)]
    assert [t.kind for t in _detect(shots)] == ["dissolve"]
    assert all(t.kind == "cut" for t in _detect(shots, BuiltinDetector(gradual=False)))


def test_memory_is_a_fixed_ring_and_spans_may_start_mid_video():
    det = BuiltinDetector()
    shots = [ShotSpec(300, "texture", 1), ShotSpec(200, "texture", 2)]
    for i in range(100, 500):  # a span starting at frame 100
        det.process(i, render_frame(shots, i, W, H))
    assert len(det._feats) == det._ring and det._coarse.shape[0] == det._ring
    assert [(t.start_frame, t.end_frame) for t in det.finish()] == [(299, 300)]
    with pytest.raises(ValueError):
        det.process(700, np.zeros((H, W, 3), np.uint8))


@pytest.mark.parametrize("n", [1, 2, 17])
def test_very_short_streams(n):
    frames = [render_frame([ShotSpec(n, "texture", 3)], i, W, H) for i in range(n)]
    det = BuiltinDetector()
    for i, f in enumerate(frames):
        det.process(i, f)
    assert det.finish() == [] and len(det.scores) == n
    assert BuiltinDetector().finish() == []  # no frame at all
