"""Where stage outputs land: the ledger (status, scores, vectors) and ``OUT/embeddings/``.

Outputs are buffered in the driver and committed together: the Parquet part with the vectors
is written first (temporary name, renamed), then one ledger transaction records the part, the
vectors, each clip's status and its merged scores. A run killed before the commit leaves an
unregistered part, which the next run deletes, and clips without a status, which it redoes:
nothing is lost or doubled. A clip a stage drops before it is sharded keeps its staged file until
the drop is committed (a kill after the commit leaves a file no clip owns, which finalize
deletes). Vectors are also kept in the ledger (float16) so the global steps
(semantic dedup) can read a cluster's members without scanning the parts.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from clipfactory.atomic import replacing
from clipfactory.ledger import Ledger, query_in
from clipfactory.sinks.layout import remove_staged_files
from clipfactory.stages.base import ClipInput, StageOutput
from clipfactory.worker import file_sha256

__all__ = ["EMBEDDINGS_DIR", "AnnotationStore", "annotation_summary", "clip_input", "ensure_schema",
           "mark_stale", "remove_embeddings"]

EMBEDDINGS_DIR = "embeddings"
# a field a stage overwrites whose earlier value (from the source manifest) is kept aside
PRESERVED = {"caption": "source_caption"}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS annotations (
    clip_id TEXT NOT NULL,
    stage TEXT NOT NULL,
    status TEXT NOT NULL,
    reason TEXT,
    detail TEXT,
    model TEXT,
    revision TEXT,
    at REAL NOT NULL,
    PRIMARY KEY (clip_id, stage)
);
CREATE TABLE IF NOT EXISTS embeddings (
    clip_id TEXT PRIMARY KEY,
    stage TEXT NOT NULL,
    model TEXT,
    revision TEXT,
    dim INTEGER NOT NULL,
    vec BLOB NOT NULL,
    part TEXT NOT NULL,
    pixels INTEGER NOT NULL DEFAULT 0,
    frames INTEGER NOT NULL DEFAULT 0,
    cluster INTEGER,
    nn_sim REAL
);
CREATE INDEX IF NOT EXISTS embeddings_cluster ON embeddings(cluster);
CREATE INDEX IF NOT EXISTS embeddings_part ON embeddings(part);
CREATE TABLE IF NOT EXISTS stale_shards (name TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS embedding_parts (
    name TEXT PRIMARY KEY,
    rows INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    created_at REAL NOT NULL
);
"""

PART_SCHEMA = pa.schema([("clip_id", pa.string()), ("embedding", pa.list_(pa.float32())),
                         ("model", pa.string()), ("revision", pa.string())])


def ensure_schema(ledger: Ledger) -> None:
    """Create the annotation tables in an older ledger (idempotent)."""
    ledger.db.executescript(_SCHEMA)


def mark_stale(db: Any, shards: Iterable[str]) -> None:
    """Mark ``shards`` stale on ``db`` (inside the caller's transaction, with the change that
    makes them so): finalize rewrites them to the ledger's clips
    (:func:`clipfactory.sinks.refresh.refresh_stale_shards`)."""
    db.executemany("INSERT OR IGNORE INTO stale_shards (name) VALUES (?)",
                   [(name,) for name in sorted(set(shards))])



def _write_part(path: Path, rows: list[tuple[str, np.ndarray]], model: str,
                revision: str) -> None:
    table = pa.table({
        "clip_id": [r[0] for r in rows],
        "embedding": [r[1].astype(np.float32).tolist() for r in rows],
        "model": [model] * len(rows), "revision": [revision] * len(rows)}, schema=PART_SCHEMA)
    with replacing(path, durable=True) as tmp:
        pq.write_table(table, tmp, compression="zstd")


_NON_FINITE = ("the model gave NaN or infinite values for this clip (a broken checkpoint, "
               "or an overflow in half precision); nothing of it was kept")


def _finite(o: StageOutput) -> StageOutput:
    """``o``, or a failure when its vector (as stored, in float16) or a score is NaN or
    infinite: kept, they made the record's JSON invalid (the ledger refused it, this run
    and every later one) and semantic dedup's clustering raise."""
    if not o.ok:
        return o
    bad = o.vector is not None and not np.isfinite(
        np.asarray(o.vector, dtype=np.float32).astype(np.float16)).all()
    bad = bad or any(not math.isfinite(v) for v in o.scores.values())
    return StageOutput(o.clip_id, reason="non_finite_output", detail=_NON_FINITE) if bad else o


class AnnotationStore:
    """Buffer stage outputs and commit them (see module doc)."""

    def __init__(self, out: str | Path, ledger: Ledger, *, part_rows: int = 10000,
                 flush_s: float = 60.0) -> None:
        self.out, self.ledger = Path(out), ledger
        self.dir = self.out / EMBEDDINGS_DIR
        self.part_rows, self.flush_s = part_rows, flush_s
        ensure_schema(ledger)
        self._buf: list[tuple[str, str, str, StageOutput]] = []  # stage, model, revision, out
        self._last_flush = time.monotonic()
        self.saved = self.failed = 0

    # -- resume --------------------------------------------------------------------------------
    def sweep(self) -> int:
        """Delete parts a killed run wrote but never registered; return how many."""
        if not self.dir.is_dir():
            return 0
        known = {r[0] for r in self.ledger.db.execute("SELECT name FROM embedding_parts")}
        n = 0
        for f in self.dir.iterdir():
            if f.name.startswith(".") or (f.suffix == ".parquet" and f.name not in known):
                f.unlink()
                n += 1
        return n

    def pending(self, stage: str) -> list[ClipInput]:
        """Kept clips (staged or sharded) this stage has not done, or failed on before."""
        q = ("SELECT c.clip_id, c.state, c.shard, c.record FROM clips c LEFT JOIN annotations a"
             " ON a.clip_id = c.clip_id AND a.stage = ? WHERE c.state IN ('staged', 'sharded')"
             " AND (a.status IS NULL OR a.status = 'failed') ORDER BY c.clip_id")
        out = []
        for r in self.ledger.db.execute(q, (stage,)):
            rec = json.loads(r["record"])
            if r["state"] == "sharded" and r["shard"]:
                path, member = str(self.out / "shards" / r["shard"]), f"{rec['key']}.mp4"
            elif rec.get("staged_path"):
                path, member = rec["staged_path"], None
            else:
                continue
            out.append(clip_input(rec, path, member))
        return out

    def model_of(self, stage: str) -> tuple[str, str] | None:
        """(model, revision) the stored vectors of ``stage`` were made with, if any."""
        r = self.ledger.db.execute("SELECT model, revision FROM embeddings WHERE stage = ?"
                                   " LIMIT 1", (stage,)).fetchone()
        return (r[0], r[1]) if r else None

    # -- saving --------------------------------------------------------------------------------
    def add(self, stage: str, model: str, revision: str, outputs: Iterable[StageOutput]) -> None:
        """Buffer outputs; commit when the buffer is full or old."""
        self._buf.extend((stage, model, revision, o) for o in outputs)
        if len(self._buf) >= self.part_rows or (
                self._buf and time.monotonic() - self._last_flush >= self.flush_s):
            self.flush()

    def flush(self) -> None:
        """Write the buffered vectors as one part per model and commit everything."""
        buf, self._buf = self._buf, []
        self._last_flush = time.monotonic()
        if not buf:
            return
        buf = [(stage, model, rev, _finite(o)) for stage, model, rev, o in buf]
        ids = sorted({o.clip_id for *_, o in buf})
        records = self._records(ids)
        parts: list[tuple[str, int, str]] = []
        vec_rows: list[tuple[Any, ...]] = []
        by_model: dict[tuple[str, str, str], list[StageOutput]] = {}
        for stage, model, rev, o in buf:
            if o.ok and o.vector is not None and o.clip_id in records:
                by_model.setdefault((stage, model, rev), []).append(o)
        for (stage, model, rev), outs in by_model.items():
            name = self._next_part_name(len(parts))
            self.dir.mkdir(parents=True, exist_ok=True)
            path = self.dir / name
            _write_part(path, [(o.clip_id, o.vector) for o in outs], model, rev)  # type: ignore[misc]
            parts.append((name, len(outs), file_sha256(str(path))))
            for o in outs:
                v = np.asarray(o.vector, dtype=np.float32)
                rec = records[o.clip_id]
                vec_rows.append((o.clip_id, stage, model, rev, int(v.size),
                                 v.astype(np.float16).tobytes(), name,
                                 int(rec["width"]) * int(rec["height"]),
                                 int(rec["end_frame"]) - int(rec["start_frame"])))
        now = time.time()
        status_rows, clip_rows = [], []
        drops: list[str] = []
        unstaged: list[str] = []  # deleted once the drops are committed (a kill leaves files)
        for stage, model, rev, o in buf:
            rec = records.get(o.clip_id)
            if rec is None:  # removed meanwhile (takedown): nothing to annotate
                continue
            status_rows.append((o.clip_id, stage, "ok" if o.ok else "failed", o.reason,
                                o.detail or None, model, rev, now))
            errors = rec["extra"].setdefault("annotate_errors", {})
            for name, keep_as in PRESERVED.items():  # a manifest's own caption is not lost
                if name in o.fields and name in rec["extra"] and \
                        not rec["extra"].get(f"{name}_model"):
                    rec["extra"].setdefault(keep_as, rec["extra"][name])
            for name, value in o.fields.items():  # failed outputs may carry status fields
                if value is None:  # the stage says the field no longer holds: it goes
                    rec["extra"].pop(name, None)
                else:
                    rec["extra"][name] = value
            if o.ok:
                rec["scores"].update(o.scores)
                errors.pop(stage, None)
                if o.drop and not rec.get("_shard"):  # a stage's filter decision, pre-shard
                    drops.append(o.clip_id)
                    rec.update(state="dropped", stage="filter", reason=o.drop)
                    if rec.get("staged_path"):
                        unstaged.append(rec["staged_path"])
                        rec["staged_path"] = None
                self.saved += 1
            else:
                errors[stage] = o.reason
                self.failed += 1
            if not errors:
                rec["extra"].pop("annotate_errors")
        stale: set[str] = set()
        for cid in sorted({r[0] for r in status_rows}):
            shard = records[cid].pop("_shard", None)
            if shard:
                stale.add(shard)
            clip_rows.append((json.dumps(records[cid]), cid))
        with self.ledger.transaction() as db:
            db.executemany("INSERT INTO embedding_parts (name, rows, sha256, created_at)"
                           " VALUES (?,?,?,?)", [(*p, now) for p in parts])
            db.executemany("INSERT OR REPLACE INTO embeddings (clip_id, stage, model, revision,"
                           " dim, vec, part, pixels, frames) VALUES (?,?,?,?,?,?,?,?,?)",
                           vec_rows)
            db.executemany("INSERT OR REPLACE INTO annotations (clip_id, stage, status, reason,"
                           " detail, model, revision, at) VALUES (?,?,?,?,?,?,?,?)", status_rows)
            db.executemany("UPDATE clips SET record = ? WHERE clip_id = ?", clip_rows)
            db.executemany("UPDATE clips SET state = 'dropped', stage = 'filter', reason = ?"
                           " WHERE clip_id = ?", [(records[c]["reason"], c) for c in drops])
            # KEY.json (and KEY.txt) of clips already sharded are rewritten by finalize
            mark_stale(db, stale)
        remove_staged_files(unstaged)

    def _records(self, ids: list[str]) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for r in query_in(self.ledger.db, "SELECT clip_id, record, state, shard FROM clips"
                          " WHERE state IN ('staged', 'sharded') AND clip_id IN ({})", ids):
            rec = json.loads(r[1])
            rec["_shard"] = r[3] if r[2] == "sharded" else None
            out[r[0]] = rec
        return out

    def _next_part_name(self, offset: int) -> str:
        names = [r[0] for r in self.ledger.db.execute("SELECT name FROM embedding_parts")]
        last = max((int(n.split("-")[1].split(".")[0]) for n in names), default=-1)
        return f"part-{last + 1 + offset:06d}.parquet"


def clip_input(rec: dict[str, Any], path: str, member: str | None) -> ClipInput:
    """The stage's view of a clip record (a plain dict, as the ledger stores it)."""
    return ClipInput(rec["clip_id"], path, member,
                     num_frames=int(rec.get("num_frames")
                                    or int(rec["end_frame"]) - int(rec["start_frame"])),
                     fps=float(rec["fps"]), width=int(rec["width"]), height=int(rec["height"]))


def remove_embeddings(out: str | Path, ledger: Ledger, clip_ids: Iterable[str]) -> int:
    """Purge these clips' vectors and stage statuses: every part holding a vector is rewritten
    without it (or deleted when emptied), then the ledger rows go. Safe to repeat after a
    crash. Returns how many vectors were removed."""
    ensure_schema(ledger)
    ids = list(set(clip_ids))
    if not ids:
        return 0
    with ledger.transaction() as db:  # their stage statuses (error details quote no content)
        db.executemany("DELETE FROM annotations WHERE clip_id = ?", [(c,) for c in ids])
    by_part: dict[str, set[str]] = {}
    for cid, part in query_in(ledger.db, "SELECT clip_id, part FROM embeddings WHERE clip_id"
                              " IN ({})", ids):
        by_part.setdefault(part, set()).add(cid)
    d = Path(out) / EMBEDDINGS_DIR
    for part, gone in sorted(by_part.items()):
        path = d / part
        if path.is_file():
            table = pq.read_table(path)
            keep = pa.array([c not in gone for c in table.column("clip_id").to_pylist()])
            table = table.filter(keep)
            if table.num_rows:
                with replacing(path, durable=True) as tmp:
                    pq.write_table(table, tmp, compression="zstd")
                sha: str | None = file_sha256(str(path))
            else:
                path.unlink()
                sha = None
        else:
            sha = None
        with ledger.transaction() as db:
            db.executemany("DELETE FROM embeddings WHERE clip_id = ?", [(c,) for c in gone])
            if sha is None:
                db.execute("DELETE FROM embedding_parts WHERE name = ?", (part,))
            else:
                db.execute("UPDATE embedding_parts SET rows = rows - ?, sha256 = ? WHERE name = ?",
                           (len(gone), sha, part))
    return sum(len(g) for g in by_part.values())


def annotation_summary(ledger: Ledger, stats: Mapping[str, Any] | Iterable[Any],
                       cfg: Any) -> dict[str, Any]:
    """What the summary and the card say about annotations: the category mix of the kept
    clips and their caption statuses (from their statistics, :mod:`clipfactory.sinks.stats`;
    the kept clips themselves are accepted too), stage failures by reason, embeddings stored,
    and the semantic dedup statistics (SQL over the ledger)."""
    from clipfactory.sinks.stats import as_stats

    ensure_schema(ledger)
    st = as_stats(stats)
    cats: dict[str, int] = dict(st["categories"])
    caps: dict[str, int] = dict(st["caption_status"])
    failed = dict(ledger.db.execute(
        # CROSS JOIN: the annotation rows first (SQLite would otherwise walk every kept clip)
        "SELECT a.stage || '/' || COALESCE(a.reason, '?'), COUNT(*) FROM annotations a"
        " CROSS JOIN clips c ON c.clip_id = a.clip_id WHERE a.status = 'failed'"
        " AND c.state IN ('staged', 'sharded') GROUP BY 1 ORDER BY 2 DESC").fetchall())
    n_vec = ledger.db.execute("SELECT COUNT(*) FROM embeddings").fetchone()[0]
    out: dict[str, Any] = {}
    captioner = ledger.get_meta("stage.caption")
    if cats or failed or n_vec or caps:
        model = ledger.db.execute("SELECT model, revision, dim FROM embeddings LIMIT 1").fetchone()
        out["annotations"] = {
            "categories": dict(sorted(cats.items(), key=lambda kv: (-kv[1], kv[0]))),
            "failed_by_reason": failed, "embeddings": n_vec,
            "embedding_model": ({"model": model[0], "revision": model[1], "dim": model[2]}
                                if model else None),
            "embedding_models": [  # every model, with the kept clips it embedded (the card)
                {"model": r[0], "revision": r[1], "dim": r[2], "clips": r[3]}
                for r in ledger.db.execute(
                    "SELECT e.model, e.revision, e.dim, COUNT(*) FROM embeddings e"
                    " CROSS JOIN clips c"
                    " ON c.clip_id = e.clip_id WHERE c.state IN ('staged', 'sharded')"
                    " GROUP BY 1, 2, 3 ORDER BY 4 DESC, 1")],
            "captions": {"by_status": dict(sorted(caps.items())), "captioner": captioner}
            if caps or captioner else None}
    if getattr(cfg.dedup, "semantic", False):
        from clipfactory.dedup.semantic_index import semantic_stats

        out["semantic_dedup"] = semantic_stats(ledger, cfg.dedup.semantic_eps)
    return out
