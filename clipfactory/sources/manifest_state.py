"""Remember how far each manifest was read, so that a run parses only what was appended since.

Parsing is what registering a manifest costs (about 35 s per 10^5 rows): a rerun over an
unchanged 3.8M-row manifest spent 22 minutes adding nothing. Per manifest (its resolved path)
the ledger keeps, in tables this module creates: size and mtime, the position after the last
complete row, the SHA-256 of the bytes before it, the layout, CSV header and the group of clip
rows open there, and (``manifest_keys``, ``manifest_counts``) the item keys given and the
per-video item counts that a parse resumed mid-file needs (:mod:`clipfactory.sources.parse`).
A run then:

- same size and mtime: parses nothing;
- grown, the file still starting with the bytes read before (same hash), JSON lines or CSV:
  parses only the rows after the position; an unterminated last line may be half written, so
  it is left for the next run (which parses it as it is if the file has not changed by then);
- anything else (shrunk, rewritten, a changed Parquet file, other ``ingest`` settings): parses
  the whole file, as the first run did.

The state is written after the rows are registered: a run killed in between reads the same
rows again next time, and the ledger's ``INSERT OR IGNORE`` keeps them single.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clipfactory.config import IngestConfig
from clipfactory.ledger import Ledger
from clipfactory.records import Rejection
from clipfactory.sources.lines import LINE_SUFFIXES, Position, manifest_kind
from clipfactory.sources.parse import Checkpoint, KeyMemory, ManifestParse, OpenGroup
from clipfactory.sources.reader import MANIFEST_SUFFIXES, read_input
from clipfactory.sources.rows import InputRow

__all__ = ["RegisterStats", "ensure_schema", "register_input"]

log = logging.getLogger("clipfactory")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS manifests (
    id INTEGER PRIMARY KEY,
    path TEXT NOT NULL UNIQUE,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    settings TEXT NOT NULL,
    offset INTEGER,
    sha256 TEXT,
    row INTEGER,
    header TEXT,
    layout TEXT,
    open_group TEXT,
    held_back INTEGER NOT NULL DEFAULT 0,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS manifest_keys (
    manifest INTEGER NOT NULL,
    item_key TEXT NOT NULL,
    PRIMARY KEY (manifest, item_key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS manifest_counts (
    manifest INTEGER NOT NULL,
    item_key TEXT NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (manifest, item_key)
) WITHOUT ROWID;
"""
_PARSER_VERSION = 1  # bump when a change to the parser changes the items of a row


@dataclass(frozen=True)
class RegisterStats:
    """What registering one input did. ``mode``: ``unchanged`` (nothing parsed),
    ``appended`` (only the rows after the last run's position), ``tail`` (only an unterminated
    last line held back before), ``full`` (the whole manifest), ``scan`` (a folder or a file)."""

    path: str
    mode: str
    rows: int  # manifest rows parsed (a scan: inputs found)
    added: int  # inputs new to the ledger
    seconds: float


@dataclass(frozen=True)
class _Saved:
    id: int
    size: int
    mtime_ns: int
    settings: str
    offset: int | None
    sha256: str | None
    row: int | None
    header: list[str] | None
    layout: str | None
    open_group: OpenGroup | None
    held_back: bool


class _StoredMemory(KeyMemory):
    """A parse's memory that also asks what earlier runs stored for this manifest."""

    def __init__(self, db: sqlite3.Connection, manifest: int) -> None:
        super().__init__()
        self.db = db
        self.manifest = manifest

    def stored_seen(self, key: str) -> bool:
        return self.db.execute("SELECT 1 FROM manifest_keys WHERE manifest = ? AND item_key = ?",
                               (self.manifest, key)).fetchone() is not None

    def stored_count(self, key: str) -> int:
        row = self.db.execute("SELECT count FROM manifest_counts WHERE manifest = ? AND"
                              " item_key = ?", (self.manifest, key)).fetchone()
        return row[0] if row else 0


def ensure_schema(db: sqlite3.Connection) -> None:
    """Create this module's tables in a ledger that lacks them."""
    db.executescript(_SCHEMA)


def register_input(ledger: Ledger, path: str | Path, cfg: IngestConfig | None = None
                   ) -> RegisterStats:
    """Register the rows of ``path`` that the ledger has not seen (module docstring)."""
    cfg = cfg or IngestConfig()
    t0 = time.perf_counter()
    p = Path(path)
    if not (p.is_file() and manifest_kind(p) in MANIFEST_SUFFIXES):
        # a folder that holds the output: the output's own files (staged clips) are not inputs
        counter = _Counter(read_input(p, cfg, skip=ledger.path.parent))
        added = ledger.register(counter)
        return RegisterStats(str(p), "scan", counter.n, added, time.perf_counter() - t0)
    ensure_schema(ledger.db)
    m = p.resolve()
    st = m.stat()
    settings = json.dumps({"layout": cfg.layout, "columns": cfg.columns,
                           "parser": _PARSER_VERSION}, sort_keys=True)
    saved = _load(ledger.db, str(m))
    appendable = m.suffix.lower() in LINE_SUFFIXES
    mode, hasher = _plan(m, st, saved, settings, appendable)
    if mode == "unchanged":
        log.info("manifest %s: unchanged since the last run (%d bytes), nothing to parse",
                 m, st.st_size)
        return RegisterStats(str(m), mode, 0, 0, time.perf_counter() - t0)
    if saved is None or mode == "full":
        memory = KeyMemory()
        parse = ManifestParse(m, cfg, memory=memory, hasher=hasher)
    else:
        memory = _StoredMemory(ledger.db, saved.id)
        parse = ManifestParse(m, cfg, start=Position(saved.offset or 0, saved.row or 0,
                                                     saved.header),
                              memory=memory, layout=saved.layout, open_group=saved.open_group,
                              final_tail=mode == "tail", hasher=hasher)
    refused: set[str] = set()
    added = ledger.register(_noting_rejections(parse, refused))
    if saved is not None and mode == "full":
        _drop_stale_rejections(ledger, m.name, refused)
    cp = parse.checkpoint()
    sha = hasher.hexdigest() if hasher is not None else None
    if mode == "tail" and saved is not None and cp.position is not None:
        moved = cp.position.offset != saved.offset
        sha = _prefix_hash(m, cp.position.offset) if moved else saved.sha256
    _save(ledger, str(m), st, settings, cp, sha, memory, fresh=mode == "full")
    stats = RegisterStats(str(m), mode, cp.rows, added, time.perf_counter() - t0)
    log.info("manifest %s: %s, %d rows parsed, %d new inputs (%.1f s)", m, mode, stats.rows,
             added, stats.seconds)
    return stats


def _noting_rejections(rows: Any, refused: set[str]) -> Any:
    """``rows`` as they come, the keys of the rejected ones added to ``refused``."""
    for row in rows:
        if isinstance(row, Rejection):
            refused.add(row.item_key)
        yield row


def _drop_stale_rejections(ledger: Ledger, name: str, refused: set[str]) -> None:
    """A manifest parsed again in full (its columns or layout changed, or its file): rows it
    refused before and reads now are items of their own, so their old refusals go. One kept
    them failed for ever: a one-row manifest read as 2 inputs, 1 failed, and ``retry --all``
    had nothing to retry."""
    prefix = f"row:{name}:"
    stale = [k for (k,) in ledger.db.execute(
        "SELECT item_key FROM videos WHERE state = 'failed' AND stage = 'ingest' AND "
        "substr(item_key, 1, ?) = ?", (len(prefix), prefix)) if k not in refused]
    if stale:
        with ledger.transaction() as db:
            db.executemany("DELETE FROM videos WHERE item_key = ?", [(k,) for k in stale])
        log.info("manifest %s: %d rows refused before are read now; their refusals are gone",
                 name, len(stale))


def _plan(m: Path, st: os.stat_result, saved: _Saved | None, settings: str,
          appendable: bool) -> tuple[str, Any]:
    """The mode, and the hash object of the bytes already read when it goes on from there."""
    if saved is None or saved.settings != settings:
        return "full", hashlib.sha256() if appendable else None
    if (st.st_size, st.st_mtime_ns) == (saved.size, saved.mtime_ns):
        return ("tail", None) if saved.held_back and appendable else ("unchanged", None)
    if appendable and saved.offset is not None and st.st_size >= saved.offset:
        hasher = _prefix_hash(m, saved.offset)
        if hasher is not None and hasher.hexdigest() == saved.sha256:
            return "appended", hasher
    return "full", hashlib.sha256() if appendable else None


def _prefix_hash(m: Path, size: int) -> Any:
    """SHA-256 of the first ``size`` bytes of ``m`` (None if it is shorter)."""
    hasher = hashlib.sha256()
    left = size
    with m.open("rb") as fh:
        while left > 0:
            block = fh.read(min(left, 1 << 20))
            if not block:
                return None
            hasher.update(block)
            left -= len(block)
    return hasher


def _load(db: sqlite3.Connection, path: str) -> _Saved | None:
    r = db.execute("SELECT id, size, mtime_ns, settings, offset, sha256, row, header, layout,"
                   " open_group, held_back FROM manifests WHERE path = ?", (path,)).fetchone()
    if r is None:
        return None
    group = json.loads(r[9]) if r[9] else None
    return _Saved(r[0], r[1], r[2], r[3], r[4], r[5], r[6],
                  json.loads(r[7]) if r[7] else None, r[8],
                  OpenGroup(*group) if group else None, bool(r[10]))


def _save(ledger: Ledger, path: str, st: os.stat_result, settings: str, cp: Checkpoint,
          sha: str | None, memory: KeyMemory, fresh: bool) -> None:
    """Store where the parse stopped, with the stat taken *before* it: a file appended while
    it ran then differs next time and its new rows are read."""
    pos = cp.position
    group = cp.open_group
    with ledger.transaction() as db:
        db.execute(
            "INSERT INTO manifests (path, size, mtime_ns, settings, offset, sha256, row, header,"
            " layout, open_group, held_back, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)"
            " ON CONFLICT(path) DO UPDATE SET size=excluded.size, mtime_ns=excluded.mtime_ns,"
            " settings=excluded.settings, offset=excluded.offset, sha256=excluded.sha256,"
            " row=excluded.row, header=excluded.header, layout=excluded.layout,"
            " open_group=excluded.open_group, held_back=excluded.held_back,"
            " updated_at=excluded.updated_at",
            (path, st.st_size, st.st_mtime_ns, settings, pos.offset if pos else None, sha,
             pos.row if pos else None,
             json.dumps(pos.header) if pos and pos.header is not None else None, cp.layout,
             json.dumps([group.key, group.source, group.row]) if group else None,
             int(cp.held_back), time.time()))
        mid = db.execute("SELECT id FROM manifests WHERE path = ?", (path,)).fetchone()[0]
        if fresh:
            db.execute("DELETE FROM manifest_keys WHERE manifest = ?", (mid,))
            db.execute("DELETE FROM manifest_counts WHERE manifest = ?", (mid,))
        if pos is None:  # read whole every time it changes: nothing to resume from
            return
        # sorted: inserts in key order keep the B-tree writes sequential
        db.executemany("INSERT OR IGNORE INTO manifest_keys (manifest, item_key) VALUES (?, ?)",
                       ((mid, k) for k in sorted(memory.keys)))
        db.executemany("INSERT OR REPLACE INTO manifest_counts (manifest, item_key, count)"
                       " VALUES (?, ?, ?)", ((mid, k, c) for k, c in memory.counts.items()))


class _Counter:
    """Passes rows through, counting them."""

    def __init__(self, rows: Iterable[InputRow]) -> None:
        self.rows = rows
        self.n = 0

    def __iter__(self) -> Iterator[InputRow]:
        for row in self.rows:
            self.n += 1
            yield row
