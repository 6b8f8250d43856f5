"""Near-duplicate grouping of N random clips in memory and with its LSH tables on Ray.

    python -m clipfactory.bench.dedup_ray --clips 1e6 [--cpus 2] [--planted 0.01]
        [--repeats 3] [--rounds 2]

N random 5-frame hash tuples, ``--planted`` of them replaced by near copies of others (1 to 4
bits flipped per frame). Each way runs in a fresh process (the same data, made outside the
clock) so that peak memory is its own: the wall of ``near_duplicate_groups`` alone (the
fastest of ``--repeats`` calls and ``--rounds`` processes, the ways alternated), the
driver's peak RSS (VmHWM), and for Ray the peak RSS of the busiest task worker. Ray is a real
local cluster started before the clock: a head without CPUs (it holds the driver's objects)
and one node of ``--cpus`` CPUs. Prints one JSON line per way, then the ratios; both ways
must give the same groups.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["clips", "main", "measure"]


def clips(n: int, planted: float, seed: int = 0) -> list[tuple[int, ...]]:
    """``n`` random 5-frame hash tuples, ``planted * n`` of them near copies of others."""
    rng = np.random.default_rng(seed)
    hashes = rng.integers(0, 2**64, size=(n, 5), dtype=np.uint64)
    copies = int(n * planted)
    src = rng.choice(n - copies, copies, replace=False)
    near = hashes[src].copy()
    for _ in range(4):  # up to 4 bits per frame (a bit may flip back: 1 to 4 net)
        near ^= np.uint64(1) << rng.integers(0, 64, size=near.shape, dtype=np.uint64)
    hashes[n - copies:] = near
    return [tuple(row) for row in hashes.tolist()]


def _vm(pid: int | str, key: str) -> int:
    """A ``/proc/PID/status`` figure in bytes (0 when the process is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _ray_workers() -> list[int]:
    """Pids of Ray task workers on this machine (their process title starts ``ray::``)."""
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if (d / "cmdline").read_bytes().startswith(b"ray::"):
                    pids.append(int(d.name))
            except OSError:
                continue
    return pids


def measure(way: str, n: int, planted: float, cpus: int, repeats: int = 1) -> dict[str, Any]:
    """One way's figures (run in a fresh process: see :func:`main`)."""
    from clipfactory.dedup.perceptual import near_duplicate_groups

    data = clips(n, planted)
    row: dict[str, Any] = {"way": way, "clips": n, "input_rss_mb": _vm("self", "VmRSS") >> 20}
    stats: dict[str, Any] = {}
    walls = []
    if way == "memory":
        for _ in range(repeats):
            t0 = time.perf_counter()
            groups = near_duplicate_groups(data, 10, stats=stats)
            walls.append(round(time.perf_counter() - t0, 3))
    else:
        from clipfactory.dedup.ray_dedup import near_duplicate_groups_ray
        from clipfactory.testing.ray_cluster import local_cluster

        with local_cluster(nodes=1, cpus=cpus, store_bytes=512 << 20):
            near_duplicate_groups_ray([(1,), (1,)], 10)  # workers up before the clock
            for _ in range(repeats):
                t0 = time.perf_counter()
                groups = near_duplicate_groups_ray(data, 10, stats=stats)
                walls.append(round(time.perf_counter() - t0, 3))
            workers = [_vm(p, "VmHWM") for p in _ray_workers()]
            row["worker_peak_rss_mb"] = max(workers, default=0) >> 20
            row["workers"] = len(workers)
    row["wall_s"], row["walls"] = min(walls), walls
    row["driver_peak_rss_mb"] = _vm("self", "VmHWM") >> 20
    row["groups"] = len(groups)
    row["clips_in_groups"] = sum(len(g) for g in groups)
    row["candidate_pairs"] = stats["candidate_pairs"]
    row["digest"] = hashlib.sha256(json.dumps(groups).encode()).hexdigest()[:16]
    return row


def main(argv: list[str] | None = None) -> int:
    """Command line (module docstring)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clips", type=float, default=1e6)
    ap.add_argument("--planted", type=float, default=0.01)
    ap.add_argument("--cpus", type=int, default=2, help="CPUs of the Ray node")
    ap.add_argument("--repeats", type=int, default=1, help="timed calls per process")
    ap.add_argument("--rounds", type=int, default=1, help="processes per way, alternated")
    ap.add_argument("--way", choices=["memory", "ray"], help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.way:  # a child: one way, one JSON line
        print(json.dumps(measure(a.way, int(a.clips), a.planted, a.cpus, a.repeats)))
        return 0
    runs: dict[str, list[dict[str, Any]]] = {"memory": [], "ray": []}
    for r in range(max(1, a.rounds)):  # alternate, so a busy spell hits both ways alike
        for way in ("memory", "ray") if r % 2 == 0 else ("ray", "memory"):
            row = _child(way, a)
            if row is None:
                return 1
            runs[way].append(row)
            print(json.dumps(row))
    mem, ray = (_best(runs[w]) for w in ("memory", "ray"))
    same = len({row["digest"] for rows in runs.values() for row in rows}) == 1
    print(f"same groups: {'yes' if same else 'NO'}; fastest wall: memory {mem['wall_s']:.2f} s,"
          f" Ray {ray['wall_s']:.2f} s (Ray/memory {ray['wall_s'] / mem['wall_s']:.2f}); peak "
          f"RSS MB: memory {mem['driver_peak_rss_mb']}, Ray driver {ray['driver_peak_rss_mb']}"
          f" + worker {ray['worker_peak_rss_mb']}")
    return 0 if same else 1


def _child(way: str, a: argparse.Namespace) -> dict[str, Any] | None:
    cmd = [sys.executable, "-m", "clipfactory.bench.dedup_ray", "--way", way,
           "--clips", str(a.clips), "--planted", str(a.planted), "--cpus", str(a.cpus),
           "--repeats", str(a.repeats)]
    done = subprocess.run(cmd, capture_output=True, text=True,
                          env={**os.environ, "RAY_ADDRESS": ""})  # our own cluster
    if done.returncode:
        print(f"{way}: failed\n{done.stderr[-4000:]}", file=sys.stderr)
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])


def _best(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The fastest run, with the largest peak RSS seen in any run."""
    best = dict(min(rows, key=lambda r: r["wall_s"]))
    for key in ("driver_peak_rss_mb", "worker_peak_rss_mb"):
        if key in best:
            best[key] = max(r[key] for r in rows)
    return best

if __name__ == "__main__":
    sys.exit(main())
