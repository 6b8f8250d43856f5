"""How much of the machine a run may use: CPUs, memory, and the split of CPUs per video.

A container sees every core of its host in ``os.cpu_count()``; what it may use is its CPU
affinity (``taskset``, cpusets) capped by the cgroup's CPU quota (``docker --cpus``, a
Kubernetes CPU limit), and its memory is the cgroup's limit, not the host's RAM. Both cgroup
versions are read: v2 ``cpu.max`` / ``memory.max``, v1 ``cpu.cfs_quota_us`` /
``cpu.cfs_period_us`` / ``memory.limit_in_bytes``, in the process's own cgroup (from
``/proc/self/cgroup``) and each of its ancestors up to the mount; the tightest limit wins. A
file that is missing or cannot be parsed sets no limit.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator
from pathlib import Path

__all__ = ["DRIVER_MEMORY", "MAX_VIDEO_THREADS", "THREAD_MEMORY", "WORKER_MEMORY", "cpu_quota",
           "default_workers", "memory_limit", "resolve_workers", "thread_split", "usable_cpus"]

CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_CGROUP = Path("/proc/self/cgroup")
MEMINFO = Path("/proc/meminfo")
_V1_MOUNTS = {"cpu": ("cpu", "cpu,cpuacct", "cpuacct,cpu"), "memory": ("memory",)}

MAX_VIDEO_THREADS = 8  # decoder and encoder threads of one video (see thread_split)
# Memory budget of a worker with one thread: its peak at 1080p H.264 is ~440 MiB (real
# footage, the hybrid shot detector's network included; README, Performance) ...
WORKER_MEMORY = 512 << 20
# ... plus this per extra decoder/encoder thread (1080p: 512, 559, 632 MiB at 2, 4, 8)
THREAD_MEMORY = 40 << 20
# ... and the driver's own (ledger, dedup index, records; ~250-300 MiB measured)
DRIVER_MEMORY = 512 << 20


def _affinity() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _own_paths(proc_cgroup: Path, controller: str) -> list[str]:
    """The process's cgroup paths: the v2 one (``0::PATH``) and the v1 ``controller``'s."""
    try:
        lines = proc_cgroup.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return ["/"]
    paths = []
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) == 3 and ((parts[0] == "0" and not parts[1])
                                or controller in parts[1].split(",")):
            paths.append(parts[2] or "/")
    return paths or ["/"]


def _dirs(root: Path, proc_cgroup: Path, controller: str) -> Iterator[Path]:
    """Existing cgroup folders to read: the process's own and its ancestors, v2 and v1."""
    mounts = [root, *(root / m for m in _V1_MOUNTS[controller])]
    seen: set[Path] = set()
    for mount in mounts:
        for own in _own_paths(proc_cgroup, controller):
            d = mount / own.strip("/")
            while True:
                if d not in seen and d.is_dir():
                    seen.add(d)
                    yield d
                if d == mount or mount not in d.parents:
                    break
                d = d.parent


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None


def _quota_of(d: Path) -> float | None:
    """CPUs one cgroup folder's quota allows; None: no quota there (or unreadable)."""
    with contextlib.suppress(ValueError, ZeroDivisionError):
        v2 = _read(d / "cpu.max")
        if v2 is not None:
            quota, period = v2.split()
            return None if quota == "max" else int(quota) / int(period)
        q, p = _read(d / "cpu.cfs_quota_us"), _read(d / "cpu.cfs_period_us")
        if q is not None and p is not None and int(q) > 0:
            return int(q) / int(p)
    return None


def cpu_quota(cgroup_root: str | Path = CGROUP_ROOT,
              proc_cgroup: str | Path = PROC_CGROUP) -> float | None:
    """CPUs the tightest cgroup quota allows (may be fractional); None: no quota."""
    found = [q for d in _dirs(Path(cgroup_root), Path(proc_cgroup), "cpu")
             if (q := _quota_of(d)) is not None and q > 0]
    return min(found, default=None)


def usable_cpus(cgroup_root: str | Path = CGROUP_ROOT,
                proc_cgroup: str | Path = PROC_CGROUP) -> int:
    """CPUs this process may use: its affinity, capped by the cgroup quota rounded up; >= 1."""
    n = _affinity()
    quota = cpu_quota(cgroup_root, proc_cgroup)
    if quota is not None:
        n = min(n, math.ceil(quota))
    return max(1, n)


def _mem_total(meminfo: Path) -> int | None:
    for line in (_read(meminfo) or "").splitlines():
        if line.startswith("MemTotal:"):
            with contextlib.suppress(IndexError, ValueError):
                return int(line.split()[1]) * 1024
    return None


def memory_limit(cgroup_root: str | Path = CGROUP_ROOT, proc_cgroup: str | Path = PROC_CGROUP,
                 meminfo: str | Path = MEMINFO) -> int | None:
    """Bytes of memory this process may use: the machine's RAM capped by the tightest cgroup
    limit; None when neither is known."""
    found = []
    for d in _dirs(Path(cgroup_root), Path(proc_cgroup), "memory"):
        text = _read(d / "memory.max") or _read(d / "memory.limit_in_bytes")
        if text and text != "max":
            with contextlib.suppress(ValueError):
                found.append(int(text))
    total = _mem_total(Path(meminfo))
    if total is not None:
        found.append(total)
    return min(found, default=None)


def default_workers(cgroup_root: str | Path = CGROUP_ROOT, proc_cgroup: str | Path = PROC_CGROUP,
                    meminfo: str | Path = MEMINFO) -> int:
    """Worker processes of ``workers: auto``: one per usable CPU, or fewer when memory cannot
    hold them: the driver's ``DRIVER_MEMORY``, then per worker ``WORKER_MEMORY`` and
    ``THREAD_MEMORY`` for each thread past the first that :func:`thread_split` gives it
    (fewer workers get more threads). At least 1."""
    cpus = usable_cpus(cgroup_root, proc_cgroup)
    mem = memory_limit(cgroup_root, proc_cgroup, meminfo)
    n = cpus
    if mem is not None:
        budget = mem - DRIVER_MEMORY
        while n > 1 and n * (WORKER_MEMORY + THREAD_MEMORY * (thread_split(cpus, n) - 1)) > budget:
            n -= 1
    return n


def resolve_workers(workers: int | str) -> int:
    """``workers`` as a number: ``"auto"`` is :func:`default_workers`, an int stays (>= 1)."""
    if workers == "auto":
        return default_workers()
    return max(1, int(workers))


def thread_split(cores: int, workers: int) -> int:
    """Decoder and encoder threads for each of ``workers`` videos sharing ``cores`` CPUs.

    Workers are what scales: videos are independent, so one thread per worker and a worker
    per core keep every core busy with no synchronisation, and that is the default. Threads
    only fill cores that the workers leave idle (``cores // workers``, never more threads than
    cores), and at most ``MAX_VIDEO_THREADS`` (8):

    - only decoding and encoding are threaded; scaling, hashing, signals and the shot detector
      run on one thread. At 1080p H.264 (real footage) decoding and encoding were 77 % of a
      worker's CPU, so even perfectly scaling threads give at most 1.6x with 2, 2.4x with 4,
      3.0x with 8 and 3.5x with 16; FFmpeg's frame threading scales well short of perfectly
      past ~8 (each thread adds a frame of delay and waits on its references; libavcodec caps
      its own automatic choice at 16). On a 2-core machine, 1 worker ran 1.26x faster with 2;
    - every thread costs memory: each frame thread holds its own frame context and output
      delay, x264's frame threads their frames. A worker's peak at 1080p H.264 was 437, 512,
      559, 632 MiB with 1, 2, 4, 8 threads (decoding alone: +10 MiB a thread).

    With ``workers >= cores`` each video gets 1 thread.
    """
    cores, workers = max(1, cores), max(1, workers)
    if workers >= cores:
        return 1
    return max(1, min(MAX_VIDEO_THREADS, cores // workers))
