"""The local executor survives workers that crash or hang, and loses nothing else."""

from __future__ import annotations

import os
import time

from clipfactory.config import Config
from clipfactory.exec.local import LocalExecutor
from clipfactory.records import SourceItem, VideoResult


def flaky_task(item: SourceItem, cfg: Config, staging: str) -> VideoResult:
    """Crash the whole worker process on 'crash', hang on 'hang', succeed otherwise."""
    if item.source == "crash":
        os._exit(3)
    if item.source == "hang":
        time.sleep(600)
    return VideoResult(item=item, video_id=item.source, decoded_frames=os.getpid())


def _items(*names):
    return [SourceItem(item_key=f"k:{n}", source=n) for n in names]


def test_a_crashing_input_is_isolated_and_named(tmp_path):
    ex = LocalExecutor(workers=2, task=flaky_task)
    results = {r.item.source: r for r in ex.map(_items("a", "b", "crash", "c", "d"), Config(),
                                                 tmp_path)}
    assert sorted(results) == ["a", "b", "c", "crash", "d"]
    assert results["crash"].rejection.reason == "worker_crashed"
    for name in "abcd":
        assert results[name].rejection is None and results[name].video_id == name


def test_a_hanging_input_times_out_and_the_rest_completes(tmp_path):
    # the clock starts at submit, so the budget includes spawning a worker and importing PyAV:
    # generous enough for a loaded CI machine, far below the 600 s hang
    ex = LocalExecutor(workers=2, timeout_s=10.0, task=flaky_task)
    t0 = time.monotonic()
    results = {r.item.source: r for r in ex.map(_items("a", "hang", "b", "c"), Config(), tmp_path)}
    assert time.monotonic() - t0 < 60
    assert sorted(results) == ["a", "b", "c", "hang"]
    assert results["hang"].rejection.reason == "timeout"
    assert all(results[n].rejection is None for n in "abc")
