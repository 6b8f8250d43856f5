"""The manifest-rerun bench runs end to end on a small manifest (its checks raise if not)."""

from __future__ import annotations

import pytest

from clipfactory.bench.manifest_rerun import measure


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_measure_runs_every_step(tmp_path, fmt):
    out = measure(tmp_path / "work", rows=300, append=20, fmt=fmt)
    assert set(out) == {"first run, parse all", "first run, state kept",
                        "second run, parse all", "second run, state kept",
                        "touched, state kept", "appended, parse all", "appended, state kept"}
    assert all(v >= 0 for v in out.values())
