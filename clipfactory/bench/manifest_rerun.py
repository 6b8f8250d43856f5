"""What registering a manifest costs on the second run, before and after the manifest state.

    python -m clipfactory.bench.manifest_rerun --rows 100000 --dir /tmp/manifest-rerun

Writes a manifest of ``--rows`` Panda-style rows (an id, a URL, two captioned spans, a license;
JSON lines or CSV), then times, each on the run's own path:

- ``first run``: the whole manifest, without (``Ledger.register(read_input(...))``, as every
  run did before) and with the state kept (:func:`register_input`);
- ``second run``: the same file again, both ways;
- ``touched``: the same bytes with a new mtime (the read part is hashed, nothing is parsed);
- ``appended``: ``--append`` rows added at the end.

Timings are of this machine and this run: they go in docs, never in tests.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from clipfactory.ledger import Ledger
from clipfactory.sources import read_input
from clipfactory.sources.manifest_state import register_input

__all__ = ["main", "measure", "write_manifest"]


def _row(i: int) -> dict[str, Any]:
    return {"videoID": f"vid{i:09d}", "url": f"https://videos.example.org/watch?v={i:09d}",
            "timestamp": json.dumps([["0:00:01.000", "0:00:06.500"],
                                     ["0:00:09.000", "0:00:15.250"]]),
            "caption": json.dumps([f"a person walks a dog in park {i}",
                                   f"the dog runs after a ball {i}"]),
            "license": "CC-BY-4.0", "matching_score": 0.31}


def write_manifest(path: Path, lo: int, hi: int) -> None:
    """Append rows ``lo``..``hi`` (a CSV header when the file is new)."""
    new = not path.exists()
    with path.open("a", encoding="utf-8", newline="") as fh:
        if path.suffix == ".csv":
            w = csv.DictWriter(fh, fieldnames=list(_row(0)))
            if new:
                w.writeheader()
            w.writerows(_row(i) for i in range(lo, hi))
        else:
            fh.writelines(json.dumps(_row(i)) + "\n" for i in range(lo, hi))


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def measure(work: Path, rows: int, append: int, fmt: str = "jsonl") -> dict[str, float]:
    """Seconds of each step (module docstring)."""
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    m = work / f"manifest.{fmt}"
    write_manifest(m, 0, rows)
    plain, kept = Ledger(work / "plain.sqlite"), Ledger(work / "kept.sqlite")
    try:
        out: dict[str, float] = {}
        out["first run, parse all"], _ = _timed(lambda: plain.register(read_input(m)))
        out["first run, state kept"], _ = _timed(lambda: register_input(kept, m))
        out["second run, parse all"], _ = _timed(lambda: plain.register(read_input(m)))
        out["second run, state kept"], s = _timed(lambda: register_input(kept, m))
        _check(s.mode == "unchanged", "second run: the manifest was parsed again")
        st = m.stat()
        os.utime(m, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
        out["touched, state kept"], s = _timed(lambda: register_input(kept, m))
        _check(s.rows == 0, "touched: rows were parsed")
        write_manifest(m, rows, rows + append)
        out["appended, parse all"], _ = _timed(lambda: plain.register(read_input(m)))
        out["appended, state kept"], s = _timed(lambda: register_input(kept, m))
        _check(s.mode == "appended" and s.rows == s.added == append, f"appended: {s}")
        _check(plain.pending_count() == kept.pending_count() == rows + append,
               "the two ledgers differ")
    finally:
        plain.close()
        kept.close()
    return out


def _check(ok: bool, what: str) -> None:
    if not ok:
        raise RuntimeError(what)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--append", type=int, default=1000)
    ap.add_argument("--format", choices=("jsonl", "csv"), default="jsonl")
    ap.add_argument("--dir", type=Path, default=Path("/tmp/manifest-rerun"))
    args = ap.parse_args(argv)
    out = measure(args.dir, args.rows, args.append, args.format)
    for name, secs in out.items():
        print(f"{name:28s} {secs:9.3f} s")
    for step in ("first run", "second run", "appended"):
        ratio = out[f"{step}, parse all"] / max(out[f"{step}, state kept"], 1e-9)
        print(f"{step}: parse all / state kept = {ratio:.1f}x")


if __name__ == "__main__":
    main()
