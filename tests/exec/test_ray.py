"""The Ray executor on a real local cluster: a head without CPUs and 1-CPU worker nodes.

Same clips as the local executor (tasks, forced actors, fractional-GPU actors); a worker node
removed mid-run loses nothing and doubles nothing; a driver killed mid-run resumes. They run
only when selected with ``-m ray`` (``pip install -e '.[ray]'`` first).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from clipfactory.config import Config, RayConfig
from clipfactory.exec.ray import RayExecutor
from clipfactory.pipeline import run
from clipfactory.records import SourceItem, VideoResult
from clipfactory.testing.synth import ShotSpec, write_video
from clipfactory.worker import process_video
from tests.exec.test_memory import PAGES_PER_ROUND, churn_task, glibc

ray = pytest.importorskip("ray")
pytestmark = [pytest.mark.ray, pytest.mark.timeout(240)]

STORE = 80 << 20  # records only: the object store can be tiny
VIDEOS = 6


@pytest.fixture(scope="module", autouse=True)
def _only_when_asked(request):
    """A cluster costs a minute of CPU: run these only under ``-m ray`` (as .ci/run does)."""
    if "ray" not in (request.config.getoption("markexpr") or "").replace("not ray", ""):
        pytest.skip("Ray cluster tests run with -m ray")


@pytest.fixture(scope="module")
def cluster():
    from ray.cluster_utils import Cluster

    c = Cluster(initialize_head=True, connect=False,
                head_node_args={"num_cpus": 0, "include_dashboard": False,
                                "object_store_memory": STORE})
    c.add_node(num_cpus=1, object_store_memory=STORE)
    c.add_node(num_cpus=1, num_gpus=1, object_store_memory=STORE)  # a GPU Ray only counts
    ray.init(address=c.address, logging_level=logging.WARNING, configure_logging=False)
    c.wait_for_nodes()
    yield c
    ray.shutdown()
    c.shutdown()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    d = tmp_path_factory.mktemp("ray_corpus")
    for v in range(VIDEOS):
        write_video(d / f"v{v}.mp4", [ShotSpec(66, "texture", 10 * v + 1),
                                      ShotSpec(72, "texture", 10 * v + 2)], width=160, height=90)
    return d


@pytest.fixture(scope="module")
def reference(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("ray_ref") / "out"
    run(corpus, out, Config(workers=1))
    clips = _clips(out)
    assert len(clips) == 2 * VIDEOS
    return clips


def traced_task(item: SourceItem, cfg: Config, staging: str) -> VideoResult:
    """process_video, writing where each attempt started and ended to OUTPUT/trace.jsonl."""
    trace = Path(staging).parent / "trace.jsonl"
    ctx = ray.get_runtime_context()
    line = {"item": item.item_key, "node": ctx.get_node_id(), "pid": os.getpid(),
            "gpus": [str(g) for g in ray.get_gpu_ids()]}
    with open(trace, "a", encoding="utf-8") as f:
        f.write(json.dumps({**line, "event": "start"}) + "\n")
    result = process_video(item, cfg, staging)
    with open(trace, "a", encoding="utf-8") as f:
        f.write(json.dumps({**line, "event": "end"}) + "\n")
    return result


def _trace(out: Path) -> list[dict]:
    path = out / "trace.jsonl"
    if not path.is_file():
        return []
    return [json.loads(s) for s in path.read_text(encoding="utf-8").splitlines() if s.strip()]


def _clips(out: Path) -> list[tuple]:
    rows = pq.read_table(out / "index.parquet").to_pylist()
    return sorted((r["clip_id"], r["start_frame"], r["end_frame"], r["num_frames"]) for r in rows)


def _assert_complete(out: Path, reference: list[tuple]) -> None:
    assert _clips(out) == reference
    keys = []
    for shard in sorted((out / "shards").iterdir()):
        with tarfile.open(shard) as t:
            keys += [m.name.split(".")[0] for m in t.getmembers() if m.name.endswith(".mp4")]
    assert sorted(keys) == [c[0] for c in reference]  # every clip exactly once in the shards
    staging = out / "staging"
    assert not staging.exists() or not any(p.is_file() for p in staging.rglob("*"))


def test_same_clips_as_the_local_executor(cluster, corpus, reference, tmp_path):
    summary = run(corpus, tmp_path / "out", Config(executor="ray"))
    _assert_complete(tmp_path / "out", reference)
    assert summary["counts"]["videos"]["done"] == VIDEOS
    assert summary["throughput"]["workers"] == 2  # the two 1-CPU nodes


@pytest.mark.parametrize("ray_cfg", [RayConfig(actors=True),
                                     RayConfig(cpus_per_video=0.5, gpus_per_video=0.5)],
                         ids=["cpu-actors", "half-gpu-actors"])
def test_actor_pool_gives_the_same_clips(cluster, corpus, reference, tmp_path, ray_cfg):
    out = tmp_path / "out"
    run(corpus, out, Config(executor="ray", ray=ray_cfg), executor=RayExecutor(task=traced_task))
    _assert_complete(out, reference)
    starts = [t for t in _trace(out) if t["event"] == "start"]
    assert sorted(t["item"] for t in starts) == sorted({t["item"] for t in starts})
    assert len(starts) == VIDEOS
    if ray_cfg.gpus_per_video:  # two actors share the one GPU; no actor on the CPU-only node
        gpu_node = next(n["NodeID"] for n in ray.nodes() if n["Resources"].get("GPU"))
        assert {t["node"] for t in starts} == {gpu_node}
        assert all(t["gpus"] == ["0"] for t in starts)
        assert len({t["pid"] for t in starts}) <= 2


def gated_task(item: SourceItem, cfg: Config, staging: str, victim: str) -> VideoResult:
    """traced_task, where the victim node is slow and the others wait until it has a video.

    However late the victim's worker starts, it holds a video when the first results arrive.
    """
    trace = Path(staging).parent
    if ray.get_runtime_context().get_node_id() == victim:
        f = open(trace / "trace.jsonl", "a", encoding="utf-8")  # noqa: SIM115
        f.write(json.dumps({"item": item.item_key, "node": victim, "event": "claim"}) + "\n")
        f.close()
        time.sleep(3.0)
    else:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any(
                t["node"] == victim for t in _trace(trace)):
            time.sleep(0.05)
    return traced_task(item, cfg, staging)


class _RemoveNodeMidRun:
    """Pass results through; after the first, remove ``node`` (from a thread, so the run goes
    on meanwhile) once it is running a video."""

    def __init__(self, inner: RayExecutor, cluster, node, out: Path) -> None:
        self.inner, self.cluster, self.node, self.out = inner, cluster, node, out
        self.lost: set[str] = set()
        self.thread = threading.Thread(target=self._remove_when_busy, daemon=True)

    def map(self, items: Iterable[SourceItem], cfg: Config, staging) -> Iterator[VideoResult]:
        for i, result in enumerate(self.inner.map(items, cfg, staging)):
            if i == 0:
                self.thread.start()
            yield result
        self.thread.join()

    def _remove_when_busy(self) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            here = [t for t in _trace(self.out) if t["node"] == self.node.node_id]
            started = {t["item"] for t in here if t["event"] in ("claim", "start")}
            running = started - {t["item"] for t in here if t["event"] == "end"}
            if running:
                self.cluster.remove_node(self.node)
                self.lost = running
                return
            time.sleep(0.05)


@pytest.mark.parametrize("actors", [False, True], ids=["tasks", "actors"])
def test_a_worker_node_removed_mid_run_loses_nothing(cluster, corpus, reference, tmp_path,
                                                     actors):
    extra = cluster.add_node(num_cpus=1, object_store_memory=STORE)
    cluster.wait_for_nodes()
    out = tmp_path / "out"
    task = functools.partial(gated_task, victim=extra.node_id)
    chaos = _RemoveNodeMidRun(RayExecutor(task=task), cluster, extra, out)
    cfg = Config(executor="ray", ray=RayConfig(actors=actors))
    summary = run(corpus, out, cfg, executor=chaos)
    assert chaos.lost, "no video was running on the removed node; the test proved nothing"
    ends = [t for t in _trace(out) if t["event"] == "end"]
    for item in chaos.lost:  # retried elsewhere and finished there
        assert any(t["item"] == item and t["node"] != extra.node_id for t in ends)
    videos = summary["counts"]["videos"]
    assert (videos["done"], videos["failed"]) == (VIDEOS, 0)
    _assert_complete(out, reference)


def _cli(cluster, corpus, out) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "clipfactory.cli", "run", "--input", str(corpus), "--output",
         str(out), "--executor", "ray", "--ray-address", cluster.address, "--quiet"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)


def _recorded(ledger: Path) -> tuple[int, int]:
    """(videos recorded, videos registered), (0, 0) while the ledger is not readable."""
    try:
        db = sqlite3.connect(f"file:{ledger}?mode=ro", uri=True, timeout=1)
        try:
            rows = db.execute("SELECT state FROM videos").fetchall()
        finally:
            db.close()
    except sqlite3.Error:
        return 0, 0
    return sum(s != "pending" for (s,) in rows), len(rows)


def test_a_driver_killed_mid_run_resumes(cluster, corpus, reference, tmp_path):
    out = tmp_path / "out"
    proc = _cli(cluster, corpus, out)
    deadline = time.monotonic() + 120
    while _recorded(out / "ledger.sqlite")[0] < 1 and proc.poll() is None:
        assert time.monotonic() < deadline, "no video recorded in 120 s"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the driver; its tasks die with its job
    proc.wait()
    done, total = _recorded(out / "ledger.sqlite")
    assert 1 <= done < total == VIDEOS, "the run finished before the kill; it proved nothing"

    proc = _cli(cluster, corpus, out)
    _, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, err.decode()
    _assert_complete(out, reference)


def flaky_task(item: SourceItem, cfg: Config, staging: str) -> VideoResult:
    """Kill the worker process on 'crash', hang on 'hang', succeed otherwise."""
    if item.source == "crash":
        os._exit(3)
    if item.source == "hang":
        time.sleep(600)
    return VideoResult(item=item, video_id=item.source)


@pytest.mark.parametrize("actors", [False, True], ids=["tasks", "actors"])
def test_crashing_and_hanging_videos_fail_alone(cluster, tmp_path, actors):
    cfg = Config(executor="ray", ray=RayConfig(actors=actors, max_retries=1))
    ex = RayExecutor(timeout_s=4.0, task=flaky_task)
    items = [SourceItem(item_key=f"k:{n}", source=n) for n in ("a", "crash", "hang", "b", "c")]
    results = {r.item.source: r for r in ex.map(items, cfg, tmp_path / "staging")}
    assert sorted(results) == ["a", "b", "c", "crash", "hang"]
    # a task's worker process died; an actor died (Ray cannot tell a crash from a lost node)
    assert results["crash"].rejection.reason == ("worker_lost" if actors else "worker_crashed")
    assert results["hang"].rejection.reason == "timeout"
    assert all(results[n].rejection is None for n in "abc")


@glibc
@pytest.mark.parametrize("actors", [False, True], ids=["tasks", "actors"])
def test_a_ray_worker_reuses_the_memory_it_frees(cluster, tmp_path, actors):
    """Ray's worker processes get the allocator settings of the local pool's workers: the
    churn of tests/exec/test_memory.py faults its pages in once, not every round."""
    cfg = Config(executor="ray", ray=RayConfig(actors=actors))
    item = SourceItem(item_key="k:churn", source="churn")
    [r] = list(RayExecutor(task=churn_task).map([item], cfg, tmp_path / "staging"))
    assert r.rejection is None
    assert r.decoded_frames < PAGES_PER_ROUND // 10, r.decoded_frames
