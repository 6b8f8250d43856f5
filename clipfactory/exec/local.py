"""Local executor: a pool of worker processes, a bounded number of videos in flight.

Workers are separate processes (spawned, not forked: FFmpeg and thread pools do not survive a
fork well), so a decoder that crashes on a hostile file takes down one worker, not the run.
When the pool breaks, the videos that were in flight are retried one at a time; the one that
crashes again on its own is recorded as failed with ``worker_crashed``.
"""

from __future__ import annotations

import multiprocessing as mp
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from clipfactory.config import Config
from clipfactory.records import Rejection, SourceItem, VideoResult
from clipfactory.worker import process_video

__all__ = ["LocalExecutor"]


def _crashed(item: SourceItem, err: BaseException) -> VideoResult:
    return VideoResult(item=item, rejection=Rejection(
        item.item_key, item.source, "internal", "worker_crashed",
        f"the worker process died while processing this input ({type(err).__name__})",
        video_id=item.id))


class LocalExecutor:
    """Run :func:`process_video` over items with ``workers`` processes."""

    def __init__(self, workers: int = 1, max_in_flight: int | None = None,
                 task: Callable[[SourceItem, Config, str | Path], VideoResult] = process_video
                 ) -> None:
        self.workers = max(1, workers)
        self.max_in_flight = max_in_flight or 2 * self.workers
        self.task = task

    def _pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(self.workers, mp_context=mp.get_context("spawn"))

    def map(self, items: Iterable[SourceItem], cfg: Config,
            staging: str | Path) -> Iterator[VideoResult]:
        """Yield one result per item, in completion order."""
        todo: deque[SourceItem] = deque(items)
        suspects: deque[SourceItem] = deque()
        while todo or suspects:
            pool = self._pool()
            try:
                yield from self._drain(pool, todo, suspects, cfg, staging)
            finally:
                pool.shutdown(wait=True, cancel_futures=True)

    def _drain(self, pool: ProcessPoolExecutor, todo: deque[SourceItem],
               suspects: deque[SourceItem], cfg: Config,
               staging: str | Path) -> Iterator[VideoResult]:
        running: dict[Future[VideoResult], SourceItem] = {}
        while todo or suspects or running:
            # suspects of an earlier crash run alone, so a second crash names its culprit
            if suspects:
                if not running:
                    item = suspects.popleft()
                    running[pool.submit(self.task, item, cfg, str(staging))] = item
                    running_alone = True
                else:
                    running_alone = False
            else:
                running_alone = False
                while todo and len(running) < self.max_in_flight:
                    item = todo.popleft()
                    running[pool.submit(self.task, item, cfg, str(staging))] = item
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for fut in done:
                item = running.pop(fut)
                try:
                    yield fut.result()
                except BrokenProcessPool as e:
                    if running_alone:
                        yield _crashed(item, e)
                    else:
                        suspects.append(item)
                        suspects.extend(running.values())
                        running.clear()
                    return
                except Exception as e:  # pickling trouble and the like: that input alone fails
                    yield _crashed(item, e)
