"""How long ``clipfactory report`` takes as a dataset grows: a real run on a generated corpus,
then the same output with its index and rejected rows repeated up to ``--clips`` rows each
(new clip ids, the same shard members and source spans, so thumbnails are real work).

    python -m clipfactory.bench.report --workdir bench-out/report --clips 10000 100000

For each size it prints the build time with no thumbnail cache (cold), with the cache (warm),
and the page size. The repeated rows are a stand-in for a large dataset: counts, samples and
charts run over all of them; thumbnails are capped whatever the size.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from clipfactory.config import Config
from clipfactory.pipeline import run
from clipfactory.report import build_report
from clipfactory.report.sample import reason_column
from clipfactory.sinks.parts import INDEX_DIR, REJECTED_DIR
from clipfactory.testing.synth import make_corpus

__all__ = ["main", "repeat_rows", "run_report_bench"]


def _repeat(table: pa.Table, n: int, id_cols: tuple[str, ...]) -> pa.Table:
    if not len(table):
        return table
    parts = []
    for k in range(-(-n // len(table))):
        t = table
        for col in id_cols:
            v = t.column(col)
            new = v if k == 0 else pc.if_else(pc.is_valid(v), pc.binary_join_element_wise(
                pc.fill_null(v, ""), pa.scalar(f"r{k}"), "_"), v)
            t = t.set_column(t.column_names.index(col), col, new)
        parts.append(t)
    return pa.concat_tables(parts).slice(0, n)


def repeat_rows(src: Path, dst: Path, clips: int) -> None:
    """Copy output ``src`` to ``dst`` with ``clips`` kept and ``clips`` dropped-clip rows, as
    compacted files only: the report reads the index and rejected parts instead when their
    folders exist, so they are left out, and ``summary.json`` counts the new rows (the report
    decides from those counts whether to sample)."""
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst, ignore=lambda d, names: [
        n for n in names if n in ("report_files", "report.html", INDEX_DIR, REJECTED_DIR)
        and Path(d) == src])
    index = pq.read_table(src / "index.parquet")
    rejected = pq.read_table(src / "rejected.parquet")
    is_clip = pc.equal(rejected.column("kind"), "clip")
    videos, dropped = rejected.filter(pc.invert(is_clip)), rejected.filter(is_clip)
    index = _repeat(index, clips, ("clip_id",))
    dropped = _repeat(dropped, clips, ("clip_id", "duplicate_of"))
    pq.write_table(index, dst / "index.parquet")
    pq.write_table(pa.concat_tables([videos, dropped]), dst / "rejected.parquet")
    summary = json.loads((src / "summary.json").read_text(encoding="utf-8"))
    counts = summary["counts"]
    counts["clips"].update(kept=len(index), dropped=len(dropped))
    counts["dropped_by_reason"] = {d["values"]: d["counts"]
                                   for d in pc.value_counts(reason_column(dropped)).to_pylist()}
    (dst / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")


def run_report_bench(workdir: str | Path, sizes: list[int], minutes: float = 4.0,
                     width: int = 640, height: int = 360) -> None:
    """Generate, curate, then time the report at each size (see the module docstring)."""
    work = Path(workdir)
    corpus, base = work / "corpus", work / "dataset"
    if not corpus.is_dir():
        make_corpus(corpus, seconds=minutes * 60, videos=8, width=width, height=height,
                    with_broken=True, with_duplicate=True)
    if not (base / "summary.json").is_file():
        run(corpus, base, Config(workers=2))
    print(f"{'clips kept':>10} {'dropped':>8} {'cold s':>7} {'warm s':>7} {'made':>5} "
          f"{'page KiB':>8}")
    for n in sizes:
        dst = work / f"x{n}"
        if n:
            repeat_rows(base, dst, n)
        else:
            dst = base
        cold = build_report(dst, cache=False)
        t0 = time.perf_counter()
        warm = build_report(dst)
        wall = time.perf_counter() - t0
        print(f"{cold.kept:>10} {cold.dropped:>8} {cold.seconds:>7.2f} {wall:>7.2f} "
              f"{cold.made:>5} {warm.path.stat().st_size / 1024:>8.0f}")


def main() -> None:
    """``python -m clipfactory.bench.report``."""
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--workdir", default="bench-out/report")
    p.add_argument("--clips", type=int, nargs="+", default=[0, 10_000, 100_000],
                   help="rows of each kind to time (0: the real run as it is)")
    p.add_argument("--minutes", type=float, default=4.0, help="minutes of video to generate")
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=360)
    a = p.parse_args()
    run_report_bench(a.workdir, a.clips, a.minutes, a.width, a.height)


if __name__ == "__main__":
    main()
