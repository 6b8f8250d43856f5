import itertools

import numpy as np
import pytest

from clipfactory.config import ClipConfig
from clipfactory.plan import damage_transitions, plan_spans, shots_from_transitions, span_seconds
from clipfactory.records import Span, Transition


def _times(n, fps=30.0):
    return np.arange(n) / fps


def test_shots_exclude_transition_frames():
    trs = [Transition("cut", 59, 60), Transition("dissolve", 99, 115), Transition("damage", 149, 153)]
    shots = shots_from_transitions(0, 200, trs)
    assert shots == [Span(0, 60), Span(60, 100), Span(115, 150), Span(153, 200)]
    covered = {f for s in shots for f in range(s.start_frame, s.end_frame)}
    assert covered.isdisjoint(set(range(100, 115)) | set(range(150, 153)))


def test_span_start_inside_video():
    assert shots_from_transitions(70, 200, [Transition("cut", 59, 60), Transition("cut", 99, 100)]) == [
        Span(70, 100), Span(100, 200)]


def test_min_and_max_duration():
    cfg = ClipConfig(min_s=2.0, max_s=5.0)
    shots = [Span(0, 59), Span(59, 119), Span(119, 119 + 31 * 30)]
    clips, short = plan_spans(shots, _times(2000), 30.0, cfg)
    assert short == [Span(0, 59)]
    assert clips[0] == Span(59, 119)  # exactly 2 s is kept
    long_parts = clips[1:]
    assert len(long_parts) == 7  # 31 s split into parts of at most 5 s
    assert long_parts[0].start_frame == 119 and long_parts[-1].end_frame == 119 + 930
    assert all(b.start_frame == a.end_frame for a, b in itertools.pairwise(long_parts))
    assert all(p.num_frames <= 150 for p in long_parts)


def test_damage_runs_become_transitions():
    d = np.zeros(20, bool)
    d[[3, 4, 5, 10, 19]] = True
    assert [(t.start_frame, t.end_frame) for t in damage_transitions(d)] == [(2, 6), (9, 11), (18, 20)]


def test_span_seconds_uses_real_timestamps():
    times = np.array([0.0, 0.02, 0.08, 0.10, 0.15])
    assert span_seconds(times, 25.0, Span(1, 3)) == (0.02, 0.10)
    assert span_seconds(times, 25.0, Span(3, 5)) == pytest.approx((0.10, 0.19))


@pytest.mark.parametrize(("n", "fps", "max_s"), [(4, 0.01, 30.0), (30, 30.0, 0.01), (7, 30.0, 0.05)])
def test_a_shot_is_never_split_into_more_parts_than_frames(n, fps, max_s):
    """A slideshow (a frame every 100 s, the default max_s) or a max_s under a frame's time:
    every clip holds a frame at least (0-frame clips had NaN scores that stopped the run)."""
    clips, short = plan_spans([Span(0, n)], _times(n, fps), fps, ClipConfig(min_s=0, max_s=max_s))
    assert not short and clips
    assert all(c.num_frames >= 1 for c in clips)
    assert clips[0].start_frame == 0 and clips[-1].end_frame == n
    assert all(a.end_frame == b.start_frame for a, b in itertools.pairwise(clips))
