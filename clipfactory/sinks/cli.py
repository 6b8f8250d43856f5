"""``clipfactory dedup --full`` and ``clipfactory compact``: the dataset-wide steps a run no
longer pays for (docs/scale.md)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from clipfactory.lock import holds_output_lock

__all__ = ["COMMANDS", "add_commands", "compact_output", "rededup_output"]


def add_commands(sub: argparse._SubParsersAction) -> None:
    d = sub.add_parser("dedup", help="dedup the whole dataset again (rebuilds the dedup index)")
    d.add_argument("output")
    d.add_argument("--full", action="store_true", required=True,
                   help="every kept clip against every other (runs already dedup what they add)")
    c = sub.add_parser("compact", help="write index.parquet and rejected.parquet from the parts")
    c.add_argument("output")


@holds_output_lock("dedup")
def rededup_output(out: str | Path) -> dict[str, Any]:
    """Rebuild the persistent dedup index and dedup every kept clip again, then finalize."""
    from clipfactory.config import stored_config
    from clipfactory.finalize import full_rededup
    from clipfactory.provenance.takedown import open_output

    ledger = open_output(out)
    try:
        cfg = stored_config(ledger.get_meta("config"))
        return full_rededup(out, cfg, ledger)
    finally:
        ledger.close()


@holds_output_lock("compact")
def compact_output(out: str | Path) -> dict[str, int]:
    """Write the compacted files from the parts, whatever the dataset's size."""
    from clipfactory.provenance.takedown import open_output
    from clipfactory.sinks.partition import compact

    open_output(out).close()  # an output folder, not any folder
    return {which: compact(Path(out), which) for which in ("index", "rejected")}


def _cmd_dedup(a: argparse.Namespace) -> int:
    if not (Path(a.output) / "ledger.sqlite").is_file():
        print(f"clipfactory: no clipfactory output in {a.output}", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    summary = rededup_output(a.output)
    print(json.dumps({**summary["rededup"], "seconds": round(time.perf_counter() - t0, 2)}))
    return 0


def _cmd_compact(a: argparse.Namespace) -> int:
    if not (Path(a.output) / "ledger.sqlite").is_file():
        print(f"clipfactory: no clipfactory output in {a.output}", file=sys.stderr)
        return 2
    rows = compact_output(a.output)
    print(f"index.parquet: {rows['index']} rows; rejected.parquet: {rows['rejected']} rows")
    return 0


COMMANDS = {"dedup": _cmd_dedup, "compact": _cmd_compact}
