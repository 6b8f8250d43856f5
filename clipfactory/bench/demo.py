"""``clipfactory demo`` (behind ``make demo``): build a sample corpus and curate it end to end.

The corpus holds ordinary videos with hard cuts, shots the filters should drop (dark, static,
blurry), a re-encoded near-duplicate, a file name with spaces and non-ASCII characters, and
broken files (zero bytes, text named .mp4, truncated, garbage in the middle, audio only).
"""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq

from clipfactory.config import Config
from clipfactory.pipeline import run
from clipfactory.testing.synth import make_corpus

__all__ = ["run_demo"]


def run_demo(workdir: Path, workers: int = 2) -> dict:
    """Generate ``workdir/corpus`` (once) and curate it into ``workdir/dataset``."""
    corpus = workdir / "corpus"
    if not corpus.is_dir():
        print(f"generating a sample corpus in {corpus} ...")
        make_corpus(corpus, seconds=60.0, videos=4, width=640, height=360, with_broken=True,
                    with_duplicate=True)
    out = workdir / "dataset"
    summary = run(corpus, out, Config(workers=workers), quiet=False)
    counts = summary["counts"]
    index = pq.read_table(out / "index.parquet").to_pylist()
    rejected = pq.read_table(out / "rejected.parquet").to_pylist()
    print(f"\ndataset: {out.resolve()}")
    print(f"  {counts['clips']['kept']} clips ({counts['hours_out'] * 60:.2f} min) in "
          f"{len(summary['shards'])} shard(s) from {counts['videos']['done']} videos "
          f"({counts['hours_in'] * 60:.2f} min in)")
    for row in index[:8]:
        print(f"  {row['key']}: frames [{row['start_frame']}, {row['end_frame']}) "
              f"{row['duration_s']:.2f}s {row['width']}x{row['height']} -> {row['shard']}")
    if len(index) > 8:
        print(f"  ... and {len(index) - 8} more (see index.parquet)")
    print("  dropped or failed:")
    for row in rejected:
        what = row["clip_id"] or Path(row["source"]).name
        print(f"    {row['stage']}/{row['reason']}: {what}")
    t = summary["throughput"]
    if t:
        print(f"  throughput: {t['x_realtime']}x realtime with {t['workers']} workers")
    print(f"  card: {out / 'README.md'}; report: {out / 'report.html'} (open it in a browser)")
    print("  rerun `make demo` to see the resume (nothing redone)")
    return summary
