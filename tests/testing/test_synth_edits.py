"""Transitions and hard-negative shot kinds of the synthetic generator."""

import itertools

import av
import numpy as np
import pytest

from clipfactory.records import Transition
from clipfactory.testing.synth import ShotSpec, _shot_frame, render_frame, write_video

W, H = 160, 90


def mad(a, b):
    return float(np.mean(np.abs(a.astype(np.int16) - b.astype(np.int16))))


EDIT = (ShotSpec(10, "texture", 1), ShotSpec(10, "texture", 2, "dissolve", 6),
        ShotSpec(10, "texture", 3, "fade", 4, 2, 3), ShotSpec(10, "texture", 4, "fade", 3, 1, 0),
        ShotSpec(10, "texture", 5))


def test_transitions_frames_and_ground_truth(tmp_path):
    v = write_video(tmp_path / "edit.mp4", EDIT, width=W, height=H)
    # 10 A + 6 dissolve + 10 B + (4 out + 2 black + 3 in) + 10 C + (3 out + 1 black) + 10 D + 10 E
    assert v.frames == 10 + 6 + 10 + 9 + 10 + 4 + 10 + 10
    assert v.transitions == (Transition("dissolve", 9, 16), Transition("fade", 25, 35),
                             Transition("fade", 44, 49), Transition("cut", 58, 59))
    assert v.cuts == (59,)
    with av.open(v.path) as c:
        assert c.streams.video[0].frames == v.frames
    f = [render_frame(EDIT, i, W, H) for i in range(v.frames)]
    # the dissolve's middle frame is the mix of both shots continuing their motion
    a = _shot_frame(EDIT[0], 10 + 2, W, H).astype(np.float32)  # shot A went on moving
    b = _shot_frame(EDIT[1], 2 - 6, W, H).astype(np.float32)  # B moves before it is whole
    mid = (1 - 3 / 7) * a + 3 / 7 * b
    assert mad(f[12], np.clip(np.round(mid), 0, 255)) < 1
    assert mad(f[16], _shot_frame(EDIT[1], 0, W, H)) == 0  # B's first whole frame
    assert f[30].max() == 0 and f[31].max() == 0  # the black between fade-out and fade-in
    lumas = [f[i].mean() for i in range(25, 31)]
    assert lumas == sorted(lumas, reverse=True)  # fading out
    assert f[48].max() == 0 and f[49].mean() > 60  # cut in from black


def test_hard_negative_kinds():
    def shot(kind, n=24):
        return [render_frame([ShotSpec(n, kind, 7)], i, W, H) for i in range(n)]

    noisy = shot("noisy")
    assert 1 < mad(noisy[0], noisy[1]) < 12  # same picture, fresh noise
    fast, tex = shot("fastpan"), shot("texture")
    assert np.median([mad(a, b) for a, b in itertools.pairwise(fast)]) > \
        3 * np.median([mad(a, b) for a, b in itertools.pairwise(tex)])
    strobe = shot("strobe")
    means = [f.mean() for f in strobe]
    assert max(means) - min(means) > 40  # lit frames
    flash = shot("photoflash", 48)
    means = [f.mean() for f in flash]
    k = int(np.argmax(means))
    assert means[k] > means[k + 1] > means[k + 2] > means[k + 3]  # decays over frames
    obj = shot("object", 60)
    assert max(mad(a, b) for a, b in itertools.pairwise(obj)) > 10
    shake = shot("shake")
    assert all(mad(a, b) > 1 for a, b in itertools.pairwise(shake))  # never still
    assert np.array_equal(render_frame([ShotSpec(5, "noisy", 7)], 3, W, H), noisy[3])


def test_bad_joins_are_refused():
    with pytest.raises(ValueError, match="join"):
        ShotSpec(5, enter="wipe")
    with pytest.raises(ValueError, match="needs frames"):
        ShotSpec(5, enter="dissolve")
