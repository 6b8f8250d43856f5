"""Turn a folder or a manifest into :class:`SourceItem` rows (or rejections for bad rows).

A manifest is ``.jsonl``, ``.csv`` or ``.parquet`` with at least a ``path`` column; optional
``id``, ``license``, ``source_url`` (or ``url``), ``author``/``attribution`` and
``start``/``end`` (seconds, to restrict a row to a span). Relative paths are resolved against
the manifest's folder. Rows are streamed: a manifest of millions of rows is never loaded whole.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from clipfactory.config import IngestConfig
from clipfactory.ids import InvalidId, short_hash, validate_id
from clipfactory.records import Rejection, SourceItem

__all__ = ["MANIFEST_SUFFIXES", "InputRow", "read_input"]

InputRow = SourceItem | Rejection
MANIFEST_SUFFIXES = (".jsonl", ".csv", ".parquet")
_REMOTE = ("http://", "https://", "s3://", "gs://", "hf://", "ftp://")
_KNOWN = {"path", "id", "license", "source_url", "url", "author", "attribution", "start", "end"}


def read_input(path: str | Path, cfg: IngestConfig | None = None) -> Iterator[InputRow]:
    """Yield one item (or rejection) per video in a folder or per manifest row."""
    cfg = cfg or IngestConfig()
    p = Path(path)
    if p.is_dir():
        yield from _read_folder(p, cfg)
    elif p.suffix.lower() in MANIFEST_SUFFIXES:
        yield from _read_manifest(p)
    elif p.is_file():
        yield SourceItem(item_key=f"file:{p.resolve()}", source=str(p.resolve()))
    else:
        raise FileNotFoundError(f"input not found: {p}")


def _read_folder(root: Path, cfg: IngestConfig) -> Iterator[SourceItem]:
    exts = {e.lower() for e in cfg.extensions}
    files = (f for f in root.rglob("*") if f.suffix.lower() in exts and not f.name.startswith("."))
    for f in sorted(files):
        # Everything named like a video is an input: a directory, a FIFO or a dangling link
        # then gets its specific rejection from the probe (not_a_file, missing_file) instead
        # of vanishing from the run without a trace.
        rel = f.relative_to(root).as_posix()
        yield SourceItem(item_key=f"file:{rel}", source=str(f.resolve()))


def _rows(manifest: Path) -> Iterator[tuple[int, dict[str, Any] | str]]:
    """(row number, row dict) or (row number, error text) for unparseable rows."""
    suffix = manifest.suffix.lower()
    if suffix == ".jsonl":
        with manifest.open(encoding="utf-8", errors="replace") as fh:
            for n, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    yield n, f"invalid JSON: {e.msg}"
                    continue
                yield n, row if isinstance(row, dict) else "row is not a JSON object"
    elif suffix == ".csv":
        with manifest.open(encoding="utf-8", errors="replace", newline="") as fh:
            for n, row in enumerate(csv.DictReader(fh), 2):
                yield n, {k.strip(): v for k, v in row.items() if k is not None}
    else:
        import pyarrow.parquet as pq

        n = 0
        for batch in pq.ParquetFile(manifest).iter_batches(batch_size=4096):
            for row in batch.to_pylist():
                n += 1
                yield n, row


def _opt_str(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    text = str(value).strip()
    return text or None


def _opt_seconds(value: Any, name: str) -> float | None:
    text = _opt_str(value)
    if text is None:
        return None
    seconds = float(text)  # ValueError is reported by the caller
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"{name} must be a finite number of seconds >= 0, got {text!r}")
    return seconds


def _item_from_row(row: dict[str, Any], n: int, base: Path) -> SourceItem:
    """Build an item or raise ValueError/InvalidId with the reason."""
    raw_path = _opt_str(row.get("path"))
    if raw_path is None:
        raise ValueError("row has no 'path'")
    if raw_path.startswith("file://"):
        raw_path = raw_path[len("file://"):]
    if raw_path.lower().startswith(_REMOTE):
        source = raw_path
    else:
        p = Path(raw_path)
        source = str((p if p.is_absolute() else base / p).resolve())
    vid = validate_id(row["id"]) if _opt_str(row.get("id")) is not None else None
    start = _opt_seconds(row.get("start"), "start")
    end = _opt_seconds(row.get("end"), "end")
    if start is not None and end is not None and end <= start:
        raise ValueError(f"span end {end} is not after start {start}")
    key = f"id:{vid}" if vid is not None else f"row:{short_hash(f'{source}|{start}|{end}', 16)}"
    return SourceItem(
        item_key=key,
        source=source,
        id=vid,
        source_url=_opt_str(row.get("source_url")) or _opt_str(row.get("url")),
        license=_opt_str(row.get("license")),
        attribution=_opt_str(row.get("attribution")) or _opt_str(row.get("author")),
        start_s=start,
        end_s=end,
        extra={k: v for k, v in row.items() if k not in _KNOWN and _is_plain(v)},
    )


def _is_plain(value: Any) -> bool:
    return isinstance(value, (str, int, float, bool)) or value is None


def _read_manifest(manifest: Path) -> Iterator[InputRow]:
    base = manifest.resolve().parent
    seen: set[str] = set()
    for n, row in _rows(manifest):
        where = f"{manifest.name} row {n}"
        if isinstance(row, str):
            yield Rejection(f"row:{manifest.name}:{n}", where, "ingest", "invalid_manifest_row", row)
            continue
        try:
            item = _item_from_row(row, n, base)
        except InvalidId as e:
            raw = str(row.get("id"))[:200]
            yield Rejection(f"row:{manifest.name}:{n}", str(row.get("path") or where), "ingest",
                            "invalid_id", str(e), video_id=raw)
            continue
        except ValueError as e:
            yield Rejection(f"row:{manifest.name}:{n}", str(row.get("path") or where), "ingest",
                            "invalid_manifest_row", f"{where}: {e}")
            continue
        if item.item_key in seen:
            what = "id" if item.id is not None else "row (same path and span)"
            yield Rejection(f"row:{manifest.name}:{n}", item.source, "ingest",
                            "duplicate_id" if item.id is not None else "duplicate_row",
                            f"{where}: duplicate {what} of an earlier row", video_id=item.id)
            continue
        seen.add(item.item_key)
        yield item


def count_rows(rows: Iterable[InputRow]) -> int:
    """Count rows without keeping them (for progress totals)."""
    return sum(1 for _ in rows)
