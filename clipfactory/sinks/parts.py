"""The partitioned index: one Parquet part per shard under ``index/``, and ``rejected/`` parts
per range of inputs, so that a run, a takedown or a dedup decision rewrites only the parts it
touches.

Layout (paths relative to the output folder)::

    index/shard-000012.parquet            the index rows of shards/shard-000012.tar
    index/720p_16x9/shard-000003.parquet  bucketed shards keep their bucket folder
    rejected/part-000000.parquet          rejected rows of inputs with seq 0..4095
    index.parquet, rejected.parquet       the same rows in one file, compacted (small
                                          datasets: every run; large ones: on demand)

Every reader that takes a glob reads the parts: ``index/**/*.parquet`` (pyarrow, DuckDB,
Polars, Spark). A part is up to date when the ledger's ``shards.part_sha`` equals the
shard's ``sha256``: the index row of a clip is the ``KEY.json`` inside its shard, so the part
changes exactly when the shard does.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from clipfactory.atomic import replacing
from clipfactory.ledger_derived import REJECTED_PART_INPUTS

__all__ = ["INDEX_DIR", "REJECTED_DIR", "REJECTED_PART_INPUTS", "index_part", "index_parts",
           "prune_empty_dirs", "read_index", "read_rejected", "rejected_part", "rejected_parts", "shard_of_part",
           "write_part"]

INDEX_DIR = "index"
REJECTED_DIR = "rejected"


def index_part(out: str | Path, shard: str) -> Path:
    """The index part of ``shard`` (``shard-000012.tar`` or ``bucket/shard-000012.tar``)."""
    name = shard[:-4] if shard.endswith(".tar") else shard
    return Path(out) / INDEX_DIR / f"{name}.parquet"


def shard_of_part(out: str | Path, part: Path) -> str:
    """The shard name an index part belongs to (inverse of :func:`index_part`)."""
    rel = part.relative_to(Path(out) / INDEX_DIR).as_posix()
    return rel[: -len(".parquet")] + ".tar"


def rejected_part(out: str | Path, number: int) -> Path:
    """The rejected part holding inputs with ``seq // REJECTED_PART_INPUTS == number``."""
    return Path(out) / REJECTED_DIR / f"part-{number:06d}.parquet"


def _parts(root: Path) -> Iterator[Path]:
    if not root.is_dir():
        return
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for f in sorted(filenames):
            if f.endswith(".parquet") and not f.startswith("."):
                yield Path(dirpath) / f


def index_parts(out: str | Path) -> list[Path]:
    """Every index part, in shard-name order (the order of the compacted index)."""
    out = Path(out)
    return sorted(_parts(out / INDEX_DIR), key=lambda p: shard_of_part(out, p))


def rejected_parts(out: str | Path) -> list[Path]:
    """Every rejected part, in input order."""
    return sorted(_parts(Path(out) / REJECTED_DIR))


def prune_empty_dirs(root: Path) -> None:
    """Remove the folders under ``root`` left empty (deepest first; ``root`` stays)."""
    if not root.is_dir():
        return
    for d in sorted((p for p in root.rglob("*") if p.is_dir()), reverse=True):
        if not any(d.iterdir()):
            d.rmdir()


def write_part(table: pa.Table, path: Path) -> None:
    """Write one part atomically (temporary name, then rename); an empty table removes it."""
    if table.num_rows == 0:
        path.unlink(missing_ok=True)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with replacing(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")


def _read(paths: Iterable[Path], schema: pa.Schema, columns: list[str] | None) -> pa.Table:
    tables = [pq.read_table(p, columns=columns) for p in paths]
    if not tables:
        fields = [schema.field(c) for c in columns] if columns else list(schema)
        return pa.schema(fields).empty_table()
    return pa.concat_tables(tables, promote_options="default")


def read_index(out: str | Path, *, shards: Iterable[str] | None = None,
               columns: list[str] | None = None) -> pa.Table:
    """The index rows of the whole dataset, or of the given shards, from the parts."""
    from clipfactory.sinks.index import INDEX_SCHEMA

    paths = (index_parts(out) if shards is None
             else [p for s in shards if (p := index_part(out, s)).is_file()])
    return _read(paths, INDEX_SCHEMA, columns)


def read_rejected(out: str | Path, *, columns: list[str] | None = None) -> pa.Table:
    """Every rejected row, from the parts."""
    from clipfactory.sinks.index import REJECTED_SCHEMA

    return _read(rejected_parts(out), REJECTED_SCHEMA, columns)
