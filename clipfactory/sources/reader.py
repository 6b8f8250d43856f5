"""Turn a folder or a manifest into :class:`SourceItem` rows (or rejections for bad rows).

A manifest is ``.jsonl``, ``.csv`` or ``.parquet``. A row names its media by ``path`` or by
``url``; optional ``id``, ``license``, ``source_url`` (or ``url`` beside a ``path``),
``author``/``attribution``, ``start``/``end`` (to restrict a row to a span), ``spans`` and
``sha256``. Published dataset layouts (HD-VILA-100M, Panda-70M, InternVid, WebVid) are detected
from their columns, and ``ingest.columns`` maps other column names (see
:mod:`clipfactory.sources.layouts`). Relative paths are resolved against the manifest's
folder. Rows are streamed: a manifest of millions of rows is never loaded whole. A run reads
again only what was appended to a manifest since the last one
(:mod:`clipfactory.sources.manifest_state`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

from clipfactory.config import IngestConfig
from clipfactory.records import SourceItem
from clipfactory.sources.parse import ManifestParse
from clipfactory.sources.rows import REMOTE_PREFIXES, InputRow

__all__ = ["MANIFEST_SUFFIXES", "REMOTE_PREFIXES", "InputRow", "count_rows", "read_folder",
           "read_input"]

MANIFEST_SUFFIXES = (".jsonl", ".csv", ".parquet")


def read_input(path: str | Path, cfg: IngestConfig | None = None) -> Iterator[InputRow]:
    """Yield one item (or rejection) per video in a folder or per manifest row."""
    cfg = cfg or IngestConfig()
    p = Path(path)
    if p.is_dir():
        yield from read_folder(p, cfg)
    elif p.suffix.lower() in MANIFEST_SUFFIXES:
        yield from ManifestParse(p, cfg)
    elif p.is_file():
        yield SourceItem(item_key=f"file:{p.resolve()}", source=str(p.resolve()))
    else:
        raise FileNotFoundError(f"input not found: {p}")


def read_folder(root: Path, cfg: IngestConfig) -> Iterator[SourceItem]:
    """The inputs of a folder: every file named like a video (``cfg.extensions``), searched
    recursively, hidden names skipped, in sorted order."""
    exts = {e.lower() for e in cfg.extensions}
    files = (f for f in root.rglob("*") if f.suffix.lower() in exts and not f.name.startswith("."))
    for f in sorted(files):
        # Everything named like a video is an input: a directory, a FIFO or a dangling link
        # then gets its specific rejection from the probe (not_a_file, missing_file) instead
        # of vanishing from the run without a trace.
        rel = f.relative_to(root).as_posix()
        yield SourceItem(item_key=f"file:{rel}", source=str(f.resolve()))


def count_rows(rows: Iterable[InputRow]) -> int:
    """Count rows without keeping them (for progress totals)."""
    return sum(1 for _ in rows)
