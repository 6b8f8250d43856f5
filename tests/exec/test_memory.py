"""Keeping freed memory for reuse within a video (clipfactory.memory.reuse_freed_memory), and
handing it back between videos (release_memory)."""

from __future__ import annotations

import gc
import json
import resource
import subprocess
import sys
import textwrap
import weakref
from pathlib import Path

import numpy as np
import pytest

from clipfactory.config import Config
from clipfactory.exec.local import LocalExecutor
from clipfactory.memory import _mallopt, peak_rss_mib, release_memory
from clipfactory.records import SourceItem, VideoResult

glibc = pytest.mark.skipif(_mallopt() is None, reason="the allocator settings are glibc's")
BLOCKS, ROUNDS = 48, 8  # MiB allocated per round, in 1 MiB blocks; rounds measured
PAGES_PER_ROUND = BLOCKS * (1 << 20) // resource.getpagesize()


def churn_faults() -> int:
    """Minor page faults while ``ROUNDS`` times ``BLOCKS`` 1-MiB arrays are allocated, written
    and freed, as the analysis pass does with its buffers (after one round that warms up)."""
    def churn() -> None:
        held = [np.ones(1 << 20, np.uint8) for _ in range(BLOCKS)]
        del held

    churn()
    f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(ROUNDS):
        churn()
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0


def churn_task(item: SourceItem, cfg: Config, staging: str) -> VideoResult:
    """The page faults of :func:`churn_faults` in a pipeline worker (spawned: it imports this
    module by name)."""
    return VideoResult(item=item, video_id=item.source, decoded_frames=churn_faults())


def _in_plain_process(script: str) -> dict:
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], capture_output=True,
                         text=True, timeout=120, check=True,
                         cwd=Path(__file__).resolve().parents[2])  # tests/ importable
    return json.loads(out.stdout)


@glibc
def test_a_worker_reuses_the_memory_it_frees():
    """In a pipeline worker the churn faults its pages in once; in a plain process, where
    glibc gives the freed blocks back at once, it faults them in again every round."""
    item = SourceItem(item_key="k:churn", source="churn")
    [worker] = list(LocalExecutor(workers=1, task=churn_task).map([item], Config(), "."))
    plain = _in_plain_process("""
        import json
        from tests.exec.test_memory import churn_faults
        print(json.dumps({"faults": churn_faults()}))""")["faults"]
    assert plain > ROUNDS * PAGES_PER_ROUND // 2, plain  # the pattern this setting is for
    assert worker.decoded_frames < PAGES_PER_ROUND // 10, (worker.decoded_frames, plain)


@glibc
def test_release_still_hands_back_what_reuse_keeps():
    got = _in_plain_process("""
        import json
        import numpy as np
        from clipfactory.memory import release_memory, reuse_freed_memory

        def rss():
            for line in open("/proc/self/status"):
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        took = reuse_freed_memory()
        base = rss()
        held = [np.ones(1 << 20, np.uint8) for _ in range(64)]
        del held
        kept = rss()
        release_memory()
        print(json.dumps({"took": took, "base": base, "kept": kept, "after": rss()}))""")
    assert got["took"] is True
    assert got["kept"] - got["base"] > 48, got  # freed, but kept for the next allocation
    assert got["kept"] - got["after"] > 48, got  # and handed back after the video


class _Node:
    def __init__(self) -> None:
        self.pixels = np.ones((1080, 1920), np.uint8)
        self.me = self  # a reference cycle: only the cyclic collector frees it


def test_release_frees_reference_cycles() -> None:
    gc.disable()  # no automatic collection may free it first
    try:
        node = _Node()
        alive = weakref.ref(node)
        del node
        assert alive() is not None  # still held by its own cycle
        release_memory()
        assert alive() is None
    finally:
        gc.enable()


def test_peak_rss_is_read_from_this_process() -> None:
    before = peak_rss_mib()
    block = np.ones(64 << 20, np.uint8)  # 64 MiB touched
    assert peak_rss_mib() >= before
    assert peak_rss_mib() >= block.nbytes / (1 << 20)
