"""Matching found transitions to the truth, and the per-type tallies."""

from clipfactory.bench.shot_metrics import Tally, match, span_gap, tally


def test_span_gap_is_zero_on_overlap_and_frames_apart_otherwise():
    assert span_gap(("cut", 59, 60), ("cut", 59, 60)) == 0
    assert span_gap(("cut", 59, 60), ("cut", 61, 62)) == 2
    assert span_gap(("dissolve", 100, 120), ("cut", 110, 111)) == 0
    assert span_gap(("dissolve", 100, 120), ("cut", 121, 122)) == 2


def test_match_is_one_to_one_within_the_tolerance_closest_first():
    truth = [("cut", 59, 60), ("cut", 200, 201)]
    found = [("cut", 61, 62), ("cut", 59, 60), ("cut", 203, 204)]
    assert sorted(match(truth, found, 2)) == [(0, 1)]
    assert sorted(match(truth, found, 3)) == [(0, 1), (1, 2)]


def test_tally_counts_by_true_type_and_false_positives_by_claimed_type():
    truth = [("cut", 59, 60), ("dissolve", 100, 120), ("fade", 200, 230)]
    found = [("cut", 59, 60), ("cut", 110, 111), ("dissolve", 99, 121), ("fade", 400, 420)]
    shots = [{"kind": "texture", "first": 0, "last": 100},
             {"kind": "fastpan", "first": 231, "last": 500}]
    t = tally(Tally(), truth, found, shots, tolerance=2)
    assert t.tp == {"cut": 1, "dissolve": 1} and t.fn == {"fade": 1}
    assert t.fp == {"cut": 1, "fade": 1}  # the extra cut inside the dissolve, the far fade
    assert t.fp_where == {"transition": 1, "fastpan": 1}
    assert t.covered["dissolve"] == 1 and t.typed["dissolve"] == 1
    p, r, f1 = t.prf(["cut", "dissolve", "fade"])
    assert (p, r) == (2 / 4, 2 / 3) and abs(f1 - 2 * p * r / (p + r)) < 1e-12
    assert t.prf(["cut"]) == (0.5, 1.0, 2 / 3)
