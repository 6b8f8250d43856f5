"""Spawned process pools whose workers end when the process that started them is gone.

A :class:`~concurrent.futures.ProcessPoolExecutor` worker waits for its next task on a queue
whose pipe it holds both ends of, so when its parent is killed (SIGKILL, the OOM killer, a
power-cut test) it never reads end-of-file: it waits forever, holding its memory (up to
512 MiB for a video worker). Every pool here is made by :func:`spawn_pool`, whose workers watch
their parent and exit (status :data:`ORPHAN_EXIT`) within about ``poll_s`` of it going away.
A half-written clip file such a worker leaves is removed by the next run's finalize, like any
file of a killed run.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any

__all__ = ["ORPHAN_EXIT", "spawn_pool", "watch_parent"]

ORPHAN_EXIT = 75  # a worker's exit status when it ended because its parent was gone
_POLL_S = 1.0


def watch_parent(parent: int, poll_s: float = _POLL_S) -> threading.Thread:
    """End this process when it is no longer ``parent``'s child (its parent died and it was
    re-parented); a daemon thread checks every ``poll_s`` seconds."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_s)
        sys.stderr.write(f"clipfactory: worker {os.getpid()}: the process that started it "
                         f"({parent}) is gone; exiting\n")
        sys.stderr.flush()
        os._exit(ORPHAN_EXIT)

    t = threading.Thread(target=watch, name="clipfactory-parent-watch", daemon=True)
    t.start()
    return t


def _start(parent: int, init: Callable[[], Any] | None) -> None:
    watch_parent(parent)
    if init is not None:
        init()


def spawn_pool(workers: int, init: Callable[[], Any] | None = None) -> ProcessPoolExecutor:
    """A pool of ``workers`` spawned processes (not forked: FFmpeg, thread pools and open
    SQLite connections do not survive a fork well) that run ``init`` first and end when this
    process does."""
    return ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_start,
                               initargs=(os.getpid(), init))
