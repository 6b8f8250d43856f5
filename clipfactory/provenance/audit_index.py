"""The index as ``clipfactory audit`` reads it: one shard's rows at a time.

The index is the parts under ``index/`` when that folder exists (:mod:`clipfactory.sinks.parts`),
else ``index.parquet`` (outputs written before the parts). Next to the parts, ``index.parquet``
is a compacted copy: the audit compares it with the parts shard by shard, because users read it
and a restored or hand-edited copy must not go unnoticed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from clipfactory.sinks.parts import INDEX_DIR, index_part, index_parts, shard_of_part

__all__ = ["COMPACTED", "IndexRows", "compare_rows"]

COMPACTED = "index.parquet"
# the only columns the audit needs from the index when it is the only copy
_COLUMNS = ["clip_id", "key", "shard", "file_sha256", "source", "license"]


class _Compacted:
    """``index.parquet`` read one shard at a time. Written from the parts, it holds one row
    group per part, so the ``shard`` statistics of its row groups say which to read; a file
    of one row group (older outputs, hand edits) is read once, grouped by shard."""

    def __init__(self, path: Path, columns: list[str] | None, only: list[str] | None) -> None:
        self.path, self.columns, self.only = path, columns, only
        self.file = pq.ParquetFile(path)
        meta, col = self.file.metadata, self.file.schema_arrow.get_field_index("shard")
        self.ranges: list[tuple[str, str] | None] = []
        for i in range(meta.num_row_groups):
            st = meta.row_group(i).column(col).statistics
            ok = st is not None and st.has_min_max and not st.null_count
            self.ranges.append((st.min, st.max) if ok else None)
        self._groups: dict[str, pa.Table] | None = None
        if meta.num_row_groups <= 1 or None in self.ranges:
            filters = [("shard", "in", only)] if only is not None else None
            self._groups = self._grouped(pq.read_table(path, columns=columns, filters=filters))

    @staticmethod
    def _grouped(table: pa.Table) -> dict[str, pa.Table]:
        names = pc.fill_null(table["shard"].combine_chunks(), "")
        order = pc.sort_indices(names)
        table, runs = table.take(order), pc.run_end_encode(names.take(order))
        groups, start = {}, 0
        for end, name in zip(runs.run_ends.to_pylist(), runs.values.to_pylist(), strict=True):
            groups[name] = table.slice(start, end - start)
            start = end
        return groups

    def shards(self) -> set[str]:
        if self._groups is not None and self.only is None:
            return set(self._groups)
        if all(r is not None and r[0] == r[1] for r in self.ranges):
            return {r[0] for r in self.ranges if r is not None}
        column = self.file.read(columns=["shard"])["shard"]
        return set(pc.unique(pc.fill_null(column, "")).to_pylist())

    def table(self, shard: str) -> pa.Table | None:
        if self._groups is not None:
            return self._groups.get(shard)
        groups = [i for i, r in enumerate(self.ranges) if r and r[0] <= shard <= r[1]]
        if not groups:
            return None
        table = self.file.read_row_groups(groups, columns=self.columns)
        return table.filter(pc.equal(table["shard"], shard))


class IndexRows:
    """The index, one shard at a time: the parts when ``index/`` exists, else
    ``index.parquet``; with the parts, ``index.parquet`` (if any) is the copy to compare.
    ``only`` (shard names) is all that will be asked of a compacted file read at once."""

    def __init__(self, out: Path, only: list[str] | None = None) -> None:
        self.out = out
        self.partitioned = (out / INDEX_DIR).is_dir()
        path = out / COMPACTED
        self.compacted_error: str | None = None  # index.parquet there but unreadable
        # compared with the parts, every column counts; alone, the audit needs only a few
        try:
            self.compacted = (_Compacted(path, None if self.partitioned else _COLUMNS, only)
                              if path.is_file() else None)
        except (pa.ArrowException, OSError) as e:
            self.compacted, self.compacted_error = None, str(e)
        self.present = self.partitioned or self.compacted is not None
        self.compacted_copy = self.partitioned and self.compacted is not None

    def shards(self) -> set[str]:
        """Every shard that has index rows ("" for rows without a shard), in either copy."""
        found = self.compacted.shards() if self.compacted is not None else set()
        if self.partitioned:
            found |= {shard_of_part(self.out, p) for p in index_parts(self.out)}
        return found

    def part_shards(self) -> set[str]:
        """The shards that have an index part (none when the index is not partitioned)."""
        return ({shard_of_part(self.out, p) for p in index_parts(self.out)}
                if self.partitioned else set())

    def table(self, shard: str) -> pa.Table | None:
        """The index rows of ``shard`` (None when there are none)."""
        if self.partitioned:
            part = index_part(self.out, shard)
            columns = None if self.compacted is not None else _COLUMNS
            return pq.read_table(part, columns=columns) if part.is_file() else None
        return self.compacted.table(shard) if self.compacted is not None else None

    def rows(self, shard: str) -> list[dict[str, Any]]:
        """The index rows of ``shard``, as dicts."""
        table = self.table(shard)
        return table.to_pylist() if table is not None else []

    def copy_table(self, shard: str) -> pa.Table | None:
        """The rows of ``shard`` in the compacted copy (see ``compacted_copy``)."""
        return self.compacted.table(shard) if self.compacted_copy and self.compacted else None

    def label(self, shard: str) -> str:
        """Where the rows of ``shard`` come from, for problem details."""
        if self.partitioned:
            return index_part(self.out, shard).relative_to(self.out).as_posix()
        return COMPACTED


def _canonical(row: dict[str, Any]) -> str:
    return json.dumps(row, sort_keys=True, default=str)  # NaN == NaN, unlike the dicts


def compare_rows(copy: pa.Table | None, part: pa.Table | None) -> str | None:
    """How the compacted copy's rows of a shard differ from its part's, or None when they
    agree (Arrow first; rows one by one only when Arrow sees a difference, maybe a NaN)."""
    if copy is not None and part is not None and copy.sort_by("clip_id").equals(
            part.sort_by("clip_id")):
        return None
    a_rows = copy.to_pylist() if copy is not None else []
    b_rows = part.to_pylist() if part is not None else []
    a, b = {r["clip_id"]: r for r in a_rows}, {r["clip_id"]: r for r in b_rows}
    differ = sorted(c for c in set(a) & set(b) if _canonical(a[c]) != _canonical(b[c]))
    only_a, only_b = sorted(set(a) - set(b)), sorted(set(b) - set(a))
    dup = len(a_rows) != len(a) or len(b_rows) != len(b)
    if not (differ or only_a or only_b or dup):
        return None
    what = [f"{len(only_a)} rows only in it", f"{len(only_b)} missing",
            f"{len(differ)} rows differ"]
    if differ:
        first = differ[0]
        cols = sorted(k for k in set(a[first]) | set(b[first])
                      if _canonical({k: a[first].get(k)}) != _canonical({k: b[first].get(k)}))
        what.append(f"e.g. {first}: {', '.join(cols)}")
    if dup:
        what.append("duplicate clip ids")
    return "; ".join(what)
