"""Where a video's CPU time goes: per-stage CPU seconds of the per-video work.

``clipfactory bench`` turns this on (``Config.stage_times``) and prints the split; a run with it
on adds the split to ``summary.json`` (``throughput.cpu_split``). Off, every call is a no-op.

The clock reads the calling thread's CPU time (``time.thread_time_ns``, ~0.6 us a read), so a
stage's figure is exact when decoders and encoders run in the calling thread (``threads=1``,
as the bench pins them). With more threads, work done on FFmpeg's own threads is not seen
here, and the split under-counts decode and encode.

Stages (:data:`STAGES`): ``probe`` (probe and the source's SHA-256), ``decode`` (the analysis
pass's decoder), ``hashing`` (full-resolution frame digests and perceptual hashes), ``scale``
(the analysis frame), ``signals`` (brightness, sharpness, motion, camera motion),
``shot_rules`` (the built-in detector and the hybrid's proposals), ``shot_model`` (the shot
network), ``cut_decode``/``cut_encode`` (the cutter's decoder and encoder), ``mux_write``
(demuxing, muxing and writing clip files), ``other`` (the rest of the worker: planning,
filters, bookkeeping).

The run's driver (one process, on records only) is split by phase instead, with a process CPU
clock (:class:`PhaseClock`, :data:`DRIVER_PHASES`): ``start`` (model checks, ledger, inputs,
gate), ``results`` (recording each video's outcome as it comes back; model stages that run
in the driver), ``recut``, and finalize's ``dedup``, ``shards``, ``index`` (parts and compacted
files), ``summary`` (summary and card) and ``report`` (the page and its thumbnails).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["DRIVER_PHASES", "STAGES", "PhaseClock", "StageClock", "active", "measure", "merge"]

STAGES = ("probe", "decode", "hashing", "scale", "signals", "shot_rules", "shot_model",
          "cut_decode", "cut_encode", "mux_write", "other")

# the run's driver, in order (PhaseClock)
DRIVER_PHASES = ("start", "results", "recut", "dedup", "shards", "index", "summary", "report")

_now = time.thread_time_ns


class StageClock:
    """Accumulates CPU nanoseconds per stage. ``lap(stage, t)`` charges the time since ``t``
    (an earlier ``lap``/``now``) to ``stage`` and returns the new mark."""

    __slots__ = ("enabled", "ns")

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.ns: dict[str, int] = dict.fromkeys(STAGES, 0)

    def now(self) -> int:
        return _now() if self.enabled else 0

    def lap(self, stage: str, since: int) -> int:
        if not self.enabled:
            return 0
        t = _now()
        self.ns[stage] += t - since
        return t

    def add(self, stage: str, ns: int) -> None:
        if self.enabled:
            self.ns[stage] += ns

    def move(self, src: str, dst: str, ns: int) -> None:
        """Re-charge ``ns`` of ``src`` to ``dst`` (work nested inside a lap of ``src``)."""
        if self.enabled:
            self.ns[src] -= ns
            self.ns[dst] += ns

    def charge_rest(self, since: int) -> None:
        """Charge to ``other`` this thread's CPU since ``since`` (``time.thread_time_ns()``
        taken before the work began) that no stage claimed."""
        if self.enabled:
            self.ns["other"] += _now() - since - sum(self.ns.values())

    def seconds(self) -> dict[str, float]:
        return {k: round(v / 1e9, 6) for k, v in self.ns.items() if v}


_OFF = StageClock(enabled=False)
_active: StageClock = _OFF


def active() -> StageClock:
    """The clock of the video being processed in this process (a disabled one outside
    :func:`measure`)."""
    return _active


@contextmanager
def measure(enabled: bool = True) -> Iterator[StageClock]:
    """Make a fresh clock :func:`active` for the enclosed per-video work."""
    global _active
    prev, _active = _active, StageClock(enabled)
    try:
        yield _active
    finally:
        _active = prev


def merge(total: dict[str, float], part: dict[str, float]) -> dict[str, float]:
    """Add one video's split to a running total (in place; returned)."""
    for k, v in part.items():
        total[k] = round(total.get(k, 0.0) + v, 6)
    return total


class PhaseClock:
    """Process CPU seconds per phase of a run's driver (:data:`DRIVER_PHASES`), counted over
    every thread of the process (the report's thumbnail threads count in ``report``); worker
    processes are not in it. ``lap(phase)`` charges the CPU since the clock was made or since
    the last lap to ``phase``. Disabled, every call is a no-op."""

    __slots__ = ("enabled", "mark", "seconds")

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.mark = time.process_time() if enabled else 0.0
        self.seconds: dict[str, float] = {}

    def lap(self, phase: str) -> None:
        if self.enabled:
            t = time.process_time()
            self.seconds[phase] = round(self.seconds.get(phase, 0.0) + t - self.mark, 6)
            self.mark = t
