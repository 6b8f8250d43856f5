"""The levels ``clipfactory bench`` measures, each in a fresh process of its own.

A level runs in a newly spawned process so that its peak RSS (``VmHWM``, read at its end) is
its own, not the largest of everything measured before it in one process, and its CPU time is
read inside that process. The analysis levels charge their CPU to the stages of
:mod:`clipfactory.media.stagetime` (``cpu_split``); the full pipeline gets its split from the
run (``Config.stage_times``) and the largest worker's peak RSS from the workers' results.
"""

from __future__ import annotations

import multiprocessing as mp
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import av

from clipfactory.config import Config
from clipfactory.media import stagetime
from clipfactory.memory import peak_rss_mib

__all__ = ["analysis_level", "decode_level", "decode_only", "in_fresh_process",
           "pipeline_level"]


def in_fresh_process(fn: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
    """Call ``fn(*args)`` in a newly spawned process and return what it returns. (A pool's
    worker process, not ``multiprocessing.Pool``'s: those are daemons and cannot start the
    pipeline's own workers.)"""
    with ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")) as pool:
        return pool.submit(fn, *args).result()


def decode_only(path: str) -> tuple[int, float]:
    """Decode every video frame single-threaded; return (frames, seconds of video)."""
    with av.open(path) as c:
        s = c.streams.video[0]
        s.codec_context.thread_count = 1
        n, last = 0, 0.0
        for f in c.decode(s):
            n += 1
            last = f.time or last
        fps = float(s.average_rate or 30)
    return n, last + 1.0 / fps


def _level(media_s: float, wall_s: float, cpu_s: float, **more: Any) -> dict[str, Any]:
    return {"media_s": media_s, "wall_s": wall_s, "cpu_s": cpu_s,
            "x_realtime_per_core": media_s / cpu_s if cpu_s > 0 else 0.0,
            "x_realtime": media_s / wall_s if wall_s > 0 else 0.0, **more}


def decode_level(paths: list[str]) -> dict[str, Any]:
    """Decode-only over ``paths``: the ceiling for anything that decodes."""
    wall0, cpu0 = time.perf_counter(), time.process_time()
    media = sum(decode_only(p)[1] for p in paths)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    return _level(media, wall, cpu, peak_rss_mib=peak_rss_mib())


def analysis_level(paths: list[str], cfg: Config) -> dict[str, Any]:
    """Probe and the one analysis pass (every signal and the shot detector) over ``paths``,
    single-threaded, with its per-stage CPU split. The detector's network loads before the
    clock starts."""
    from clipfactory.media.analyse import analyse
    from clipfactory.media.probe import probe
    from clipfactory.shots import check_detector, make_detector

    check_detector(cfg.shots)
    split: dict[str, float] = {}
    media = 0.0
    wall0, cpu0 = time.perf_counter(), time.process_time()
    for path in paths:
        thread0 = time.thread_time_ns()
        with stagetime.measure() as clock:
            mark = clock.now()
            info = probe(path, cfg.ingest)
            clock.lap("probe", mark)
            sig = analyse(info, cfg.analysis, make_detector(cfg.shots), threads=1)
        # what no stage claimed (the detector's glue, building arrays) is "other", as in a run
        clock.charge_rest(thread0)
        stagetime.merge(split, clock.seconds())
        media += float(sig.times[-1] - sig.times[0]) + 1.0 / sig.fps
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    return _level(media, wall, cpu, cpu_split=split, peak_rss_mib=peak_rss_mib())


def pipeline_level(source: str, out: str, cfg: Config) -> dict[str, Any]:
    """``clipfactory run`` end to end into ``out``, with the per-stage split on. CPU is the
    workers' per-video CPU plus this driver's; the split covers the workers' per-video work.
    ``peak_rss_mib`` is the largest worker's, ``driver_peak_rss_mib`` this process's."""
    from clipfactory.pipeline import run

    cfg = cfg.model_copy(update={"stage_times": True})
    wall0, cpu0 = time.perf_counter(), time.process_time()
    summary = run(Path(source), Path(out), cfg, quiet=True)
    wall, driver_cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    t = summary["throughput"]
    return _level(t["media_s"], wall, t["cpu_s"] + driver_cpu, driver_cpu_s=driver_cpu,
                  cpu_split=t.get("cpu_split", {}),
                  peak_rss_mib=t.get("peak_worker_rss_mib", 0.0),
                  driver_peak_rss_mib=peak_rss_mib(), clips=summary["counts"]["clips"])
