"""The ledger-backed semantic dedup bench runs and finds what it planted (no timings asserted)."""

from __future__ import annotations

from clipfactory.bench.semdedup import run_semdedup_bench


def test_semdedup_bench_small(tmp_path):
    r = run_semdedup_bench(n=3000, dim=64, increment=200, workdir=str(tmp_path))
    assert r["clusters"] == 3
    assert r["first"]["planted"] == 150 and r["first"]["planted_dropped"] >= 140
    assert r["first"]["dropped"] - r["first"]["planted_dropped"] <= 3  # few false drops
    assert r["increment"]["clips"] == 200 and r["increment"]["dropped"] >= 9
    assert r["first"]["wall_s"] > 0 and r["peak_rss_mib"] > 0
