"""The ledger: one SQLite file holding each input's and each clip's state and provenance.

Only the driver process writes it. A video's outcome (its row and all its clip rows) is written
in one transaction, so a run killed at any moment leaves each video either wholly recorded or
still pending; a rerun redoes the pending ones and nothing is doubled. Shards and the Parquet
files are derived from the ledger and can always be rebuilt from it plus the clip files.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

from clipfactory.ledger_derived import ensure_derived
from clipfactory.records import ClipRecord, Rejection, SourceItem, VideoResult

__all__ = ["RELABELLED", "Ledger", "query_in"]

RELABELLED = ("license", "attribution", "source_url")  # what a manifest row may correct

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS videos (
    item_key TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    source TEXT NOT NULL,
    manifest_id TEXT,
    video_id TEXT,
    source_url TEXT,
    license TEXT,
    attribution TEXT,
    start_s REAL,
    end_s REAL,
    extra TEXT,
    state TEXT NOT NULL DEFAULT 'pending',
    stage TEXT,
    reason TEXT,
    detail TEXT,
    source_sha256 TEXT,
    info TEXT,
    duration_s REAL DEFAULT 0,
    analysed_s REAL DEFAULT 0,
    frames INTEGER DEFAULT 0,
    warnings TEXT,
    wall_s REAL DEFAULT 0,
    cpu_s REAL DEFAULT 0,
    attempts INTEGER DEFAULT 0,
    updated_at REAL
);
CREATE INDEX IF NOT EXISTS videos_state ON videos(state, seq);
CREATE INDEX IF NOT EXISTS videos_sha ON videos(source_sha256);
CREATE TABLE IF NOT EXISTS clips (
    clip_id TEXT PRIMARY KEY,
    item_key TEXT NOT NULL,
    state TEXT NOT NULL,
    stage TEXT,
    reason TEXT,
    shard TEXT,
    record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS clips_state ON clips(state);
CREATE INDEX IF NOT EXISTS clips_item ON clips(item_key);
CREATE TABLE IF NOT EXISTS shards (
    name TEXT PRIMARY KEY,
    sha256 TEXT NOT NULL,
    bytes INTEGER NOT NULL,
    count INTEGER NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    kind TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS relabels (
    item_key TEXT PRIMARY KEY,
    before TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS decisions (
    item_key TEXT PRIMARY KEY,
    license TEXT,
    license_raw TEXT,
    policy TEXT,
    decision TEXT NOT NULL,
    reason TEXT NOT NULL,
    detail TEXT,
    at REAL NOT NULL
);
"""

_ITEM_COLUMNS = ("source", "manifest_id", "source_url", "license", "attribution", "start_s",
                 "end_s", "extra", "spans")
_ADDED_COLUMNS = (("spans", "TEXT"), ("last_error", "TEXT"), ("next_retry_at", "REAL"),
                  ("fetch", "TEXT"), ("file_state", "TEXT"))
# the shard whose bytes the index part was written from, and that part's statistics
_ADDED_SHARD_COLUMNS = (("part_sha", "TEXT"), ("stats", "TEXT"))
_SHARD_COLUMNS = "name, sha256, bytes, count, created_at"


def query_in(db: sqlite3.Connection, sql: str, values: Iterable[Any],
             chunk: int = 500) -> Iterator[Any]:
    """Rows of ``sql`` whose ``{}`` is an ``IN`` list over ``values``, run ``chunk`` values at
    a time (SQLite bounds the variables of one statement); ``ORDER BY`` holds per chunk."""
    vals = list(values)
    for i in range(0, len(vals), chunk):
        part = vals[i:i + chunk]
        yield from db.execute(sql.format(",".join("?" * len(part))), part)


class Ledger:
    """SQLite-backed state of one output folder."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        # the rows an INSERT OR REPLACE replaces fire the delete triggers only with this on
        # (SQLite's rule): the tally would keep counting a clip recorded again under another
        # input. No trigger writes the table that fires it, so nothing recurses
        self.db.execute("PRAGMA recursive_triggers=ON")
        self.db.executescript(_SCHEMA)
        self._add_columns()
        ensure_derived(self)  # counts, dirty parts and the dedup index kept by triggers

    def _add_columns(self) -> None:
        """Columns added after the first release, added to older ledgers on open: the manifest
        spans of an input, and per-item fetch state (last error, next retry time, what the
        fetch learned)."""
        for table, columns in (("videos", _ADDED_COLUMNS), ("shards", _ADDED_SHARD_COLUMNS)):
            have = {r[1] for r in self.db.execute(f"PRAGMA table_info({table})")}
            for name, kind in columns:
                if name not in have:
                    self.db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT, rolled back on any exception."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    # -- inputs -------------------------------------------------------------------------------
    def register(self, rows: Iterable[SourceItem | Rejection], batch: int = 2000) -> int:
        """Add inputs not seen before (pending, or failed for rejected rows); return how many."""
        added = 0
        seq = self.db.execute("SELECT COALESCE(MAX(seq), -1) FROM videos").fetchone()[0]
        chunk: list[SourceItem | Rejection] = []
        for row in rows:
            chunk.append(row)
            if len(chunk) >= batch:
                added, seq = self._register_chunk(chunk, added, seq)
                chunk = []
        if chunk:
            added, seq = self._register_chunk(chunk, added, seq)
        return added

    def _register_chunk(self, chunk: list[SourceItem | Rejection], added: int,
                        seq: int) -> tuple[int, int]:
        now = time.time()
        with self.transaction() as db:
            for row in chunk:
                seq += 1
                if isinstance(row, Rejection):
                    cur = db.execute(
                        "INSERT OR IGNORE INTO videos (item_key, seq, source, video_id, state,"
                        " stage, reason, detail, updated_at) VALUES (?,?,?,?,?,?,?,?,?)",
                        (row.item_key, seq, row.source, row.video_id, "failed", row.stage,
                         row.reason, row.detail, now))
                else:
                    cur = db.execute(
                        "INSERT OR IGNORE INTO videos (item_key, seq, source, manifest_id,"
                        " source_url, license, attribution, start_s, end_s, extra, spans,"
                        " updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                        (row.item_key, seq, row.source, row.id, row.source_url, row.license,
                         row.attribution, row.start_s, row.end_s, json.dumps(row.extra),
                         json.dumps(row.spans) if row.spans else None, now))
                    if not cur.rowcount:
                        self._relabel(db, row)
                added += cur.rowcount
        return added, seq

    @staticmethod
    def _relabel(db: sqlite3.Connection, item: SourceItem) -> None:
        """An input seen before, whose manifest row now gives another license, attribution or
        source URL (a correction): the row takes them, and ``relabels`` keeps what they were
        until its clips are brought in line (:mod:`clipfactory.provenance.relabel`), in the
        same commit. A value the row no longer gives is not a change: what a fetch learned
        stays. A removed input stays as it was."""
        new = {k: getattr(item, k) for k in RELABELLED}
        if all(v is None for v in new.values()):  # a folder's file: nothing to correct
            return
        old = db.execute("SELECT state, " + ", ".join(RELABELLED) + " FROM videos WHERE"
                         " item_key = ?", (item.item_key,)).fetchone()
        if old is None or old["state"] == "removed":
            return
        changed = {k: v for k, v in new.items() if v is not None and v != old[k]}
        if not changed:
            return
        db.execute("UPDATE videos SET " + ", ".join(f"{k} = ?" for k in changed) +
                   " WHERE item_key = ?", (*changed.values(), item.item_key))
        db.execute("INSERT INTO relabels (item_key, before) VALUES (?, ?) ON CONFLICT"
                   " (item_key) DO NOTHING",  # the first correction's "before" is the clips'
                   (item.item_key, json.dumps({k: old[k] for k in changed})))

    def pending(self, page: int = 1000) -> Iterator[SourceItem]:
        """Inputs still to process, in input order, read ``page`` rows at a time.

        Each page is its own query (``seq > last seen``), not one cursor held open: the caller
        records results on this connection while it iterates, and 10^7 pending inputs would
        not fit in the driver's memory as one list. An input that leaves ``pending`` before
        its page is read is not yielded; one registered or requeued meanwhile with a higher
        ``seq`` is."""
        last = -1  # seq starts at 0
        while True:
            rows = self.db.execute(
                "SELECT seq, item_key, " + ", ".join(_ITEM_COLUMNS) +
                " FROM videos WHERE state = 'pending' AND seq > ? ORDER BY seq LIMIT ?",
                (last, page)).fetchall()
            for r in rows:
                yield SourceItem(item_key=r["item_key"], source=r["source"], id=r["manifest_id"],
                                 source_url=r["source_url"], license=r["license"],
                                 attribution=r["attribution"], start_s=r["start_s"],
                                 end_s=r["end_s"], extra=json.loads(r["extra"] or "{}"),
                                 spans=tuple(tuple(sp) for sp in json.loads(r["spans"] or "[]")))
            if len(rows) < page:
                return
            last = rows[-1]["seq"]

    def pending_count(self) -> int:
        """How many inputs are pending (counted on the ``videos_state`` index)."""
        return self.db.execute(
            "SELECT COUNT(*) FROM videos WHERE state = 'pending'").fetchone()[0]

    def find_duplicate_source(self, result: VideoResult) -> str | None:
        """The source of an already-done input with the same content and span, if any."""
        if result.item.id is not None or result.source_sha256 is None:
            return None
        row = self.db.execute(
            "SELECT source FROM videos WHERE state = 'done' AND source_sha256 = ?"
            " AND manifest_id IS NULL AND start_s IS ? AND end_s IS ? AND item_key != ?",
            (result.source_sha256, result.item.start_s, result.item.end_s,
             result.item.item_key)).fetchone()
        return row["source"] if row else None

    def record(self, result: VideoResult, next_retry_at: float | None = None) -> None:
        """Write one video's outcome and all its clips atomically. A failure keeps its error
        and ``next_retry_at`` (epoch seconds, None = not worth retrying by itself)."""
        rej = result.rejection
        info = result.info
        item = result.item
        with self.transaction() as db:
            db.execute(
                "UPDATE videos SET last_error=?, next_retry_at=?, fetch=COALESCE(?, fetch),"
                " license=COALESCE(license, ?), attribution=COALESCE(attribution, ?),"
                " file_state=? WHERE item_key=?",
                (f"{rej.stage}/{rej.reason}: {rej.detail}" if rej else None,
                 next_retry_at if rej else None,
                 json.dumps(item.provenance, default=str) if item.provenance else None,
                 item.license, item.attribution, result.file_state, item.item_key))
            db.execute("DELETE FROM clips WHERE item_key = ?", (result.item.item_key,))
            db.execute(
                "UPDATE videos SET state=?, stage=?, reason=?, detail=?, video_id=?,"
                " source_sha256=?, info=?, duration_s=?, analysed_s=?, frames=?, warnings=?,"
                " wall_s=?, cpu_s=?, attempts=attempts+1, updated_at=? WHERE item_key=?",
                ("failed" if rej else "done", rej.stage if rej else None,
                 rej.reason if rej else None, rej.detail if rej else None,
                 result.video_id or (rej.video_id if rej else None), result.source_sha256,
                 json.dumps(asdict(info)) if info else None,
                 info.duration_s if info else 0.0, result.analysed_s, result.decoded_frames,
                 json.dumps(result.warnings), result.wall_s, result.cpu_s, time.time(),
                 result.item.item_key))
            db.executemany(
                "INSERT OR REPLACE INTO clips (clip_id, item_key, state, stage, reason, shard,"
                " record) VALUES (?,?,?,?,?,?,?)",
                [(c.clip_id, c.item_key, c.state, c.stage, c.reason, c.shard,
                  json.dumps(c.to_dict())) for c in result.clips])

    def set_video_state(self, item_keys: Iterable[str], state: str, stage: str | None = None,
                        reason: str | None = None, detail: str | None = None) -> None:
        """Move inputs to ``state`` (``pending`` to requeue, ``failed``, ``removed``)."""
        now = time.time()
        with self.transaction() as db:
            db.executemany(
                "UPDATE videos SET state=?, stage=?, reason=?, detail=?, updated_at=?,"
                " video_id=COALESCE(video_id, manifest_id) WHERE item_key=?",
                [(state, stage, reason, detail, now, k) for k in item_keys])

    def set_file_states(self, rows: Iterable[tuple[str, str]]) -> None:
        """Record ``(item_key, file_state)``: the file changed on disk, not in content."""
        with self.transaction() as db:
            db.executemany("UPDATE videos SET file_state=? WHERE item_key=?",
                           [(s, k) for k, s in rows])

    def record_decisions(self, rows: Iterable[tuple[str, str | None, str | None, str | None,
                                                    str, str, str | None]]) -> None:
        """Store each input's policy decision: (item_key, license, license_raw, policy,
        decision, reason, detail)."""
        with self.transaction() as db:
            self.write_decisions(db, rows)

    @staticmethod
    def write_decisions(db: sqlite3.Connection,
                        rows: Iterable[tuple[str, str | None, str | None, str | None, str, str,
                                             str | None]]) -> None:
        """:meth:`record_decisions` inside the caller's transaction."""
        now = time.time()
        db.executemany(
            "INSERT OR REPLACE INTO decisions (item_key, license, license_raw, policy,"
            " decision, reason, detail, at) VALUES (?,?,?,?,?,?,?,?)",
            [(*r, now) for r in rows])

    # -- clips --------------------------------------------------------------------------------
    def clips_of(self, item_keys: Iterable[str]) -> list[ClipRecord]:
        """Every clip record (any state) of the given inputs."""
        return [self._clip(r) for r in query_in(
            self.db, "SELECT record, state, stage, reason, shard FROM clips WHERE item_key IN"
            " ({}) ORDER BY clip_id", item_keys)]

    def clips_by_id(self, clip_ids: Iterable[str]) -> list[ClipRecord]:
        """The clip records with the given ids (any state), ordered by clip id."""
        return sorted((self._clip(r) for r in query_in(
            self.db, "SELECT record, state, stage, reason, shard FROM clips WHERE clip_id IN"
            " ({})", clip_ids)), key=lambda c: c.clip_id)

    @staticmethod
    def _clip(r: sqlite3.Row) -> ClipRecord:
        d = json.loads(r["record"])
        d.pop("num_frames", None)
        d.update(state=r["state"], stage=r["stage"], reason=r["reason"], shard=r["shard"])
        return ClipRecord(**d)

    def clips(self, *states: str) -> list[ClipRecord]:
        """Clip records in the given states (all when none given), ordered by clip id."""
        q = "SELECT record, state, stage, reason, shard FROM clips"
        args: tuple[Any, ...] = ()
        if states:
            q += " WHERE state IN (" + ",".join("?" * len(states)) + ")"
            args = states
        return [self._clip(r) for r in self.db.execute(q + " ORDER BY clip_id", args)]

    def update_clips(self, clips: Iterable[ClipRecord]) -> None:
        """Persist state changes of existing clips (one transaction)."""
        with self.transaction() as db:
            self.write_clips(db, clips)

    @staticmethod
    def write_clips(db: sqlite3.Connection, clips: Iterable[ClipRecord]) -> None:
        """Persist state changes of existing clips on ``db``, inside the caller's transaction
        (with whatever else must commit together with them)."""
        db.executemany(
            "UPDATE clips SET state=?, stage=?, reason=?, shard=?, record=? WHERE clip_id=?",
            [(c.state, c.stage, c.reason, c.shard, json.dumps(c.to_dict()), c.clip_id)
             for c in clips])

    def add_shards(self, shards: Iterable[tuple[str, str, int, int]],
                   clips: Iterable[ClipRecord]) -> None:
        """Register finished shards (name, sha256, bytes, count) and their clips together."""
        now = time.time()
        with self.transaction() as db:
            db.executemany(
                "INSERT OR REPLACE INTO shards (name, sha256, bytes, count, created_at)"
                " VALUES (?,?,?,?,?)", [(*s, now) for s in shards])
            self.write_clips(db, clips)

    def shards(self) -> list[sqlite3.Row]:
        """Every shard: name, sha256, bytes, count, created_at (in name order)."""
        return self.db.execute(f"SELECT {_SHARD_COLUMNS} FROM shards ORDER BY name").fetchall()

    def remove_shard(self, name: str) -> None:
        self.db.execute("DELETE FROM shards WHERE name = ?", (name,))

    # -- reporting ----------------------------------------------------------------------------
    def videos(self, *states: str) -> list[sqlite3.Row]:
        q = "SELECT * FROM videos"
        if states:
            q += " WHERE state IN (" + ",".join("?" * len(states)) + ")"
        return self.db.execute(q + " ORDER BY seq", states).fetchall()

    def iter_videos(self, *states: str, chunk: int = 5000, columns: str = "*"
                    ) -> Iterator[sqlite3.Row]:
        """Like :meth:`videos`, in pages of ``chunk`` rows (memory bounded at any size);
        ``columns`` (which must include ``seq``) where a scan needs only a few of them."""
        last = -1
        cond = " AND state IN (" + ",".join("?" * len(states)) + ")" if states else ""
        while True:
            rows = self.db.execute(f"SELECT {columns} FROM videos WHERE seq > ?{cond} ORDER BY"
                                   " seq LIMIT ?", (last, *states, chunk)).fetchall()
            yield from rows
            if len(rows) < chunk:
                return
            last = rows[-1]["seq"]

    def counts(self) -> dict[str, Any]:
        """Videos by state, clips by state and reason, hours in and out: read from the tally
        the triggers keep (:mod:`clipfactory.ledger_derived`), never a scan of the rows."""
        rows = self.db.execute(
            "SELECT kind, state, stage, reason, n, secs FROM tally WHERE n > 0").fetchall()
        v: dict[str, int] = {}
        c: dict[str, int] = {}
        by: dict[tuple[str, str], dict[str, int]] = {}
        hours_in = hours_out = 0.0
        for kind, state, stage, reason, n, secs in rows:
            (v if kind == "video" else c)[state] = (v if kind == "video" else c).get(state, 0) + n
            if (kind, state) in (("clip", "dropped"), ("video", "failed"), ("video", "removed")):
                key = f"{stage or '?'}/{reason or '?'}"
                group = by.setdefault((kind, state), {})
                group[key] = group.get(key, 0) + n
            if (kind, state) == ("video", "done"):
                hours_in += secs
            elif (kind, state) == ("clip", "sharded"):
                hours_out += secs

        def ranked(kind: str, state: str) -> dict[str, int]:
            return dict(sorted(by.get((kind, state), {}).items(), key=lambda kv: (-kv[1], kv[0])))

        return {
            "videos": {"total": sum(v.values()), "done": v.get("done", 0),
                       "failed": v.get("failed", 0), "pending": v.get("pending", 0),
                       "removed": v.get("removed", 0)},
            "clips": {"kept": c.get("sharded", 0), "staged": c.get("staged", 0),
                      "dropped": c.get("dropped", 0)},
            "dropped_by_reason": ranked("clip", "dropped"),
            "failed_by_reason": ranked("video", "failed"),
            "removed_by_reason": ranked("video", "removed"),
            "hours_in": max(hours_in, 0.0) / 3600.0,
            "hours_out": max(hours_out, 0.0) / 3600.0,
        }

    def event(self, kind: str, detail: dict[str, Any]) -> None:
        self.db.execute("INSERT INTO events (at, kind, detail) VALUES (?,?,?)",
                        (time.time(), kind, json.dumps(detail)))

    def set_meta(self, key: str, value: Any) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                        (key, json.dumps(value)))

    def get_meta(self, key: str, default: Any = None) -> Any:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else default
