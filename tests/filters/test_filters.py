import numpy as np

from clipfactory.config import FilterConfig
from clipfactory.filters import ClipSignals, build_filters, clip_scores, first_rejection


def _sig(b=120.0, s=200.0, m=3.0, n=60, w=320, h=180):
    return ClipSignals(np.full(n, b, np.float32), np.full(n, s, np.float32),
                       np.full(n, m, np.float32), w, h)


FILTERS = build_filters(FilterConfig())


def test_a_good_clip_is_kept():
    assert first_rejection(FILTERS, _sig()) is None


def test_each_filter_names_its_reason():
    assert first_rejection(FILTERS, _sig(w=48, h=48)) == "too_small"
    assert first_rejection(FILTERS, _sig(b=8.0)) == "too_dark"
    assert first_rejection(FILTERS, _sig(m=0.1)) == "static"
    assert first_rejection(FILTERS, _sig(s=3.0)) == "blurry"


def test_mostly_black_clip_with_a_bright_tail_is_dropped():
    b = np.concatenate([np.full(40, 2.0), np.full(20, 200.0)]).astype(np.float32)
    sig = ClipSignals(b, np.full(60, 200.0, np.float32), np.full(60, 3.0, np.float32), 320, 180)
    assert first_rejection(FILTERS, sig) == "mostly_black"
    assert clip_scores(sig)["dark.fraction"] == round(40 / 60, 4)


def test_motion_ignores_the_change_into_the_clip():
    m = np.zeros(60, np.float32)
    m[0] = 90.0  # the jump from the previous shot is not motion inside the clip
    sig = ClipSignals(np.full(60, 120.0, np.float32), np.full(60, 200.0, np.float32), m, 320, 180)
    assert first_rejection(FILTERS, sig) == "static"
