"""This process's peak memory and page faults, for the per-video accounting and the
benchmarks; keeping freed memory for reuse within a video, and handing it back between videos."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc
import resource
import sys
from pathlib import Path
from typing import Any

__all__ = ["KEEP_FREE_MIB", "Usage", "peak_rss_mib", "release_memory", "reuse_freed_memory"]

# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_MMAP_MIB = 32  # blocks up to this size come from the heap: glibc's largest allowed threshold
KEEP_FREE_MIB = 256  # free memory at the top of the heap kept for reuse, not trimmed


@functools.cache
def _libc() -> Any:
    name = ctypes.util.find_library("c")
    try:
        lib = ctypes.CDLL(name) if name else None
        return lib if lib is not None and hasattr(lib, "malloc_trim") else None
    except OSError:
        return None


def _mallopt() -> Any:
    """glibc's ``mallopt``, or None where the C library has none (or is not glibc)."""
    return getattr(_libc(), "mallopt", None)


def reuse_freed_memory() -> bool:
    """Within a video, keep freed memory for the next allocation instead of returning it to the
    system at once (glibc ``mallopt``; elsewhere a no-op). Returns whether the settings took.

    glibc serves a block above its mmap threshold (128 KiB at first, rising to the largest
    block freed so far) with its own mapping, and trims the heap's top as soon as more than
    twice that threshold is free there; the next allocation of that memory faults in fresh
    zeroed pages. The analysis pass allocates and frees the same buffers over and over (the
    shot network's tensors, above all, now that its session keeps no arena; each batch's
    arrays). With blocks up to 32 MiB from the heap and up to :data:`KEEP_FREE_MIB` MiB kept
    free at its top, a process timing the network on six windows 12 times took 50,000
    page faults instead of 921,000, and its runs ~12 % less CPU (as fast as with
    onnxruntime's arena, without that memory held through the cut); a worker over 11 real
    360p videos took 323,000 faults instead of 478,000. Nothing computed changes.
    :func:`release_memory` still hands everything back, after the analysis pass and after
    each video.

    The settings are process-wide: call this in worker processes and in the commands that
    analyse videos in their own process, not in a library caller's."""
    mallopt = _mallopt()
    if mallopt is None:
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_MIB << 20) == 1
                and mallopt(_M_TRIM_THRESHOLD, KEEP_FREE_MIB << 20) == 1)


def release_memory() -> None:
    """After a video, and after its analysis pass (before the cut): collect reference cycles
    (decoded frames whose side data was read stay alive until a full collection) and return
    freed heap to the system (glibc ``malloc_trim``, whatever :func:`reuse_freed_memory`
    keeps; elsewhere a no-op). A long-lived worker at 1080p otherwise kept ~60 MiB more per
    video mix, measured 495 -> 430 MiB peak over 8 real 1080p videos in one process."""
    gc.collect()
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)


def peak_rss_mib() -> float:
    """This process's peak resident set size in MiB (Linux ``VmHWM``). Not ``ru_maxrss``: on
    Linux a child keeps its forking parent's peak in ``ru_maxrss`` across exec, and
    ``RUSAGE_CHILDREN`` is the largest of every child ever waited for."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # no /proc: macOS counts bytes
    return peak / (1024 * 1024 if sys.platform == "darwin" else 1024)


class Usage:
    """System CPU time and page faults (minor and major) this process spent since it was made:
    ``Usage().since()`` after some work gives ``(sys_s, page_faults)``. Both are counted for the
    whole process, every thread, like ``time.process_time``. Page faults move less than CPU
    time on a busy host (0.2-8 % between runs against 12-40 %, docs/bench.md)."""

    def __init__(self) -> None:
        self._start = resource.getrusage(resource.RUSAGE_SELF)

    def since(self) -> tuple[float, int]:
        now = resource.getrusage(resource.RUSAGE_SELF)
        faults = (now.ru_minflt + now.ru_majflt) - (self._start.ru_minflt + self._start.ru_majflt)
        return now.ru_stime - self._start.ru_stime, faults
