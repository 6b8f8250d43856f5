"""The fetch part of the command line: run flags, ``retry`` and ``bench-fetch``."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from clipfactory.cliargs import count, frame_side, levels, seconds
from clipfactory.config import Config
from clipfactory.sources.layouts import LAYOUTS

__all__ = ["COMMANDS", "add_commands", "add_run_flags", "apply_run_flags"]


def add_run_flags(r: argparse.ArgumentParser) -> None:
    """Flags of ``clipfactory run`` about manifests and fetching."""
    r.add_argument("--layout", choices=["auto", *LAYOUTS], default=None,
                   help="manifest layout (default: detected from the columns)")
    r.add_argument("--keep-sources", action="store_true", default=None,
                   help="keep fetched source files after their clips are cut")
    r.add_argument("--cookies", default=None,
                   help="Netscape cookies.txt to send (only cookies you pass are ever used)")
    r.add_argument("--allow-private-network", action="store_true", default=None,
                   help="let manifest URLs reach loopback/private/link-local addresses")


def apply_run_flags(cfg: Config, a: argparse.Namespace) -> Config:
    """``cfg`` with the fetch flags applied."""
    if a.layout:
        cfg.ingest.layout = a.layout
    if a.keep_sources:
        cfg.fetch.keep_sources = True
    if a.allow_private_network:
        cfg.fetch.allow_private_network = True
    if a.cookies:
        if not Path(a.cookies).is_file():
            raise ValueError(f"cookie file not found: {a.cookies}")
        cfg.fetch.cookies_file = str(Path(a.cookies).resolve())
    return cfg


def add_commands(sub: argparse._SubParsersAction) -> None:
    """``retry`` and ``bench-fetch``."""
    t = sub.add_parser("retry", help="run again the inputs whose fetch failed and is due")
    t.add_argument("output")
    t.add_argument("--now", action="store_true", help="do not wait for the next retry time")
    t.add_argument("--no-wait", action="store_true",
                   help="fail at once if another clipfactory process is writing the output")
    t.add_argument("--all", dest="all_failures", action="store_true",
                   help="also inputs that failed for good (404, media errors, timeouts)")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.add_argument("--allow-private-network", action="store_true",
                   help="let manifest URLs reach loopback/private/link-local addresses")

    b = sub.add_parser("bench-fetch", help="fetch throughput against loopback servers")
    b.add_argument("--hosts", type=count(1), default=4)
    b.add_argument("--files", type=count(1), default=24, help="files per host")
    b.add_argument("--concurrency", default=(1, 4, 16), type=levels,
                   help="comma-separated levels")
    b.add_argument("--per-host", type=count(1), default=4)
    b.add_argument("--rate", type=float, default=20.0, help="requests/s per host")
    b.add_argument("--throttle-mbps", type=float, default=4.0,
                   help="server bandwidth per connection, MB/s (0 = unthrottled)")
    b.add_argument("--seconds", type=seconds, default=10.0, help="length of the test video")
    b.add_argument("--width", type=frame_side, default=320)
    b.add_argument("--height", type=frame_side, default=180)


def _cmd_retry(a: argparse.Namespace) -> int:
    from clipfactory.cli import _print_counts
    from clipfactory.fetch.retry import retry

    try:
        summary = retry(a.output, now=a.now, all_failures=a.all_failures, quiet=a.quiet,
                        allow_private_network=a.allow_private_network)
    except FileNotFoundError as e:
        print(f"clipfactory: {e}", file=sys.stderr)
        return 2
    info = summary["retry"]
    if not info["requeued"]:
        when = info["next_retry_at"]
        due = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(when)) if when else None
        print("nothing to retry" + (f"; the next retry is due {due} (or use --now)"
                                    if due else ""))
        return 0
    print(f"requeued {info['requeued']} inputs")
    _print_counts(summary["counts"], Path(a.output))
    return 0


def _cmd_bench_fetch(a: argparse.Namespace) -> int:
    from clipfactory.bench.fetch import run_fetch_bench

    run_fetch_bench(hosts=a.hosts, files_per_host=a.files, concurrency=a.concurrency,
                    per_host=a.per_host, rate_per_host=a.rate,
                    throttle_bps=a.throttle_mbps * 1e6, seconds=a.seconds, width=a.width,
                    height=a.height)
    return 0


COMMANDS = {"retry": _cmd_retry, "bench-fetch": _cmd_bench_fetch}
