"""The local executor survives workers that crash or hang, and loses nothing else."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

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


def _slow_crash_task(item: SourceItem, cfg: Config, staging: str) -> VideoResult:
    if item.source == "crash":
        time.sleep(1.0)  # dies while the driver waits on the next input, not on the pool
        os._exit(3)
    return VideoResult(item=item, video_id=item.source)


def test_a_crash_while_the_driver_waits_on_the_next_input_is_isolated(tmp_path):
    """A worker died while the driver pulled the next input from a lazy source (the URL
    prefetcher blocks for a download): the pool refused the next submit, and its
    BrokenProcessPool left the run with a traceback, every input after it pending."""
    def inputs():
        yield from _items("crash", "a")
        time.sleep(3.0)  # a download in progress
        yield from _items("b", "c")

    ex = LocalExecutor(workers=2, task=_slow_crash_task)
    results = {r.item.source: r for r in ex.map(inputs(), Config(), tmp_path)}
    assert sorted(results) == ["a", "b", "c", "crash"]
    assert results["crash"].rejection.reason == "worker_crashed"
    assert all(results[n].rejection is None and results[n].video_id == n for n in "abc")


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


_DRIVER = """
import sys
from clipfactory.config import Config
from clipfactory.exec.local import LocalExecutor
from clipfactory.records import SourceItem
from tests.exec.test_local import flaky_task
items = [SourceItem(item_key="k:hang", source="hang"), SourceItem(item_key="k:a", source="a")]
for _ in LocalExecutor(workers=2, task=flaky_task).map(items, Config(), sys.argv[1]):
    pass
"""


def _children(pid: int) -> list[int]:
    """Live processes whose parent is ``pid`` and that are pool workers."""
    found = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            stat = Path(f"/proc/{d}/stat").read_text()
            cmd = Path(f"/proc/{d}/cmdline").read_bytes()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid and fields[0] != "Z" and b"multiprocessing-fork" in cmd:
            found.append(int(d))
    return found


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_workers_end_when_the_driver_is_killed(tmp_path):
    """A driver killed with SIGKILL (the OOM killer, a power-cut test) leaves no worker behind:
    neither the one busy with a video nor the idle one waiting for its next task."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    driver = subprocess.Popen([sys.executable, "-c", _DRIVER, str(tmp_path)], env=env,
                              start_new_session=True, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        workers: list[int] = []
        while time.monotonic() < deadline and len(workers) < 2:
            assert driver.poll() is None, driver.stderr.read().decode()  # type: ignore[union-attr]
            workers = _children(driver.pid)
            time.sleep(0.1)
        assert len(workers) == 2, "the pool's workers never started"
        time.sleep(1.0)  # one of them is inside the hanging task by now
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and any(_alive(w) for w in workers):
            time.sleep(0.1)
        assert not any(_alive(w) for w in workers), "orphaned workers are still running"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(driver.pid, signal.SIGKILL)


def test_video_workers_leave_ctrl_c_to_the_driver(capfd) -> None:
    """Ctrl-C in a terminal reaches the driver and its idle workers at once. A worker that
    acted on it died by itself with a traceback from the pool's queue (a flaky failure of
    test_cli_signals[group-1]); the driver kills the workers itself."""
    import operator

    pool = LocalExecutor(workers=2)._pool()
    try:
        for _ in range(4):  # both workers started, now idle on the pool's queue
            pool.submit(os.getpid).result(timeout=120)
        procs = list(pool._processes.values())
        assert procs
        for proc in procs:
            os.kill(proc.pid, signal.SIGINT)
        time.sleep(1.0)
        assert all(proc.is_alive() for proc in procs)
        assert pool.submit(operator.add, 1, 2).result(timeout=120) == 3
    finally:
        pool.shutdown()
    assert "KeyboardInterrupt" not in capfd.readouterr().err
