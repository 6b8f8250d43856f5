"""``OUT/report.html``: gather, sample, make thumbnails, render, write atomically.

:func:`build_report` is what ``clipfactory report`` calls; :func:`report_after_finalize` is
what the pipeline calls after every finalize, so the page is never stale (after a takedown its
pictures of the removed sources go too) and a failure only logs a warning.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

from clipfactory.atomic import write_atomic
from clipfactory.errors import storage_refused
from clipfactory.lock import holds_output_lock
from clipfactory.report.data import load_report_data
from clipfactory.report.render import render_page
from clipfactory.report.rows import MAX_ROWS
from clipfactory.report.sample import choose_samples, thumb_requests
from clipfactory.report.thumbs import make_thumbs, prune_thumbs

__all__ = ["REPORT_FILE", "ReportResult", "build_report", "report_after_finalize"]

REPORT_FILE = "report.html"
log = logging.getLogger("clipfactory")


@dataclass(frozen=True)
class ReportResult:
    """What one build did: the page, clips shown, thumbnails made, cached or replaced by a
    placeholder, stale ones pruned, and the time it took."""

    path: Path
    kept: int
    dropped: int
    shown: int
    made: int
    cached: int
    placeholders: int
    pruned: int
    seconds: float


@holds_output_lock("report")
def build_report(out: str | Path, *, per_reason: int = 8, kept: int = 24, groups: int = 8,
                 per_group: int = 4, cache: bool = True, workers: int | None = None,
                 max_rows: int = MAX_ROWS) -> ReportResult:
    """Write ``OUT/report.html`` (and its thumbnails under ``OUT/report_files/``).

    At most ``per_reason`` clips per drop reason, ``kept`` kept clips and ``groups`` dedup
    groups of ``per_group`` removed clips get thumbnails; ``cache=False`` remakes them. A table
    of more than ``max_rows`` rows is read as a fixed sample of its parts (the page says so)."""
    t0 = time.perf_counter()
    out = Path(out)
    data = load_report_data(out, max_rows=max_rows)
    samples = choose_samples(data, per_reason=per_reason, kept=kept, groups=groups,
                             per_group=per_group)
    thumbs = make_thumbs(out, thumb_requests(data, samples), cache=cache, workers=workers)
    settings = {"clips per drop reason": per_reason, "kept clips": kept, "dedup groups": groups,
                "duplicates per group": per_group}
    page = render_page(data, samples, thumbs, settings=settings)
    path = out / REPORT_FILE
    write_atomic(path, page, tag="part")
    pruned = prune_thumbs(out, {t.file for t in thumbs.values() if t.file})
    files = [t for t in thumbs.values() if t.file]
    return ReportResult(path, data.kept_total, data.dropped_total, len(thumbs),
                        sum(not t.cached for t in files), sum(t.cached for t in files),
                        len(thumbs) - len(files), pruned, time.perf_counter() - t0)


AFTER_RUN_ROWS = 20_000  # rows a run's own report reads (~1 s); `clipfactory report`: MAX_ROWS


def report_after_finalize(out: str | Path) -> ReportResult | None:
    """:func:`build_report` over at most ``AFTER_RUN_ROWS`` rows per table, so that every run
    pays a bounded price for its report at any dataset size; a failure is logged, never raised
    (the report must not fail a run), except a full disk, which stops the command like any of
    its writes (:class:`clipfactory.errors.StorageRefused`): the next run writes the report."""
    try:
        r = build_report(out, max_rows=AFTER_RUN_ROWS)
    except Exception as e:  # anything at all: the dataset is written already
        if storage_refused(e):
            raise
        log.warning("report.html not written: %s: %s", type(e).__name__, e, exc_info=True)
        return None
    log.info("report: %s (%d thumbnails made, %d cached, %d placeholders) in %.2fs", r.path,
             r.made, r.cached, r.placeholders, r.seconds)
    return r
