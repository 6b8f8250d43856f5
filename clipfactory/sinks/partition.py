"""Keeping the index parts, the rejected parts and the compacted files up to date.

Which parts a finalize rewrites is read from the ledger, not remembered by the code that made
the change, so a run killed at any point redoes exactly what is missing:

- an index part is stale when its shard's ``sha256`` differs from the ``part_sha`` recorded
  when the part was written (a new shard has none); a part whose shard is gone is deleted;
- a rejected part is stale when ``dirty_rejected`` lists it (triggers mark it in the same
  transaction as the change, :mod:`clipfactory.ledger_derived`).

Each index part's statistics (:func:`clipfactory.sinks.stats.kept_stats`) are stored with its
shard row, so the summary and the card merge per-shard statistics instead of reading clips.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from clipfactory.atomic import replacing
from clipfactory.ledger import Ledger, query_in
from clipfactory.ledger_derived import REJECTED_PART_INPUTS
from clipfactory.records import ClipRecord
from clipfactory.sinks.index import INDEX_SCHEMA, REJECTED_SCHEMA, index_table, rejected_table
from clipfactory.sinks.parts import (
    INDEX_DIR,
    index_part,
    index_parts,
    prune_empty_dirs,
    rejected_part,
    rejected_parts,
    shard_of_part,
    write_part,
)

__all__ = ["MAP_MIN_PARTS", "ClipRow", "PartsMapper", "PartsUpdate", "StatsOf", "clips_of_rows",
           "compact", "compacted", "file_stale", "merged_stats", "refresh_parts", "shard_clips",
           "shard_rows"]

log = logging.getLogger("clipfactory")

ClipRow = tuple[str, str, str | None, str | None, str | None]  # record, state, stage, ...
StatsOf = Callable[[list[ClipRecord]], dict[str, Any]]
# (output folder, (shard, its clip rows) for each stale part, stats_of) -> (shard, stats) of
# each part written, in any order: how index parts are written elsewhere (Ray: sinks.ray_parts)
PartsMapper = Callable[[Path, Iterable[tuple[str, list[ClipRow]]], StatsOf],
                       Iterable[tuple[str, dict[str, Any]]]]
MAP_MIN_PARTS = 8  # fewer stale parts are written here: a mapper's start costs more than they do
_CLIP_COLUMNS = ("record", "state", "stage", "reason", "shard")
_SHARD_CLIPS = ("SELECT record, state, stage, reason, shard FROM clips WHERE shard = ? AND"
                " state = 'sharded'")


@dataclass
class PartsUpdate:
    """What one refresh rewrote: index parts written and deleted, rejected parts written."""

    index_written: int = 0
    index_deleted: int = 0
    rejected_written: int = 0
    seconds: float = 0.0
    marked: dict[str, bool] = field(default_factory=dict)

    @property
    def changed(self) -> bool:
        return bool(self.index_written or self.index_deleted or self.rejected_written)


def shard_clips(ledger: Ledger, shard: str) -> list[ClipRecord]:
    """The kept clips of one shard (an index lookup on ``clips.shard``)."""
    return [Ledger._clip(r) for r in ledger.db.execute(_SHARD_CLIPS, (shard,))]


def shard_rows(ledger: Ledger, shard: str) -> list[ClipRow]:
    """The kept clips of one shard as plain ledger rows, in :func:`shard_clips`'s order: what
    a worker that must not open the ledger needs to rebuild them (:func:`clips_of_rows`)."""
    return [tuple(r) for r in ledger.db.execute(_SHARD_CLIPS, (shard,))]


def clips_of_rows(rows: Iterable[ClipRow]) -> list[ClipRecord]:
    """The clip records of :func:`shard_rows`'s rows."""
    return [Ledger._clip(dict(zip(_CLIP_COLUMNS, r, strict=True))) for r in rows]


def refresh_parts(out: Path, ledger: Ledger, stats_of: StatsOf, *,
                  map_parts: PartsMapper | None = None) -> PartsUpdate:
    """Rewrite stale index and rejected parts; delete index parts of vanished shards.

    ``map_parts``, when given and more than :data:`MAP_MIN_PARTS` index parts are stale (the
    first finalize of an older output, a ``dedup --full``), writes them instead of this
    process: it gets each stale shard's clip rows, read here (the ledger stays with the
    driver), and returns each part's statistics, recorded here.
    """
    t0 = time.perf_counter()
    upd = PartsUpdate()
    shards = ledger.db.execute(
        "SELECT name, sha256, part_sha IS NULL OR part_sha != sha256 FROM shards"
        " ORDER BY name").fetchall()
    present = {shard_of_part(out, p): p for p in index_parts(out)}
    # a part a crash or a person removed comes back too
    stale = [(name, sha) for name, sha, old in shards if old or name not in present]
    if stale:
        _mark(ledger, "index", upd)
    for name, sha, stats in _write_index_parts(out, ledger, stale, stats_of, map_parts):
        ledger.db.execute("UPDATE shards SET part_sha = ?, stats = ? WHERE name = ?",
                          (sha, json.dumps(stats), name))
        upd.index_written += 1
    known = {r[0] for r in shards}
    for name, part in present.items():
        if name not in known:
            _mark(ledger, "index", upd)
            part.unlink()
            upd.index_deleted += 1
    if upd.index_deleted or upd.index_written:  # a bucket whose last part went
        prune_empty_dirs(out / INDEX_DIR)
    for (number,) in ledger.db.execute(
            "SELECT part FROM dirty_rejected ORDER BY part").fetchall():
        _mark(ledger, "rejected", upd)
        write_part(_rejected_rows(ledger, number), rejected_part(out, number))
        ledger.db.execute("DELETE FROM dirty_rejected WHERE part = ?", (number,))
        upd.rejected_written += 1
    upd.seconds = time.perf_counter() - t0
    if upd.changed:
        log.info("index parts: %d written, %d deleted; rejected parts: %d written (%.2f s)",
                 upd.index_written, upd.index_deleted, upd.rejected_written, upd.seconds)
    return upd


def _write_index_parts(out: Path, ledger: Ledger, stale: list[tuple[str, str]], stats_of: StatsOf,
                       map_parts: PartsMapper | None) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """Write the stale parts, here or through ``map_parts``; yield (shard, sha, stats) of each
    part once it is on disk, so the ledger records only parts that exist."""
    if map_parts is None or len(stale) <= MAP_MIN_PARTS:
        for name, sha in stale:
            clips = shard_clips(ledger, name)
            write_part(index_table(clips), index_part(out, name))
            yield name, sha, stats_of(clips)
        return
    shas = dict(stale)
    jobs = ((name, shard_rows(ledger, name)) for name, _ in stale)  # read as the mapper pulls
    for name, stats in map_parts(out, jobs, stats_of):
        yield name, shas[name], stats


def _mark(ledger: Ledger, which: str, upd: PartsUpdate) -> None:
    """Before a part changes, note that the compacted file is behind: kept in the ledger, so
    that a run killed between the parts and the compaction still compacts when it resumes."""
    if not upd.marked.get(which):
        ledger.set_meta(f"{which}_file_stale", True)
        upd.marked[which] = True


def compacted(ledger: Ledger, which: str) -> None:
    """The compacted file (or its removal) caught up with the parts."""
    ledger.db.execute("DELETE FROM meta WHERE key = ?", (f"{which}_file_stale",))


def file_stale(ledger: Ledger, which: str) -> bool:
    return bool(ledger.get_meta(f"{which}_file_stale", False))


def _rejected_rows(ledger: Ledger, number: int) -> pa.Table:
    lo, hi = number * REJECTED_PART_INPUTS, (number + 1) * REJECTED_PART_INPUTS - 1
    failed = ledger.db.execute(
        "SELECT * FROM videos WHERE state IN ('failed', 'removed') AND seq BETWEEN ? AND ?"
        " ORDER BY seq", (lo, hi)).fetchall()
    keys = [r[0] for r in ledger.db.execute(
        "SELECT item_key FROM videos WHERE seq BETWEEN ? AND ?", (lo, hi))]
    dropped = [Ledger._clip(r) for r in query_in(
        ledger.db, "SELECT record, state, stage, reason, shard FROM clips WHERE state ="
        " 'dropped' AND item_key IN ({})", keys)]
    dropped.sort(key=lambda c: c.clip_id)
    return rejected_table(dropped, failed)


_MERGED = "kept_stats_merged"


def merged_stats(ledger: Ledger, merge: Callable[[Iterable[dict[str, Any]]], dict[str, Any]]
                 ) -> dict[str, Any]:
    """The statistics of every kept clip: the merge of the per-shard statistics.

    The last merge is kept in the ledger with the (shard, part hash) pairs it covers: when a
    run only added shards, their statistics are merged into it (O(new shards)); when a shard
    changed or went (a dedup drop, a takedown), everything is merged again (O(shards))."""
    parts = dict(ledger.db.execute(
        "SELECT name, part_sha FROM shards WHERE stats IS NOT NULL").fetchall())
    cache = ledger.get_meta(_MERGED)
    if cache and all(parts.get(n) == sha for n, sha in cache["parts"].items()):
        new = sorted(set(parts) - set(cache["parts"]))
        if not new:
            return cache["stats"]
        stats = merge([cache["stats"], *_stats_of(ledger, new)])
    else:
        stats = merge(json.loads(r[0]) for r in ledger.db.execute(
            "SELECT stats FROM shards WHERE stats IS NOT NULL ORDER BY name"))
    ledger.set_meta(_MERGED, {"parts": parts, "stats": stats})
    return stats


def _stats_of(ledger: Ledger, names: list[str]) -> Iterator[dict[str, Any]]:
    for (stats,) in query_in(ledger.db, "SELECT stats FROM shards WHERE name IN ({})"
                             " ORDER BY name", names):
        yield json.loads(stats)


def compact(out: Path, which: str = "index") -> int:
    """Write ``index.parquet`` (or ``rejected.parquet``) from the parts, one part at a time
    (memory: one part), to a temporary name renamed when complete; return the row count."""
    parts, schema = ((index_parts(out), INDEX_SCHEMA) if which == "index"
                     else (rejected_parts(out), REJECTED_SCHEMA))
    rows = 0
    with replacing(out / f"{which}.parquet") as tmp, \
            pq.ParquetWriter(tmp, schema, compression="zstd") as w:
        for p in parts:
            table = pq.read_table(p, schema=schema)
            w.write_table(table)
            rows += table.num_rows
    return rows
