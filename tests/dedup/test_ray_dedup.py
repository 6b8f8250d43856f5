"""Near-duplicate grouping with its LSH tables as Ray tasks, on a real local cluster (a head
without CPUs, two 1-CPU nodes): the groups of the in-memory path, and ``dedup --full`` under
``executor: ray`` keeps what the local one keeps. Run with ``-m ray``."""

from __future__ import annotations

import shutil
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from clipfactory.config import Config
from clipfactory.dedup import DedupItem, find_duplicates
from clipfactory.dedup.perceptual import near_duplicate_groups
from clipfactory.ledger import Ledger
from clipfactory.pipeline import run
from clipfactory.sinks.parts import read_index
from clipfactory.testing.ray_cluster import skip_unless_ray_asked, two_node_cluster
from clipfactory.testing.synth import ShotSpec, write_video
from tests.dedup.test_lsh_tables import planted

ray = pytest.importorskip("ray")
pytestmark = [pytest.mark.ray, pytest.mark.timeout(300)]


@pytest.fixture(scope="module", autouse=True)
def _only_when_asked(request):
    skip_unless_ray_asked(request)


@pytest.fixture(scope="module")
def cluster():
    yield from two_node_cluster()


def _tuples(hashes: np.ndarray) -> list[tuple[int, ...]]:
    return [tuple(int(x) for x in row) for row in hashes]


def test_ray_groups_equal_in_memory_groups(cluster) -> None:
    from clipfactory.dedup.ray_dedup import near_duplicate_groups_ray

    # two K populations (5 and 3 frames) and a few clips without hashes, interleaved
    five, three = _tuples(planted(20_000, k=5, seed=3)), _tuples(planted(3_000, k=3, seed=4))
    phashes = [h for pair in zip(five, three + [()] * (len(five) - len(three)), strict=True)
               for h in pair]
    here: dict = {}
    want = near_duplicate_groups(phashes, 10, stats=here)
    on_ray: dict = {}
    got = near_duplicate_groups_ray(phashes, 10, stats=on_ray)
    assert got == want  # same groups, same order
    assert len(want) > 300 and on_ray == here  # the counters too: tables are merged in order
    assert near_duplicate_groups_ray(phashes, 10, bands=2, window=4) == near_duplicate_groups(
        phashes, 10, bands=2, window=4)


def test_find_duplicates_takes_the_ray_grouping(cluster) -> None:
    from clipfactory.dedup.ray_dedup import near_duplicate_groups_ray

    hashes = _tuples(planted(5_000, seed=5))
    items = [DedupItem(f"c{i:05d}", None, h, 64 + i % 7, 64, 10) for i, h in enumerate(hashes)]
    cfg = Config().dedup
    local = find_duplicates(items, cfg)
    assert len(local) > 100
    assert find_duplicates(items, cfg, near=near_duplicate_groups_ray) == local


def _reencoded(src: Path, dst: Path) -> None:
    """A lossy re-encode: other bytes and pixels, about the same perceptual hashes."""
    with av.open(str(src)) as i, av.open(str(dst), "w") as o:
        s = o.add_stream("libx264", rate=30)
        s.width, s.height, s.pix_fmt = 160, 96, "yuv420p"
        s.options = {"crf": "30", "preset": "ultrafast"}
        for k, f in enumerate(i.decode(video=0)):
            g = f.reformat(format="yuv420p")
            g.pts, g.time_base = k, Fraction(1, 30)
            o.mux(s.encode(g))
        o.mux(s.encode(None))


def _kept_and_dropped(out: Path) -> tuple[list[str], list[tuple[str, str | None, str]]]:
    ledger = Ledger(out / "ledger.sqlite")
    try:
        kept = sorted(c.clip_id for c in ledger.clips("sharded"))
        dropped = sorted((c.clip_id, c.duplicate_of, c.reason) for c in ledger.clips("dropped")
                         if c.stage == "dedup")
    finally:
        ledger.close()
    return kept, dropped


def test_full_rededup_on_ray_keeps_what_the_local_one_keeps(cluster, tmp_path) -> None:
    from clipfactory.finalize import full_rededup

    src = tmp_path / "src"
    src.mkdir()
    for i in range(2):
        shots = [ShotSpec(70, "texture", 10 * i + 1), ShotSpec(80, "texture", 10 * i + 2)]
        v = write_video(src / f"v{i}.mp4", shots, width=160, height=96, gop=20).path
        _reencoded(Path(v), src / f"v{i}_copy.mp4")
    first = tmp_path / "first"
    run(src, first, Config(workers=1, skip=["dedup"]))  # every copy kept: --full must find them
    outs = {}
    for executor in ("local", "ray"):
        out = outs[executor] = tmp_path / executor
        shutil.copytree(first, out)
        ledger = Ledger(out / "ledger.sqlite")
        try:
            summary = full_rededup(out, Config(workers=1, executor=executor), ledger)
        finally:
            ledger.close()
        assert summary["rededup"]["removed"] >= 4  # a copy of each clip
    local, on_ray = _kept_and_dropped(outs["local"]), _kept_and_dropped(outs["ray"])
    assert on_ray == local
    assert {reason for _, _, reason in local[1]} == {"near_duplicate"}
    assert read_index(outs["ray"]).to_pylist() == read_index(outs["local"]).to_pylist()
