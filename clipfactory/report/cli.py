"""``clipfactory report OUT``: parse and call."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from clipfactory.cliargs import count

__all__ = ["COMMANDS", "add_commands"]


def add_commands(sub: Any) -> None:
    """Register the subcommand on the main parser's subparsers."""
    r = sub.add_parser("report", help="write OUT/report.html (thumbnails, charts, licenses)")
    r.add_argument("output")
    r.add_argument("--per-reason", type=count(0), default=8, metavar="N",
                   help="thumbnails per drop reason (a fixed sample)")
    r.add_argument("--kept", type=count(0), default=24, metavar="N", help="kept clips shown")
    r.add_argument("--groups", type=count(0), default=8, metavar="N",
                   help="dedup groups shown")
    r.add_argument("--no-cache", action="store_true", help="remake every thumbnail")
    r.add_argument("--max-rows", type=count(1), default=200_000, metavar="N",
                   help="past N rows, read a fixed sample of the index and rejected parts")
    r.add_argument("--no-wait", action="store_true",
                   help="fail at once if another clipfactory process is writing the output "
                   "(by default the report waits for it: a takedown, a run)")



def _cmd_report(a: argparse.Namespace) -> int:
    from clipfactory.report import build_report

    try:
        r = build_report(a.output, per_reason=a.per_reason, kept=a.kept, groups=a.groups,
                         cache=not a.no_cache, max_rows=a.max_rows)
    except FileNotFoundError as e:
        print(f"clipfactory: {e}", file=sys.stderr)
        return 2
    print(f"{r.path}: {r.kept} kept and {r.dropped} dropped clips; {r.shown} shown "
          f"({r.made} thumbnails made, {r.cached} cached, {r.placeholders} placeholders) "
          f"in {r.seconds:.2f} s")
    return 0


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {"report": _cmd_report}
