"""Spawned process pools whose workers end when the process that started them is gone.

A :class:`~concurrent.futures.ProcessPoolExecutor` worker waits for its next task on a queue
whose pipe it holds both ends of, so when its parent is killed (SIGKILL, the OOM killer, a
power-cut test) it never reads end-of-file: it waits forever, holding its memory (up to
512 MiB for a video worker). Every pool here is made by :func:`spawn_pool`, whose workers watch
their parent and exit (status :data:`ORPHAN_EXIT`) within about ``poll_s`` of it going away.
A half-written clip file such a worker leaves is removed by the next run's finalize, like any
file of a killed run.

A spawned worker starts by importing the parent's main script. A script that calls
clipfactory at its top level, without ``if __name__ == "__main__":``, calls it again there:
:func:`refuse_while_starting` (the output lock calls it) makes that call fail at once instead
of waiting for ever for the lock its parent holds, and :func:`did_not_start` tells the
executor that its pool broke before any worker started, so no input is blamed for it.
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

__all__ = ["ORPHAN_EXIT", "WorkersDidNotStart", "did_not_start", "refuse_while_starting",
           "spawn_pool", "started", "watch_parent"]

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


_MAIN_GUARD = ("a script that calls clipfactory must do so under `if __name__ == "
               "\"__main__\":`: each worker process starts by running the script again "
               "(Python's spawn start method), and there the call must not run")


class WorkersDidNotStart(RuntimeError):
    """The pool's worker processes died while starting, before any task."""


def refuse_while_starting(what: str) -> None:
    """Raise in a spawned process that is still importing its parent's main script: a call
    there (``what``) is the script's own, run again by every worker (the output lock it
    would wait for is its parent's: it would wait forever)."""
    if getattr(mp.current_process(), "_inheriting", False):
        raise RuntimeError(f"clipfactory: {what} was called while a worker process was "
                           f"starting; {_MAIN_GUARD}")


def _start(parent: int, init: Callable[[], Any] | None, count: Any) -> None:
    watch_parent(parent)
    if init is not None:
        init()
    with count.get_lock():
        count.value += 1


class _Pool(ProcessPoolExecutor):
    """A spawned pool that knows how many of its workers have started."""

    def __init__(self, workers: int, init: Callable[[], Any] | None) -> None:
        ctx = mp.get_context("spawn")
        self.count = ctx.Value("i", 0)  # bumped by each worker once ``init`` has run
        super().__init__(workers, mp_context=ctx, initializer=_start,
                         initargs=(os.getpid(), init, self.count))


def spawn_pool(workers: int, init: Callable[[], Any] | None = None) -> ProcessPoolExecutor:
    """A pool of ``workers`` spawned processes (not forked: FFmpeg, thread pools and open
    SQLite connections do not survive a fork well) that run ``init`` first and end when this
    process does. :func:`started` tells how many of its workers got that far."""
    return _Pool(workers, init)


def started(pool: ProcessPoolExecutor) -> int:
    """How many workers of a :func:`spawn_pool` pool have started (run ``init``)."""
    assert isinstance(pool, _Pool), "not a spawn_pool() pool"
    return int(pool.count.value)


def did_not_start(pool: ProcessPoolExecutor, error: BaseException) -> WorkersDidNotStart | None:
    """The error to raise for a pool broken before any of its workers started: every task
    given to it fails, and it is no task's fault."""
    if started(pool):
        return None
    return WorkersDidNotStart(f"clipfactory: the worker processes exited while starting (their "
                              f"error is above; {error}); {_MAIN_GUARD}")
