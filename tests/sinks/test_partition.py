"""The partitioned index: a run rewrites only the parts it touches, and every reader that
takes a glob (pyarrow, DuckDB, Polars) reads the parts as one table."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from clipfactory.config import Config
from clipfactory.ledger import Ledger
from clipfactory.pipeline import run
from clipfactory.provenance.takedown import takedown, takedown_rules
from clipfactory.sinks.index import index_table
from clipfactory.sinks.parts import index_part, index_parts, read_index, rejected_parts
from clipfactory.sinks.stats import merge_stats
from clipfactory.testing.synth import ShotSpec, write_video


def _video(folder: Path, name: str, seed: int) -> Path:
    shots = [ShotSpec(70, "texture", seed), ShotSpec(80, "texture", seed + 1)]
    return write_video(folder / f"{name}.mp4", shots, width=96, height=64, gop=20).path


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    src = tmp_path_factory.mktemp("partition-src")
    for i in range(3):
        _video(src, f"v{i}", 10 * i + 1)
    return src


def _cfg(**shards: object) -> Config:
    return Config.model_validate({"workers": 1, "shards": {"max_count": 2, **shards}})


def _stat(paths: list[Path]) -> dict[str, tuple[int, int]]:
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in paths}


def test_a_run_writes_only_new_parts_and_the_rows_are_unchanged(corpus, tmp_path) -> None:
    inp, out = tmp_path / "in", tmp_path / "out"
    inp.mkdir()
    for f in sorted(corpus.iterdir())[:2]:
        shutil.copy(f, inp / f.name)
    run(inp, out, _cfg())
    first = _stat(index_parts(out))
    assert len(first) >= 2 and (out / "index.parquet").is_file()
    shutil.copy(sorted(corpus.iterdir())[2], inp / "v2.mp4")
    summary = run(inp, out, _cfg())
    after = _stat(index_parts(out))
    assert {k: after[k] for k in first} == first  # the earlier parts were not rewritten
    assert len(after) > len(first)
    ledger = Ledger(out / "ledger.sqlite")
    try:
        want = index_table(ledger.clips("sharded"))
        shards = [s["name"] for s in ledger.shards()]
    finally:
        ledger.close()
    assert read_index(out).to_pylist() == want.to_pylist()  # same rows, same order
    # the card's statistics: the last merge plus the new shard's = all of them merged afresh
    ledger = Ledger(out / "ledger.sqlite")
    try:
        cached = ledger.get_meta("kept_stats_merged")
        fresh = merge_stats(json.loads(r[0]) for r in ledger.db.execute(
            "SELECT stats FROM shards ORDER BY name"))
    finally:
        ledger.close()
    assert cached["stats"] == fresh and fresh["clips"] == want.num_rows
    assert sorted(cached["parts"]) == sorted(shards)
    assert pq.read_table(out / "index.parquet").to_pylist() == want.to_pylist()
    assert sorted(p.name for p in index_parts(out)) == sorted(
        index_part(out, s).name for s in shards)
    assert summary["counts"]["clips"]["kept"] == want.num_rows
    assert summary["index"]["index_file"] == "index.parquet"


def test_large_datasets_keep_parts_only_and_readers_glob_them(corpus, tmp_path) -> None:
    out = tmp_path / "out"
    run(corpus, out, _cfg(compact_max_clips=0))
    assert not (out / "index.parquet").exists()  # 6 clips > compact_max_clips
    n = read_index(out).num_rows
    assert n >= 3
    import duckdb
    import polars as pl

    glob = str(out / "index" / "**" / "*.parquet")
    assert duckdb.sql(f"SELECT COUNT(*) FROM read_parquet('{glob}')").fetchall() == [(n,)]
    assert pl.scan_parquet(glob).select(pl.len()).collect().item() == n
    assert pq.read_table(out / "index").num_rows == n  # a dataset directory
    from clipfactory.cli import main

    assert main(["compact", str(out)]) == 0
    assert pq.read_table(out / "index.parquet").to_pylist() == read_index(out).to_pylist()


def test_a_takedown_rewrites_only_the_parts_it_touches(corpus, tmp_path) -> None:
    out = tmp_path / "out"
    run(corpus, out, _cfg())
    index = read_index(out)
    victim = index.column("source").to_pylist()[0]
    hit = {s for s, src in zip(index.column("shard").to_pylist(),
                               index.column("source").to_pylist(), strict=True) if src == victim}
    before = _stat(index_parts(out))
    rej_before = _stat(rejected_parts(out))
    takedown(out, takedown_rules(sources=[victim]), "request 7")
    after = _stat(index_parts(out))
    untouched = {index_part(out, s).name for s in set(index.column("shard").to_pylist()) - hit}
    assert untouched and {k: after[k] for k in untouched} == {k: before[k] for k in untouched}
    assert victim not in read_index(out).column("source").to_pylist()
    assert victim not in pq.read_table(out / "index.parquet").column("source").to_pylist()
    rejected = pq.read_table(out / "rejected").to_pylist()
    assert any(r["source"] == victim and r["reason"] == "taken_down" for r in rejected)
    assert not rej_before and len(rejected_parts(out)) == 1  # nothing rejected before


def test_a_lost_part_is_written_again(corpus, tmp_path) -> None:
    """Parts are derived: one that a crash left unwritten (or a user deleted) comes back."""
    out = tmp_path / "out"
    run(corpus, out, _cfg())
    want = read_index(out).to_pylist()
    parts = index_parts(out)
    parts[0].unlink()  # deleted by hand
    ledger = Ledger(out / "ledger.sqlite")
    try:  # killed between registering a shard and writing its part: a stale part on disk
        ledger.db.execute("UPDATE shards SET part_sha = NULL WHERE name = ?",
                          (ledger.shards()[-1]["name"],))
    finally:
        ledger.close()
    pq.write_table(read_index(out).slice(0, 0), parts[-1])
    run(corpus, out, _cfg())
    assert read_index(out).to_pylist() == want
