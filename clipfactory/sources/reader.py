"""Turn a folder or a manifest into :class:`SourceItem` rows (or rejections for bad rows).

A manifest is ``.jsonl``, ``.csv`` or ``.parquet``. A row names its media by ``path`` or by
``url``; optional ``id``, ``license``, ``source_url`` (or ``url`` beside a ``path``),
``author``/``attribution``, ``start``/``end`` (to restrict a row to a span), ``spans`` and
``sha256``. Published dataset layouts (HD-VILA-100M, Panda-70M, InternVid, WebVid) are detected
from their columns, and ``ingest.columns`` maps other column names (see
:mod:`clipfactory.sources.layouts`). Relative paths are resolved against the manifest's
folder. Rows are streamed: a manifest of millions of rows is never loaded whole.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

from clipfactory.config import IngestConfig
from clipfactory.ids import InvalidId, short_hash, validate_id
from clipfactory.records import Rejection, SourceItem
from clipfactory.sources.layouts import (
    PER_CLIP_ROWS,
    columns_for,
    detect_layout,
    parse_seconds,
    parse_spans,
)

__all__ = ["MANIFEST_SUFFIXES", "REMOTE_PREFIXES", "InputRow", "read_input"]

InputRow = SourceItem | Rejection
MANIFEST_SUFFIXES = (".jsonl", ".csv", ".parquet")
REMOTE_PREFIXES = ("http://", "https://", "s3://", "gs://", "hf://", "ftp://")
_KNOWN = {"path", "id", "license", "source_url", "url", "author", "attribution", "start", "end"}


def read_input(path: str | Path, cfg: IngestConfig | None = None) -> Iterator[InputRow]:
    """Yield one item (or rejection) per video in a folder or per manifest row."""
    cfg = cfg or IngestConfig()
    p = Path(path)
    if p.is_dir():
        yield from _read_folder(p, cfg)
    elif p.suffix.lower() in MANIFEST_SUFFIXES:
        yield from _read_manifest(p, cfg)
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


def _cell(row: dict[str, Any], cols: dict[str, str], field: str) -> Any:
    column = cols.get(field)
    return row.get(column) if column is not None else None


def _item_from_row(row: dict[str, Any], n: int, base: Path, cols: dict[str, str],
                   layout: str = "generic") -> SourceItem:
    """Build an item or raise ValueError/InvalidId with the reason."""
    raw_id = _cell(row, cols, "id")
    vid = validate_id(raw_id) if _opt_str(raw_id) is not None else None
    raw_path = _opt_str(_cell(row, cols, "path"))
    url = _opt_str(_cell(row, cols, "url"))
    if url is None and vid is not None and "url_template" in cols:
        url = cols["url_template"].format(id=quote(vid, safe=""))
    media = raw_path or url
    if media is None:
        raise ValueError("row has no 'path' or 'url'")
    if media.startswith("file://"):
        media = unquote(media[len("file://"):])
    if media.lower().startswith(REMOTE_PREFIXES):
        source = media
    else:
        p = Path(media)
        source = str((p if p.is_absolute() else base / p).resolve())
    start = parse_seconds(_cell(row, cols, "start"), "start")
    end = parse_seconds(_cell(row, cols, "end"), "end")
    if start is not None and end is not None and end <= start:
        raise ValueError(f"span end {end} is not after start {start}")
    caption = _opt_str(_cell(row, cols, "caption"))
    spans: tuple[tuple[float, float, str | None], ...] = ()
    raw_spans = _cell(row, cols, "spans")
    if raw_spans is not None and not (isinstance(raw_spans, float) and math.isnan(raw_spans)):
        spans = parse_spans(raw_spans, _cell(row, cols, "captions"))
    elif caption is not None and (start is not None or end is not None):
        if start is None or end is None:
            raise ValueError("a captioned span needs both start and end")
        spans = ((start, end, caption),)
        caption = None
    if spans:
        start, end = min(sp[0] for sp in spans), max(sp[1] for sp in spans)
    used = _KNOWN | set(cols.values())
    extra = {k: v for k, v in row.items() if k not in used and _is_plain(v)}
    if caption is not None:  # a caption of the whole video
        extra["caption"] = caption
    sha = _opt_str(_cell(row, cols, "sha256"))
    if sha is not None:
        extra["sha256"] = sha
    if layout != "generic":
        extra["layout"] = layout
    span_text = f"|{spans}" if spans and not (len(spans) == 1 and spans[0][2] is None) else ""
    key = (f"id:{vid}" if vid is not None
           else f"row:{short_hash(f'{source}|{start}|{end}{span_text}', 16)}")
    return SourceItem(
        item_key=key,
        source=source,
        id=vid,
        source_url=_opt_str(_cell(row, cols, "source_url")) or url,
        license=_opt_str(_cell(row, cols, "license")),
        attribution=_opt_str(_cell(row, cols, "attribution")) or _opt_str(row.get("author")),
        start_s=start,
        end_s=end,
        extra=extra,
        spans=spans,
    )


def _is_plain(value: Any) -> bool:
    return isinstance(value, (str, int, float, bool)) or value is None


def _read_manifest(manifest: Path, cfg: IngestConfig) -> Iterator[InputRow]:
    rows = _manifest_items(manifest, cfg)
    if cfg.layout in PER_CLIP_ROWS or cfg.layout == "auto":
        rows = _group_clip_rows(rows)
    seen: set[str] = set()
    for n, item in rows:
        where = f"{manifest.name} row {n}"
        if isinstance(item, Rejection):
            yield item
            continue
        if item.item_key in seen:
            what = "id" if item.id is not None else "row (same path and span)"
            yield Rejection(f"row:{manifest.name}:{n}", item.source, "ingest",
                            "duplicate_id" if item.id is not None else "duplicate_row",
                            f"{where}: duplicate {what} of an earlier row", video_id=item.id)
            continue
        seen.add(item.item_key)
        yield item


def _manifest_items(manifest: Path, cfg: IngestConfig
                    ) -> Iterator[tuple[int, InputRow]]:
    """(row number, item or rejection) per row; the layout is chosen at the first row."""
    base = manifest.resolve().parent
    cols: dict[str, str] | None = None
    layout = cfg.layout
    for n, row in _rows(manifest):
        where = f"{manifest.name} row {n}"
        if isinstance(row, str):
            yield n, Rejection(f"row:{manifest.name}:{n}", where, "ingest",
                               "invalid_manifest_row", row)
            continue
        if cols is None:
            layout = detect_layout(row.keys()) if layout == "auto" else layout
            cols = columns_for(layout, cfg.columns)
        try:
            yield n, _item_from_row(row, n, base, cols, layout)
        except InvalidId as e:
            raw = str(_cell(row, cols, "id"))[:200]
            yield n, Rejection(f"row:{manifest.name}:{n}", str(row.get("path") or where),
                               "ingest", "invalid_id", str(e), video_id=raw)
        except (ValueError, KeyError, IndexError) as e:
            yield n, Rejection(f"row:{manifest.name}:{n}", str(row.get("path") or where),
                               "ingest", "invalid_manifest_row", f"{where}: {e}")


def _group_clip_rows(rows: Iterator[tuple[int, InputRow]]
                     ) -> Iterator[tuple[int, InputRow]]:
    """Merge adjacent rows that are clips of one video (layouts with one row per clip) into
    one item with all their spans, so the video is fetched and decoded once. A video whose
    rows come back later in the manifest becomes a second item (``id:X#2``)."""
    groups: dict[str, int] = {}
    current: tuple[int, SourceItem] | None = None

    def flush(current: tuple[int, SourceItem]) -> tuple[int, SourceItem]:
        n, item = current
        count = groups[item.item_key] = groups.get(item.item_key, 0) + 1
        if count > 1:
            item = dataclasses.replace(item, item_key=f"{item.item_key}#{count}")
        return n, item

    for n, row in rows:
        per_clip = (isinstance(row, SourceItem) and row.extra.get("layout") in PER_CLIP_ROWS
                    and row.id is not None and len(row.spans) == 1)
        if not per_clip or not isinstance(row, SourceItem):
            if current is not None:
                yield flush(current)
                current = None
            yield n, row
            continue
        if current is not None and current[1].item_key == row.item_key \
                and current[1].source == row.source:
            prev = current[1]
            spans = prev.spans + row.spans
            extra = {k: v for k, v in prev.extra.items() if row.extra.get(k) == v}
            current = (current[0], dataclasses.replace(
                prev, spans=spans, extra=extra, start_s=min(sp[0] for sp in spans),
                end_s=max(sp[1] for sp in spans)))
            continue
        if current is not None:
            yield flush(current)
        current = (n, row)
    if current is not None:
        yield flush(current)


def count_rows(rows: Iterable[InputRow]) -> int:
    """Count rows without keeping them (for progress totals)."""
    return sum(1 for _ in rows)
