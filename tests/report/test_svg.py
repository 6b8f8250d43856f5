"""SVG charts: every bar carries the count of its bin or label, and text is escaped."""

from __future__ import annotations

import numpy as np

from clipfactory.report.svg import bar_chart, histogram, histogram_edges
from tests.report.htmltree import parse


def _bars(svg: str):
    root, errors = parse(svg)
    assert errors == []
    return root.find_all(lambda n: "bar" in n.attrs.get("class", "").split())


def test_histogram_bars_count_every_value_in_their_bin():
    rng = np.random.default_rng(0)
    kept, dropped = rng.normal(5, 2, 1000), rng.uniform(0, 3, 77)
    svg = histogram("x", {"kept": kept, "dropped": np.append(dropped, np.nan)}, bins=12)
    bars = _bars(svg)
    for name, values in (("kept", kept), ("dropped", dropped)):
        mine = [b for b in bars if b.attrs["data-series"] == name]
        assert len(mine) == 12
        assert sum(int(b.attrs["data-count"]) for b in mine) == len(values)
        for i, b in enumerate(mine):
            lo, hi = float(b.attrs["data-lo"]), float(b.attrs["data-hi"])
            inside = (values >= lo) & ((values < hi) if i < 11 else (values <= hi))
            assert int(b.attrs["data-count"]) == int(inside.sum())


def test_histogram_of_one_repeated_value_and_of_nothing():
    [bar] = _bars(histogram("x", {"kept": np.full(5, 3.0)}, bins=10))
    assert bar.attrs["data-count"] == "5"
    assert float(bar.attrs["data-lo"]) < 3.0 < float(bar.attrs["data-hi"])
    assert list(histogram_edges([np.empty(0)])) == [0.0, 1.0]
    assert {b.attrs["data-count"] for b in _bars(histogram("x", {"kept": np.empty(0)}))} == {"0"}


def test_bar_chart_counts_labels_and_escapes():
    svg = bar_chart("t <b>", {"a&b": 3, "<script>": 1, "c": 7})
    assert "<script>" not in svg and "<b>" not in svg
    bars = _bars(svg)
    assert [(b.attrs["data-label"], b.attrs["data-count"]) for b in bars] == [
        ("c", "7"), ("a&b", "3"), ("<script>", "1")]


def test_bar_chart_sums_the_tail_into_other():
    counts = {f"l{i:02d}": 100 - i for i in range(30)}
    bars = _bars(bar_chart("t", counts, limit=5))
    assert len(bars) == 5 and bars[-1].attrs["data-label"].startswith("other (26 more)")
    assert sum(int(b.attrs["data-count"]) for b in bars) == sum(counts.values())


def test_values_a_rounding_apart_are_one_value():
    """A kept clip's duration of 2.4 s (rounded in the index) and a dropped one's computed
    as 2.4000000000000004: numpy cannot make 20 bins of that range, and the raised error
    left the run without its report."""
    svg = histogram("x", {"kept": np.array([2.4, 2.4]), "dropped": np.array([2.4 + 4e-16])})
    bars = _bars(svg)
    assert sorted((b.attrs["data-series"], b.attrs["data-count"]) for b in bars) == [
        ("dropped", "1"), ("kept", "2")]
    lo, hi = float(bars[0].attrs["data-lo"]), float(bars[0].attrs["data-hi"])
    assert lo < 2.4 < hi
    edges = histogram_edges([np.array([1.0, 1.0 + 1e-6])], bins=4)
    assert len(edges) == 5  # a range that is real still gets its bins
