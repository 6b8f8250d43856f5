"""The levels ``clipfactory bench`` measures, each in a fresh process of its own.

A level runs in a newly spawned process so that its peak RSS (``VmHWM``, read at its end) is
its own, not the largest of everything measured before it in one process, and its CPU time is
read inside that process. The analysis levels charge their CPU to the stages of
:mod:`clipfactory.media.stagetime` (``cpu_split``); the full pipeline gets its split from the
run (``Config.stage_times``) and the largest worker's peak RSS from the workers' results.
Every level also reports its system CPU time (``sys_s``, part of ``cpu_s``) and page faults
(``page_faults``): the decode and analysis levels over their timed work, the full pipeline over
the workers' videos plus the driver's whole run.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import av

from clipfactory.config import Config
from clipfactory.exec.pool import spawn_pool
from clipfactory.media import stagetime
from clipfactory.media.streams import main_video_stream
from clipfactory.memory import Usage, peak_rss_mib, reuse_freed_memory

__all__ = ["analysis_level", "cut_summary", "decode_file", "decode_level", "decode_only",
           "in_fresh_process", "pipeline_level"]


def in_fresh_process(fn: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
    """Call ``fn(*args)`` in a newly spawned process and return what it returns. (A pool's
    worker process, not ``multiprocessing.Pool``'s: those are daemons and cannot start the
    pipeline's own workers.)"""
    with spawn_pool(1) as pool:
        return pool.submit(fn, *args).result()


def decode_file(path: str) -> dict[str, Any]:
    """Decode every video frame single-threaded: ``frames``, ``seconds`` of video,
    ``keyframes`` (frames the decoder marks as keyframes) and the ``codec``. Like the analysis
    pass, a packet the decoder rejects is skipped and a demux error ends the file."""
    with av.open(path) as c:
        s = main_video_stream(c)
        s.codec_context.thread_count = 1
        n, keys, last = 0, 0, 0.0
        try:
            for packet in c.demux(s):
                try:
                    frames = packet.decode()
                except av.FFmpegError:
                    continue  # a damaged packet: the analysis pass skips it the same way
                for f in frames:
                    n += 1
                    keys += f.key_frame
                    last = f.time or last
        except av.FFmpegError:
            pass  # a file cut short: what was decoded before it counts, as in the analysis
        fps = float(s.average_rate or 30)
        codec = s.codec_context.name
    return {"frames": n, "seconds": last + 1.0 / fps, "keyframes": keys, "codec": codec}


def decode_only(path: str) -> tuple[int, float]:
    """Decode every video frame single-threaded; return (frames, seconds of video)."""
    d = decode_file(path)
    return d["frames"], d["seconds"]


def _level(media_s: float, wall_s: float, cpu_s: float, usage: tuple[float, int],
           **more: Any) -> dict[str, Any]:
    return {"media_s": media_s, "wall_s": wall_s, "cpu_s": cpu_s, "sys_s": usage[0],
            "page_faults": usage[1],
            "x_realtime_per_core": media_s / cpu_s if cpu_s > 0 else 0.0,
            "x_realtime": media_s / wall_s if wall_s > 0 else 0.0, **more}


def decode_level(paths: list[str]) -> dict[str, Any]:
    """Decode-only over ``paths``: the ceiling for anything that decodes. ``by_codec``: the
    seconds and keyframes of each source codec (what a smart cut can copy depends on them).
    Like the analysis level, with a pipeline worker's allocator settings."""
    reuse_freed_memory()
    wall0, cpu0, usage = time.perf_counter(), time.process_time(), Usage()
    files = [decode_file(p) for p in paths]
    wall, cpu, used = time.perf_counter() - wall0, time.process_time() - cpu0, usage.since()
    by_codec: dict[str, dict[str, float]] = {}
    for d in files:
        c = by_codec.setdefault(d["codec"], {"videos": 0, "seconds": 0.0, "keyframes": 0})
        c["videos"] += 1
        c["seconds"] += d["seconds"]
        c["keyframes"] += d["keyframes"]
    return _level(sum(d["seconds"] for d in files), wall, cpu, used, by_codec=by_codec,
                  peak_rss_mib=peak_rss_mib())


def analysis_level(paths: list[str], cfg: Config) -> dict[str, Any]:
    """Probe and the one analysis pass (every signal and the shot detector) over ``paths``,
    single-threaded, with its per-stage CPU split. The detector's network loads before the
    clock starts. The process's allocator is set as in a pipeline worker."""
    from clipfactory.media.analyse import analyse
    from clipfactory.media.probe import probe
    from clipfactory.shots import check_detector, make_detector

    reuse_freed_memory()
    check_detector(cfg.shots)
    split: dict[str, float] = {}
    media = 0.0
    wall0, cpu0, usage = time.perf_counter(), time.process_time(), Usage()
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
    wall, cpu, used = time.perf_counter() - wall0, time.process_time() - cpu0, usage.since()
    return _level(media, wall, cpu, used, cpu_split=split, peak_rss_mib=peak_rss_mib())


def pipeline_level(source: str, out: str, cfg: Config) -> dict[str, Any]:
    """``clipfactory run`` end to end into ``out``, with the per-stage split on. CPU is the
    workers' per-video CPU plus this driver's; ``cpu_split`` covers the workers' per-video
    work, ``driver_split`` the driver's phases (``stagetime.DRIVER_PHASES``).
    ``peak_rss_mib`` is the largest worker's, ``driver_peak_rss_mib`` this process's."""
    from clipfactory.pipeline import run

    cfg = cfg.model_copy(update={"stage_times": True})
    wall0, cpu0, usage = time.perf_counter(), time.process_time(), Usage()
    summary = run(Path(source), Path(out), cfg, quiet=True)
    wall, driver_cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    driver_sys, driver_faults = usage.since()
    t = summary["throughput"]
    used = (t["sys_cpu_s"] + driver_sys, t["page_faults"] + driver_faults)
    return _level(t["media_s"], wall, t["cpu_s"] + driver_cpu, used, driver_cpu_s=driver_cpu,
                  driver_page_faults=driver_faults,
                  cpu_split=t.get("cpu_split", {}),
                  driver_split=summary.get("driver_split", {}),
                  peak_rss_mib=t.get("peak_worker_rss_mib", 0.0),
                  driver_peak_rss_mib=peak_rss_mib(), clips=summary["counts"]["clips"],
                  cut=cut_summary(Path(out) / "ledger.sqlite"))


def cut_summary(ledger_path: str | Path) -> dict[str, Any]:
    """What the cutter did, from a run's ledger: every clip it was asked for (whatever
    happened to the clip later, dedup included), per clip codec and cut method: ``clips``,
    ``frames`` (their spans) and ``copied`` (frames whose packets were copied; the rest were
    decoded and re-encoded). One aggregate query: no clip record is loaded."""
    db = sqlite3.connect(Path(ledger_path))
    try:
        rows = db.execute(
            "SELECT json_extract(record, '$.extra.cut.codec'),"
            " json_extract(record, '$.extra.cut.method'), COUNT(*),"
            " SUM(json_extract(record, '$.end_frame') - json_extract(record, '$.start_frame')),"
            " SUM(COALESCE(json_extract(record, '$.extra.cut.copied_frames'), 0))"
            " FROM clips WHERE json_extract(record, '$.extra.cut') IS NOT NULL"
            " GROUP BY 1, 2 ORDER BY 1, 2").fetchall()
    finally:
        db.close()
    parts = [{"codec": codec or "?", "method": method or "?", "clips": n, "frames": int(f or 0),
              "copied": int(c or 0)} for codec, method, n, f, c in rows]
    return {"clips": sum(p["clips"] for p in parts), "frames": sum(p["frames"] for p in parts),
            "copied": sum(p["copied"] for p in parts), "parts": parts}
