"""State the ledger keeps about itself so that global steps cost what changed, not what exists.

SQLite triggers maintain it in the same transaction as the change that causes it, so it can
never disagree with the rows, whichever code path (a run, a takedown, a retry, a dedup drop)
moved a video or a clip:

- ``tally``: videos and clips counted by (state, stage, reason), with seconds (analysed for
  videos, clip duration for clips). ``Ledger.counts`` reads a few dozen rows instead of
  scanning 10^7 (135 s at 10^7 clips before, milliseconds now).
- ``dirty_rejected``: the rejected parts (inputs by ``seq // REJECTED_PART_INPUTS``) whose rows
  changed since they were last written.
- ``dedup_items`` forgets a clip the moment it leaves the kept states (staged, sharded), so the
  persistent dedup index (:mod:`clipfactory.dedup.store`) only ever offers kept clips.

A ledger written before these existed gets them on open, with the tally and the dirty parts
filled from the rows once (the only full scan), all in one transaction.
"""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from clipfactory.ledger import Ledger

__all__ = ["REJECTED_PART_INPUTS", "ensure_derived"]

REJECTED_PART_INPUTS = 4096  # inputs (by registration seq) per rejected part

_VERSION = 2  # 2: clips_dropped (the re-cut's query without a scan)
_PART = f"/ {REJECTED_PART_INPUTS}"

_TABLES = """
CREATE TABLE IF NOT EXISTS tally (
    kind TEXT NOT NULL, state TEXT NOT NULL, stage TEXT NOT NULL, reason TEXT NOT NULL,
    n INTEGER NOT NULL, secs REAL NOT NULL,
    PRIMARY KEY (kind, state, stage, reason)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS dirty_rejected (part INTEGER PRIMARY KEY);
CREATE TABLE IF NOT EXISTS dedup_items (
    rid INTEGER PRIMARY KEY,
    clip_id TEXT NOT NULL UNIQUE,
    exact_hash TEXT,
    phash BLOB,
    area INTEGER NOT NULL,
    frames INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS dedup_exact ON dedup_items(exact_hash) WHERE exact_hash IS NOT NULL;
CREATE TABLE IF NOT EXISTS dedup_lsh (
    key INTEGER NOT NULL, ord INTEGER NOT NULL, rid INTEGER NOT NULL,
    PRIMARY KEY (key, ord, rid)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS videos_seq ON videos(seq);
CREATE INDEX IF NOT EXISTS clips_shard ON clips(shard) WHERE shard IS NOT NULL;
CREATE INDEX IF NOT EXISTS clips_dropped ON clips(stage, reason) WHERE state = 'dropped';
"""

_DUR = ("COALESCE(json_extract({r}.record, '$.end_s') - json_extract({r}.record, '$.start_s'),"
        " 0)")


def _add(kind: str, row: str, secs: str) -> str:
    return (f"INSERT INTO tally VALUES ('{kind}', {row}.state, COALESCE({row}.stage, ''),"
            f" COALESCE({row}.reason, ''), 1, {secs})"
            " ON CONFLICT DO UPDATE SET n = n + 1, secs = secs + excluded.secs;")


def _sub(kind: str, row: str, secs: str) -> str:
    return (f"UPDATE tally SET n = n - 1, secs = secs - {secs} WHERE kind = '{kind}'"
            f" AND state = {row}.state AND stage = COALESCE({row}.stage, '')"
            f" AND reason = COALESCE({row}.reason, '');")


def _dirty_clip(row: str) -> str:
    return (f"INSERT OR IGNORE INTO dirty_rejected SELECT seq {_PART} FROM videos"
            f" WHERE item_key = {row}.item_key;")


def _triggers() -> str:
    cn, co = _DUR.format(r="NEW"), _DUR.format(r="OLD")
    vn, vo = "COALESCE(NEW.analysed_s, 0)", "COALESCE(OLD.analysed_s, 0)"
    dirty_v = f"INSERT OR IGNORE INTO dirty_rejected VALUES (NEW.seq {_PART});"
    kept = "('staged', 'sharded')"
    return f"""
CREATE TRIGGER IF NOT EXISTS clips_tally_ins AFTER INSERT ON clips BEGIN
    {_add('clip', 'NEW', cn)} {_dirty_clip('NEW')} END;
CREATE TRIGGER IF NOT EXISTS clips_tally_del AFTER DELETE ON clips BEGIN
    {_sub('clip', 'OLD', co)} {_dirty_clip('OLD')}
    DELETE FROM dedup_items WHERE clip_id = OLD.clip_id; END;
CREATE TRIGGER IF NOT EXISTS clips_tally_upd AFTER UPDATE OF state, stage, reason, record
ON clips BEGIN
    {_sub('clip', 'OLD', co)} {_add('clip', 'NEW', cn)} {_dirty_clip('NEW')} END;
CREATE TRIGGER IF NOT EXISTS clips_dedup_forget AFTER UPDATE OF state ON clips
WHEN NEW.state NOT IN {kept} AND OLD.state IN {kept} BEGIN
    DELETE FROM dedup_items WHERE clip_id = OLD.clip_id; END;
CREATE TRIGGER IF NOT EXISTS videos_tally_ins AFTER INSERT ON videos BEGIN
    {_add('video', 'NEW', vn)} {dirty_v} END;
CREATE TRIGGER IF NOT EXISTS videos_tally_del AFTER DELETE ON videos BEGIN
    {_sub('video', 'OLD', vo)}
    INSERT OR IGNORE INTO dirty_rejected VALUES (OLD.seq {_PART}); END;
CREATE TRIGGER IF NOT EXISTS videos_tally_upd AFTER UPDATE OF state, stage, reason, detail,
analysed_s ON videos BEGIN
    {_sub('video', 'OLD', vo)} {_add('video', 'NEW', vn)} {dirty_v} END;
"""


def _fill(db: sqlite3.Connection) -> None:
    """The tally and the dirty parts of an existing ledger, from its rows (once)."""
    db.execute("DELETE FROM tally")
    db.execute(
        "INSERT INTO tally SELECT 'clip', state, COALESCE(stage, ''), COALESCE(reason, ''),"
        f" COUNT(*), COALESCE(SUM({_DUR.format(r='clips')}), 0) FROM clips GROUP BY 2, 3, 4")
    db.execute(
        "INSERT INTO tally SELECT 'video', state, COALESCE(stage, ''), COALESCE(reason, ''),"
        " COUNT(*), COALESCE(SUM(analysed_s), 0) FROM videos GROUP BY 2, 3, 4")
    db.execute(f"INSERT OR IGNORE INTO dirty_rejected SELECT DISTINCT seq {_PART} FROM videos")


def ensure_derived(ledger: Ledger) -> None:
    """Create the derived tables and triggers; fill them from the rows on a ledger that
    predates them (one transaction)."""
    if (ledger.get_meta("derived_version") or 0) >= _VERSION:
        return
    with ledger.transaction() as db:
        for stmt in _split(_TABLES + _triggers()):
            db.execute(stmt)
        _fill(db)
        db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('derived_version', ?)",
                   (str(_VERSION),))


def _split(script: str) -> list[str]:
    """Statements of ``script`` (``executescript`` would commit the open transaction)."""
    out, buf = [], ""
    for line in script.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            out.append(buf.strip())
            buf = ""
    return [s for s in out if s]
