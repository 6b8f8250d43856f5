"""Which rows of the index and of the rejected table the report reads: all of them, or past
``max_rows`` a deterministic sample of whole parts.

The output folder holds the partitioned tables (``index/**/*.parquet``, one part per shard;
``rejected/part-*.parquet``, one per range of inputs; :mod:`clipfactory.sinks.parts`), the
compacted files (``index.parquet``, ``rejected.parquet``), or both; the parts win when their
folder exists, since a large dataset has no compacted file. A table of more than ``max_rows``
rows is sampled by unit: its parts (or the row groups of a compacted file) are ranked by a
hash of their name and taken in that order until ``max_rows`` rows are reached, so the same
parts are read on every build. Whole parts keep together what belongs together: a shard's
clips, and an input's dropped clips with its own failure row.
"""

from __future__ import annotations

import hashlib
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from clipfactory.ledger import query_in
from clipfactory.sinks.parts import (
    INDEX_DIR,
    REJECTED_DIR,
    index_part,
    index_parts,
    rejected_parts,
)

__all__ = ["MAX_ROWS", "RowSample", "conform", "kept_rows", "read_rows"]

MAX_ROWS = 200_000  # rows of one table the report reads before it samples


@dataclass(frozen=True)
class RowSample:
    """What a sampled table holds: ``rows`` of ``total`` rows, from ``units`` of ``of_units``
    parts, or row groups of a compacted file (``unit`` names which)."""

    rows: int
    total: int
    units: int
    of_units: int
    unit: str = "parts"


@dataclass(frozen=True)
class _Unit:
    name: str  # ranked by its hash: the part's path in the folder, or FILE#row-group
    path: Path
    row_group: int | None = None

    def num_rows(self) -> int:
        meta = pq.ParquetFile(self.path).metadata
        return meta.num_rows if self.row_group is None else meta.row_group(self.row_group).num_rows

    def read(self) -> pa.Table:
        if self.row_group is None:
            return pq.read_table(self.path)
        return pq.ParquetFile(self.path).read_row_group(self.row_group)


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` with every column of ``schema`` (an older or newer file: missing ones null)."""
    for f in schema:
        if f.name not in table.column_names:
            table = table.append_column(f, pa.nulls(len(table), f.type))
    return table


def _units(out: Path, which: str) -> list[_Unit]:
    folder, parts = ((INDEX_DIR, index_parts) if which == "index"
                     else (REJECTED_DIR, rejected_parts))
    if (out / folder).is_dir():
        return [_Unit(p.relative_to(out).as_posix(), p) for p in parts(out)]
    path = out / f"{which}.parquet"
    if not path.is_file():
        return []
    groups = pq.ParquetFile(path).metadata.num_row_groups
    return [_Unit(f"{path.name}#{i}", path, i) for i in range(groups)]


def _rank(unit: _Unit) -> bytes:
    return hashlib.blake2b(unit.name.encode("utf-8", "surrogatepass"), digest_size=8).digest()


def _concat(tables: list[pa.Table], schema: pa.Schema) -> pa.Table:
    if not tables:
        return schema.empty_table()
    return conform(pa.concat_tables([conform(t, schema) for t in tables],
                                    promote_options="default"), schema)


def read_rows(out: str | Path, which: str, schema: pa.Schema, total: int,
              max_rows: int = MAX_ROWS) -> tuple[pa.Table, RowSample | None]:
    """The rows of ``which`` (``index`` or ``rejected``), and how they were sampled (None: every
    row). ``total`` is the table's row count (from ``summary.json``)."""
    units = _units(Path(out), which)
    if total <= max_rows:
        return _concat([u.read() for u in units], schema), None
    chosen: set[_Unit] = set()
    rows = 0
    for u in sorted(units, key=_rank):
        if rows >= max_rows:
            break
        chosen.add(u)
        rows += u.num_rows()
    table = _concat([u.read() for u in units if u in chosen], schema)  # in table order
    if len(chosen) == len(units):
        return table, None
    unit = "parts" if units[0].row_group is None else f"row groups of {units[0].path.name}"
    return table, RowSample(len(table), total, len(chosen), len(units), unit)


def kept_rows(out: str | Path, ids: list[str], schema: pa.Schema) -> pa.Table | None:
    """The index rows of these kept clips wherever their part is (the ledger names their
    shards); None when that cannot be looked up (no ledger, or no index parts)."""
    out = Path(out)
    if not ids or not (out / INDEX_DIR).is_dir() or not (out / "ledger.sqlite").is_file():
        return None
    try:
        db = sqlite3.connect(out / "ledger.sqlite", timeout=10)
        try:
            shards = {s for (s,) in query_in(
                db, "SELECT DISTINCT shard FROM clips WHERE state = 'sharded' AND clip_id IN"
                " ({})", ids) if s}
        finally:
            db.close()
    except sqlite3.Error:
        return None
    want = pa.array(ids, pa.string())
    tables = [t.filter(pc.is_in(t.column("clip_id"), want)) for s in sorted(shards)
              if (p := index_part(out, s)).is_file() for t in [pq.read_table(p)]]
    return _concat(tables, schema)
