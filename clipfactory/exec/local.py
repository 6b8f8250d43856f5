"""Local executor: a pool of worker processes, a bounded number of videos in flight.

Workers are separate processes (spawned, not forked: FFmpeg and thread pools do not survive a
fork well), so a decoder that crashes on a hostile file takes down one worker, not the run.
When the pool breaks, the videos that were in flight are retried one at a time; the one that
crashes again on its own is recorded as failed with ``worker_crashed``. A video that runs past
``timeout_s`` (a decoder stuck on a hostile file) is recorded as failed with ``timeout``; the
pool is killed and restarted and the other videos in flight are queued again.
"""

from __future__ import annotations

import signal
import time
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from clipfactory.config import Config
from clipfactory.exec.pool import did_not_start, spawn_pool
from clipfactory.memory import reuse_freed_memory
from clipfactory.records import Rejection, SourceItem, VideoResult
from clipfactory.worker import process_video

__all__ = ["LocalExecutor"]


def _failed(item: SourceItem, reason: str, detail: str) -> VideoResult:
    return VideoResult(item=item, rejection=Rejection(item.item_key, item.source, "internal",
                                                      reason, detail, video_id=item.id))


def _crashed(item: SourceItem, err: BaseException) -> VideoResult:
    return _failed(item, "worker_crashed",
                   f"the worker process died while processing this input ({type(err).__name__})")


class _Feed:
    """The items still to run: the caller's iterator, pulled lazily, plus items put back."""

    def __init__(self, items: Iterable[SourceItem]) -> None:
        self._it: Iterator[SourceItem] | None = iter(items)
        self._back: deque[SourceItem] = deque()

    def next(self) -> SourceItem | None:
        if self._back:
            return self._back.popleft()
        if self._it is not None:
            item = next(self._it, None)
            if item is not None:
                return item
            self._it = None
        return None

    def extendleft(self, items: Iterable[SourceItem]) -> None:
        self._back.extendleft(items)

    def __bool__(self) -> bool:
        if self._back:
            return True
        item = self.next()  # pulls one to know (an iterator cannot say without it)
        if item is None:
            return False
        self._back.appendleft(item)
        return True


def _worker_start() -> None:
    """A video worker's set-up. Ctrl-C is the driver's to act on: it kills the workers (their
    videos stay pending). A worker of the terminal's process group that took the SIGINT
    itself would die on its own while idle, printing a traceback from the pool's queue,
    before the driver got to it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    reuse_freed_memory()


def _kill(pool: ProcessPoolExecutor) -> None:
    # no public API kills a running task; the processes are ours to end
    for proc in list(getattr(pool, "_processes", {}).values()):
        proc.kill()


class LocalExecutor:
    """Run :func:`process_video` over items with ``workers`` processes."""

    def __init__(self, workers: int = 1, timeout_s: float | None = None,
                 task: Callable[[SourceItem, Config, str | Path], VideoResult] = process_video
                 ) -> None:
        self.workers = max(1, workers)
        self.max_in_flight = self.workers  # no queue in the pool: submitted means started
        self.timeout_s = timeout_s if timeout_s and timeout_s > 0 else None
        self.task = task

    def _pool(self) -> ProcessPoolExecutor:
        # a worker's allocator keeps what a video frees for reuse (see reuse_freed_memory)
        return spawn_pool(self.workers, _worker_start)

    def map(self, items: Iterable[SourceItem], cfg: Config,
            staging: str | Path) -> Iterator[VideoResult]:
        """Yield one result per item, in completion order. ``items`` is pulled one at a time
        when a worker is free, so it may be a lazy iterator that blocks (the prefetcher)."""
        if cfg.workers != self.workers:  # workers split the CPUs by the pool's actual size
            cfg = cfg.model_copy(update={"workers": self.workers})
        todo = _Feed(items)
        suspects: deque[SourceItem] = deque()
        while todo or suspects:
            pool = self._pool()
            killed = False
            try:
                killed = yield from self._drain(pool, todo, suspects, cfg, staging)
            except BaseException:  # the caller stopped (a full disk, Ctrl-C, an error):
                killed = True  # what runs now would be thrown away, so it stops at once
                raise
            finally:
                if killed:
                    _kill(pool)
                pool.shutdown(wait=True, cancel_futures=True)

    def _drain(self, pool: ProcessPoolExecutor, todo: _Feed,
               suspects: deque[SourceItem], cfg: Config,
               staging: str | Path) -> Generator[VideoResult, None, bool]:
        """Run until all is done (return False) or the pool must be killed (return True)."""
        running: dict[Future[VideoResult], tuple[SourceItem, float]] = {}
        broken: list[BrokenProcessPool] = []

        def submit(item: SourceItem, back: Callable[[SourceItem], None]) -> bool:
            try:
                fut = pool.submit(self.task, item, cfg, str(staging))
            except BrokenProcessPool as e:
                # a worker died since the last wait (while the driver pulled the next input:
                # a download, or the caller's own work): the pool takes no more. The input is
                # put back, unblamed; the running ones tell whose crash it was
                back(item)
                broken.append(e)
                return False
            running[fut] = (item, time.monotonic())
            return True

        while running or suspects or todo:  # `todo` last: asking it may block on a download
            # suspects of an earlier crash run alone, so a second crash names its culprit
            alone = bool(suspects) and not running
            if alone:
                submit(suspects.popleft(), suspects.appendleft)
            elif not suspects:
                while len(running) < self.max_in_flight and (item := todo.next()) is not None:
                    if not submit(item, lambda i: todo.extendleft([i])):
                        break
            if not running:
                if broken and (why := did_not_start(pool, broken[0])) is not None:
                    raise why from broken[0]  # the pool, not the inputs: none is blamed
                if broken:
                    return False  # a fresh pool for what is left
                break
            done, _ = wait(running, timeout=self._wait_s(running), return_when=FIRST_COMPLETED)
            late = self._late(running) if not done else []
            if late:
                for fut in late:
                    yield _failed(running.pop(fut)[0], "timeout",
                                  f"no result after {self.timeout_s:.0f} s; the worker was stopped")
                todo.extendleft(reversed([item for item, _ in running.values()]))
                return True
            for fut in done:
                item, _ = running.pop(fut)
                try:
                    yield fut.result()
                except BrokenProcessPool as e:
                    if (why := did_not_start(pool, e)) is not None:
                        raise why from e  # the pool, not the inputs: none is blamed
                    if alone:
                        yield _crashed(item, e)
                    else:
                        suspects.append(item)
                        suspects.extend(item for item, _ in running.values())
                    return False
                except Exception as e:  # pickling trouble and the like: that input alone fails
                    yield _crashed(item, e)
        return False

    def _wait_s(self, running: dict[Future[VideoResult], tuple[SourceItem, float]]
                ) -> float | None:
        if self.timeout_s is None or not running:
            return None
        oldest = min(t for _, t in running.values())
        return max(0.05, oldest + self.timeout_s - time.monotonic())

    def _late(self, running: dict[Future[VideoResult], tuple[SourceItem, float]]
              ) -> list[Future[VideoResult]]:
        if self.timeout_s is None:
            return []
        now = time.monotonic()
        return [f for f, (_, t) in running.items() if now - t >= self.timeout_s]
