"""This process's peak memory, for the per-video accounting and the benchmarks."""

from __future__ import annotations

import resource
import sys
from pathlib import Path

__all__ = ["peak_rss_mib"]


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
