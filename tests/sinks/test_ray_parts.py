"""Index parts written by Ray tasks, on a real local cluster (a head without CPUs, two 1-CPU
nodes): the same files, rows and statistics as the parts the driver writes. Run with ``-m ray``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from clipfactory.bench.scale_data import build_dataset
from clipfactory.config import Config
from clipfactory.finalize import finalize
from clipfactory.ledger import Ledger
from clipfactory.records import ClipRecord
from clipfactory.sinks.partition import MAP_MIN_PARTS, refresh_parts, shard_rows
from clipfactory.sinks.parts import index_parts, read_index
from clipfactory.sinks.stats import kept_stats
from clipfactory.testing.ray_cluster import skip_unless_ray_asked, two_node_cluster

ray = pytest.importorskip("ray")
pytestmark = [pytest.mark.ray, pytest.mark.timeout(300)]

SHARDS = 12  # > MAP_MIN_PARTS: the first finalize of an older output, or after dedup --full


@pytest.fixture(scope="module", autouse=True)
def _only_when_asked(request):
    skip_unless_ray_asked(request)


@pytest.fixture(scope="module")
def cluster():
    yield from two_node_cluster()


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    """12 shards of 1000 clips; its first finalize wrote the parts in the driver."""
    out = tmp_path_factory.mktemp("ray-parts") / "out"
    build_dataset(out, SHARDS * 1000, Config(), workers=0)
    return out


def _copy_without_parts(dataset: Path, out: Path) -> None:
    """The dataset as if written before index parts existed: no parts, none recorded."""
    shutil.copytree(dataset, out)
    shutil.rmtree(out / "index")
    (out / "index.parquet").unlink(missing_ok=True)
    ledger = Ledger(out / "ledger.sqlite")
    try:
        ledger.db.execute("UPDATE shards SET part_sha = NULL, stats = NULL")
    finally:
        ledger.close()


def _parts(out: Path) -> dict[str, bytes]:
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in index_parts(out)}


def _shard_stats(out: Path) -> list[tuple[str, str, dict[str, Any]]]:
    ledger = Ledger(out / "ledger.sqlite")
    try:
        return [(r[0], r[1], json.loads(r[2])) for r in ledger.db.execute(
            "SELECT name, part_sha, stats FROM shards ORDER BY name")]
    finally:
        ledger.close()


def test_parts_written_by_ray_tasks_equal_the_driver_ones(cluster, dataset, tmp_path) -> None:
    out = tmp_path / "out"
    _copy_without_parts(dataset, out)
    ledger = Ledger(out / "ledger.sqlite")
    try:
        summary = finalize(out, Config(executor="ray"), ledger)  # finalize's own wiring
    finally:
        ledger.close()
    assert summary["counts"]["clips"]["kept"] == SHARDS * 1000
    assert len(_parts(dataset)) == SHARDS
    assert _parts(out) == _parts(dataset)  # byte for byte
    assert read_index(out).equals(read_index(dataset))
    assert _shard_stats(out) == _shard_stats(dataset)  # part_sha and statistics recorded


def _where(clips: list[ClipRecord]) -> dict[str, Any]:
    """Statistics that say where they were computed."""
    return {"node": ray.get_runtime_context().get_node_id(), "clips": len(clips)}


def test_the_parts_are_written_on_the_worker_nodes(cluster, dataset, tmp_path) -> None:
    from clipfactory.sinks.ray_parts import map_parts_ray

    out = tmp_path / "out"
    _copy_without_parts(dataset, out)
    ledger = Ledger(out / "ledger.sqlite")
    try:
        names = [s["name"] for s in ledger.shards()]
        jobs = ((n, shard_rows(ledger, n)) for n in names)
        done = dict(map_parts_ray(out, jobs, _where))
    finally:
        ledger.close()
    workers = {n["NodeID"] for n in ray.nodes() if n["Resources"].get("CPU")}
    assert sorted(done) == sorted(names)
    assert {s["node"] for s in done.values()} <= workers  # never the driver's head node
    assert all(s["clips"] == 1000 for s in done.values())
    assert _parts(out) == _parts(dataset)


def test_few_stale_parts_stay_in_the_driver(dataset, tmp_path) -> None:
    def refuse(*args: Any) -> Any:
        raise AssertionError("a mapper for a handful of parts")

    out = tmp_path / "out"
    shutil.copytree(dataset, out)
    ledger = Ledger(out / "ledger.sqlite")
    try:
        ledger.db.execute("UPDATE shards SET part_sha = NULL WHERE name IN (SELECT name FROM"
                          " shards ORDER BY name LIMIT ?)", (MAP_MIN_PARTS,))
        upd = refresh_parts(out, ledger, kept_stats, map_parts=refuse)
    finally:
        ledger.close()
    assert upd.index_written == MAP_MIN_PARTS
    assert _parts(out) == _parts(dataset)
