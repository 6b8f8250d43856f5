"""The mix test behind dissolves and fades, and the fade chaining, on plain arrays."""

import numpy as np
import pytest

from clipfactory.records import Transition
from clipfactory.shots.gradual import chain_fades, fit_mix, ramp_extent

RNG = np.random.default_rng(0)
A, B = RNG.uniform(0, 255, 432), RNG.uniform(0, 255, 432)


def _mix(alphas):
    return np.stack([(1 - a) * A + a * B for a in alphas]).astype(np.float32)


def test_a_dissolve_is_an_exact_mix_with_a_monotone_ramp():
    fit = fit_mix(_mix(np.linspace(0, 1, 14)))
    assert fit.residual < 1e-3 and fit.wander == pytest.approx(1, abs=1e-3)
    assert fit.jump < 0.1 and fit.middle >= 6
    assert np.allclose(fit.alpha, np.linspace(0, 1, 14), atol=1e-3)


def test_a_fade_is_a_mix_with_black():
    frames = np.stack([A * (1 - k / 9) for k in range(10)]).astype(np.float32)
    fit = fit_mix(frames)
    assert fit.residual < 1e-3 and fit.middle >= 5


def test_a_cut_jumps_and_motion_leaves_the_segment():
    cut = fit_mix(_mix([0, 0, 0, 0, 1, 1, 1, 1]))
    assert cut.jump == pytest.approx(1) and cut.middle == 0
    img = RNG.uniform(0, 255, (9, 40))
    pan = np.stack([img[:, k:k + 16].repeat(3, axis=1)[:, :48].ravel() for k in range(12)])
    moving = fit_mix(pan.astype(np.float32))
    assert moving.residual > 0.5 or moving.wander > 1.5
    same = fit_mix(np.stack([A, A, A]).astype(np.float32))  # no change at all
    assert same.residual == float("inf")


def test_ramp_extent_finds_where_the_mix_starts_and_ends():
    # frames 0-4 shot A, a 10-frame dissolve at 5-14 (alpha k/11), frames 15-19 shot B
    alpha = np.r_[np.zeros(5), np.arange(1, 11) / 11, np.ones(5)]
    lo, hi = ramp_extent(alpha)
    assert lo == pytest.approx(4, abs=1e-6) and hi == pytest.approx(15, abs=1e-6)
    assert ramp_extent(np.r_[np.zeros(5), np.ones(5)]) is None


def test_fade_out_black_and_fade_in_become_one_fade():
    dark = set(range(20, 26))
    out = chain_fades([Transition("fade", 10, 20), Transition("fade", 25, 35),
                       Transition("cut", 60, 61)], dark.__contains__, max_black=24)
    assert out == [Transition("fade", 10, 35), Transition("cut", 60, 61)]
    cut_in = chain_fades([Transition("fade", 10, 20), Transition("cut", 25, 26)],
                         dark.__contains__, max_black=24)
    assert cut_in == [Transition("fade", 10, 26)]
    # two cuts around a dark shot are not a fade; nor is a long black stretch
    assert len(chain_fades([Transition("cut", 19, 20), Transition("cut", 25, 26)],
                           dark.__contains__, 24)) == 2
    assert len(chain_fades([Transition("fade", 10, 20), Transition("fade", 25, 35)],
                           dark.__contains__, max_black=3)) == 2


def test_a_fade_whose_ends_are_a_step_from_black_stays_one_fade():
    """Real footage: the last step of a fade-out (luma 12, not flat enough to be black) ends
    one transition and the first black frame starts the black; a fade-out the network calls a
    dissolve (it only sees a mix) is one too. Black strictly between them joins them."""
    dark = set(range(476, 479))  # 475 is a step from black, 478 the last black frame
    out = chain_fades([Transition("dissolve", 467, 475), Transition("fade", 478, 493)],
                      dark.__contains__, max_black=24)
    assert out == [Transition("fade", 467, 493)]
    both = chain_fades([Transition("dissolve", 467, 475), Transition("dissolve", 478, 493)],
                       dark.__contains__, max_black=24)
    assert both == [Transition("fade", 467, 493)]
    # a shot between them that is not all black keeps them apart
    lit = dark - {477}
    assert len(chain_fades([Transition("dissolve", 467, 475), Transition("fade", 478, 493)],
                           lit.__contains__, max_black=24)) == 2
    # two overlapping dissolves are not a fade, and two cuts around black frames are two cuts
    assert chain_fades([Transition("dissolve", 10, 20), Transition("dissolve", 18, 30)],
                       dark.__contains__, max_black=24)[0].kind == "dissolve"
    assert len(chain_fades([Transition("cut", 474, 475), Transition("cut", 478, 479)],
                           dark.__contains__, max_black=24)) == 2
