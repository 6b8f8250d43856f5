"""Run a model stage in its own worker process(es), fed while videos are still being cut.

The driver :meth:`~StageRunner.submit`\\ s clips as their videos finish; full batches go to the
workers at once, so the model works while other videos are decoded and cut. Each worker is a
spawned process that runs ``setup()`` once and then one batch at a time. In-flight batches are
bounded (``2 x workers``): a driver that outruns the model waits on it (back-pressure), so
memory does not grow with the backlog.

Failures stay with the clips they belong to: a batch that raises fails its clips with
``<stage>_failed``; a worker that dies (a segfault in a native library, out of memory) fails
the batch it held with ``<stage>_crashed`` and is replaced; a ``setup()`` that raises fails
every batch with ``<stage>_setup_failed``, because nothing that worker does can succeed.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import signal
import time
import traceback
from collections import deque
from multiprocessing import connection as mp_connection
from multiprocessing.connection import Connection
from typing import Any

from clipfactory.stages.base import ClipInput, ModelStage, StageOutput
from clipfactory.stages.batching import BatchingRunner

__all__ = ["StageRunner", "failed_outputs", "run_batch"]

_POLL_S = 0.2
_MAX_CRASHES_IN_ROW = 3  # worker deaths with no batch done in between: the stage is broken


def failed_outputs(clips: list[ClipInput], reason: str, detail: str) -> list[StageOutput]:
    """The same failure for every clip of a batch."""
    return [StageOutput(c.clip_id, reason=reason, detail=detail[:500]) for c in clips]


def run_batch(stage: ModelStage, clips: list[ClipInput]) -> list[StageOutput]:
    """``process_batch`` with the contract enforced: an exception fails the batch, and a clip
    the stage forgot to answer for fails alone (never silently counted as done)."""
    try:
        outs = stage.process_batch(clips)
    except Exception as e:  # the model's failure is these clips' failure, not the run's
        return failed_outputs(clips, f"{stage.name}_failed", f"{type(e).__name__}: {e}")
    wanted = {c.clip_id for c in clips}
    got = [o for o in outs if o.clip_id in wanted]
    answered = {o.clip_id for o in got}
    got += failed_outputs([c for c in clips if c.clip_id not in answered],
                          f"{stage.name}_failed", "the stage returned no output for this clip")
    return got


def _worker_main(stage: ModelStage, conn: Connection) -> None:
    # Ctrl-C is the driver's to act on, as for the video workers: a stage process of the
    # terminal's process group took the SIGINT itself and printed a KeyboardInterrupt
    # traceback before the driver's one line
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    setup_error = None
    try:
        stage.setup()
    except Exception as e:
        setup_error = f"{type(e).__name__}: {e}"
        traceback.print_exc()
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):  # the driver went away (killed: the pipe was reset)
            return
        if msg is None:
            return
        batch_id, clips = msg
        if setup_error is not None:
            outs = failed_outputs(clips, f"{stage.name}_setup_failed", setup_error)
        else:
            outs = run_batch(stage, clips)
        try:
            conn.send((batch_id, outs))  # synchronous: a result sent is never lost with it
        except OSError:  # the driver went away while the batch ran: nobody to tell
            return


class _Worker:
    """One process and its pipe, and the batches sent to it in the order it takes them (the
    first one not returned is the one it is working on)."""

    def __init__(self, ctx: Any, stage: ModelStage) -> None:
        self.conn, child = ctx.Pipe(duplex=True)
        self.proc = ctx.Process(target=_worker_main, args=(stage, child), daemon=True,
                                name=f"clipfactory-{stage.name}")
        self.proc.start()
        child.close()
        self.assigned: deque[int] = deque()


class StageRunner(BatchingRunner):
    """Local worker processes for one stage (see module doc)."""

    poll_s = _POLL_S

    def __init__(self, stage: ModelStage, workers: int | None = None) -> None:
        super().__init__()
        self.stage = stage
        self.workers = max(1, workers or stage.workers)
        self.per_worker = 2  # batches sent per worker: one running, one ready (small messages)
        self._ctx = mp.get_context("spawn")
        self._pool = [_Worker(self._ctx, stage) for _ in range(self.workers)]
        self._in_flight: dict[int, list[ClipInput]] = {}
        self._next_id = 0
        self.batches = self.crashes = self._crashes_in_row = 0
        self._broken: str | None = None

    def _dispatch(self, batch: list[ClipInput], batch_id: int | None = None) -> None:
        if batch_id is None:
            batch_id, self._next_id = self._next_id, self._next_id + 1
            self.batches += 1
        while True:
            if self._broken is not None:
                self._ready.extend(failed_outputs(batch, f"{self.stage.name}_crashed",
                                                  self._broken))
                return
            w = min(self._pool, key=lambda w: len(w.assigned))
            if len(w.assigned) < self.per_worker:
                break
            self._collect(timeout=_POLL_S)
        self._in_flight[batch_id] = batch
        w.assigned.append(batch_id)
        with contextlib.suppress(BrokenPipeError, OSError):  # died: _check_workers settles it
            w.conn.send((batch_id, batch))

    def _busy(self) -> bool:
        return bool(self._in_flight)

    @property
    def pending(self) -> int:
        """Clips submitted and not yet returned."""
        return len(self._buffer) + sum(len(b) for b in self._in_flight.values())

    def _collect(self, timeout: float) -> None:
        # a worker given up on keeps its place in the pool with its pipe closed: waiting on a
        # closed pipe raised, and the run stopped where its clips were to be failed
        conns = {w.conn: w for w in self._pool if not w.conn.closed}
        for conn in mp_connection.wait(list(conns), timeout=timeout):
            w = conns[conn]  # type: ignore[index]
            try:
                while conn.poll():
                    batch_id, outs = conn.recv()
                    if batch_id in w.assigned:
                        w.assigned.remove(batch_id)
                    if self._in_flight.pop(batch_id, None) is not None:
                        self._ready.extend(outs)
                        self._crashes_in_row = 0
            except (EOFError, OSError):  # the worker is gone; what it sent was read above
                pass
        self._check_workers()

    def _check_workers(self) -> None:
        for i, w in enumerate(list(self._pool)):
            if w.proc.is_alive() or self._broken is not None:
                continue
            try:  # results it sent before dying are still in the pipe
                while w.conn.poll():
                    batch_id, outs = w.conn.recv()
                    if batch_id in w.assigned:
                        w.assigned.remove(batch_id)
                    if self._in_flight.pop(batch_id, None) is not None:
                        self._ready.extend(outs)
            except (EOFError, OSError):
                pass
            w.conn.close()
            self.crashes += 1
            self._crashes_in_row += 1
            if self._crashes_in_row >= _MAX_CRASHES_IN_ROW:  # dies at start: fail, don't spin
                self._give_up(w)
                return
            self._pool[i] = _Worker(self._ctx, self.stage)
            if not w.assigned:
                continue
            held = w.assigned.popleft()  # the batch the worker was on when it died
            batch = self._in_flight.pop(held, None)
            if batch is not None:
                self._ready.extend(failed_outputs(
                    batch, f"{self.stage.name}_crashed",
                    f"the {self.stage.name} worker process died (exit code "
                    f"{w.proc.exitcode}) while processing this batch"))
            for batch_id in w.assigned:  # sent behind it: given to a live worker
                self._dispatch(self._in_flight.pop(batch_id), batch_id)

    def _give_up(self, dead: _Worker) -> None:
        detail = (f"{self._crashes_in_row} {self.stage.name} worker processes in a row died "
                  f"(last exit code {dead.proc.exitcode}); the stage gave up")
        for batch_id, batch in list(self._in_flight.items()):
            self._ready.extend(failed_outputs(batch, f"{self.stage.name}_crashed", detail))
            del self._in_flight[batch_id]
        for w in self._pool:
            w.assigned.clear()
        self._broken = detail

    def close(self) -> None:
        """Stop the workers (what is still in flight is abandoned: a rerun redoes it)."""
        for w in self._pool:
            with contextlib.suppress(BrokenPipeError, OSError):
                w.conn.send(None)
        deadline = time.monotonic() + 10
        for w in self._pool:
            w.proc.join(max(0.1, deadline - time.monotonic()))
            if w.proc.is_alive():
                w.proc.kill()
                w.proc.join(1)
            w.conn.close()
        self._pool = []
