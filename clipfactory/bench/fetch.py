"""``clipfactory bench-fetch``: fetch throughput against loopback servers, and whether the
per-host limits hold under it.

Each host is its own :class:`~clipfactory.testing.loopback.LoopbackServer` (a port of
127.0.0.1), serving one generated video under many URLs, optionally throttled per connection
to stand in for a remote server's bandwidth. For each concurrency level the prefetcher fetches
every URL (each file is deleted once "processed", as in a run) and the bench reports bytes/s,
video-hours fetched per hour (at the test file's bitrate, and at a typical 720p bitrate), and,
per host, the most requests the *server* saw at once and the request rate it saw, against the
configured limits.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from clipfactory.config import FetchConfig
from clipfactory.fetch.prefetch import Prefetcher
from clipfactory.records import SourceItem
from clipfactory.testing.loopback import LoopbackServer
from clipfactory.testing.synth import ShotSpec, write_video

__all__ = ["run_fetch_bench"]

REFERENCE_BPS = 2.5e6  # bits/s of a typical 720p H.264 web video


def _video(workdir: Path, seconds: float, width: int, height: int) -> tuple[bytes, float]:
    frames = max(2, round(seconds * 30))
    shots = [ShotSpec(frames // 2, "texture", 1), ShotSpec(frames - frames // 2, "texture", 2)]
    path = workdir / "bench.mp4"
    write_video(path, shots, width=width, height=height)
    return path.read_bytes(), frames / 30.0


def _max_in_window(times: list[float], window: float) -> int:
    """The most requests inside any window of ``window`` seconds (times sorted)."""
    best, j = 0, 0
    for i, t in enumerate(times):
        while times[j] < t - window:
            j += 1
        best = max(best, i - j + 1)
    return best


def _one(servers: list[LoopbackServer], files: int, body: bytes, duration_s: float,
         cfg: FetchConfig, workdir: Path) -> dict[str, Any]:
    items = []
    for h, srv in enumerate(servers):
        for i in range(files):
            path = f"/c{cfg.concurrency}/v{i}.mp4"
            srv.add(path, body)
            items.append(SourceItem(item_key=f"h{h}:{path}", source=srv.url(path)))
    items.sort(key=lambda it: it.item_key.split(":", 1)[1])  # interleave hosts
    for srv in servers:
        srv.max_in_flight, srv.request_times = 0, []
    pre = Prefetcher(cfg, workdir / f"sources-{cfg.concurrency}")
    t0 = time.perf_counter()
    got = 0
    try:
        for item in pre.items(items):
            got += 1
            pre.release(item)
    finally:
        pre.close()
    wall = time.perf_counter() - t0
    nbytes = pre.counts["bytes"]
    hosts = []
    for srv in servers:
        t = sorted(srv.request_times)
        span = (t[-1] - t[0]) if len(t) > 1 else 0.0
        hosts.append({"max_in_flight": srv.max_in_flight, "requests": len(t),
                      "req_per_s": round((len(t) - 1) / span, 2) if span > 0 else None,
                      "max_req_in_1s": _max_in_window(t, 1.0)})
    return {
        "concurrency": cfg.concurrency, "files": got, "failed": pre.counts["failed"],
        "wall_s": round(wall, 3), "bytes_per_s": round(nbytes / wall),
        "MB_per_s": round(nbytes / wall / 1e6, 2),
        "video_hours_per_hour": round(got * duration_s / wall, 1),
        "video_hours_per_hour_720p": round(nbytes * 8 / REFERENCE_BPS / wall, 1),
        "per_host_limit": cfg.per_host, "rate_limit": cfg.rate_per_host,
        "max_in_flight_seen": max(h["max_in_flight"] for h in hosts),
        "max_req_in_1s_seen": max(h["max_req_in_1s"] for h in hosts),
        "max_req_in_1s_allowed": int(cfg.burst + cfg.rate_per_host) if cfg.rate_per_host
        else None,
        "hosts": hosts,
    }


def run_fetch_bench(*, hosts: int = 4, files_per_host: int = 24,
                    concurrency: tuple[int, ...] = (1, 4, 16), per_host: int = 4,
                    rate_per_host: float = 20.0, throttle_bps: float = 4e6,
                    seconds: float = 10.0, width: int = 320, height: int = 180,
                    workdir: str | Path | None = None, quiet: bool = False
                    ) -> list[dict[str, Any]]:
    """Run the bench (module docstring) and print one line per concurrency level."""
    tmp = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="cf-bench-fetch-"))
    tmp.mkdir(parents=True, exist_ok=True)
    body, duration_s = _video(tmp, seconds, width, height)
    servers = [LoopbackServer(throttle_bps=throttle_bps) for _ in range(hosts)]
    rows = []
    try:
        for srv in servers:
            srv.__enter__()
        if not quiet:
            print(f"{hosts} loopback hosts x {files_per_host} files of {len(body)} bytes "
                  f"({duration_s:.1f} s of {width}x{height} video, "
                  f"{len(body) * 8 / duration_s / 1e6:.2f} Mbit/s); server throttle "
                  f"{throttle_bps / 1e6:.1f} MB/s per connection; per-host limit {per_host}, "
                  f"rate limit {rate_per_host}/s")
        for c in concurrency:
            cfg = FetchConfig(concurrency=c, per_host=per_host, rate_per_host=rate_per_host,
                              burst=per_host, disk_budget_bytes=64 << 20, max_attempts=2,
                              allow_private_network=True)  # its servers are on 127.0.0.1
            row = _one(servers, files_per_host, body, duration_s, cfg, tmp)
            rows.append(row)
            if not quiet:
                print(json.dumps({k: v for k, v in row.items() if k != "hosts"}))
    finally:
        for srv in servers:
            srv.__exit__(None, None, None)
        if workdir is None:
            shutil.rmtree(tmp, ignore_errors=True)
    return rows
