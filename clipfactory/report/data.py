"""What the report reads: ``summary.json``, the index and rejected rows (the parts under
``index/`` and ``rejected/``, else ``index.parquet`` and ``rejected.parquet``) and a few facts
from the ledger (rotation of sources, policy decisions), all read-only.

Everything counted or plotted is computed with pyarrow and numpy over the rows read: every row,
or past ``max_rows`` a fixed sample of whole parts (:mod:`clipfactory.report.rows`), and then
the counts come from ``summary.json`` and the page says what the charts cover. Only the clips
chosen for thumbnails become Python objects. The choice is a deterministic sample: clips are
ranked by a hash of their id and the first ``n`` are taken, so the same clips are shown on every
build (their thumbnails come from the cache) and a growing dataset mostly keeps its picks.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from clipfactory.ledger import query_in
from clipfactory.report.rows import MAX_ROWS, RowSample, read_rows
from clipfactory.sinks.index import INDEX_SCHEMA, REJECTED_SCHEMA

__all__ = [
    "ReportData",
    "kept_downloads",
    "load_report_data",
    "sample_ids",
    "score_columns",
    "select_rows",
    "video_facts",
]


@dataclass
class ReportData:
    """One output folder's tables, as the report sees them (``kept_sample`` and
    ``rejected_sample`` set when the index or the rejected rows were sampled)."""

    out: Path
    summary: dict[str, Any]
    index: pa.Table  # kept clips
    clips: pa.Table  # dropped clips (rejected rows of kind "clip")
    videos: pa.Table  # failed or removed inputs (rejected rows of kind "video")
    decisions: list[tuple[str, str, int]] = field(default_factory=list)  # policy, per reason
    kept_sample: RowSample | None = None
    rejected_sample: RowSample | None = None

    @property
    def kept_total(self) -> int:
        """Kept clips in the dataset."""
        return self.kept_sample.total if self.kept_sample else len(self.index)

    @property
    def dropped_total(self) -> int:
        """Dropped clips in the dataset."""
        if self.rejected_sample is None:
            return len(self.clips)
        return int(self.summary.get("counts", {}).get("clips", {}).get("dropped", 0))


def load_report_data(out: str | Path, *, max_rows: int = MAX_ROWS) -> ReportData:
    """Read an output folder, sampling a table of more than ``max_rows`` rows;
    ``FileNotFoundError`` when it holds no finished run."""
    out = Path(out)
    path = out / "summary.json"
    if not path.is_file():
        raise FileNotFoundError(f"no finished clipfactory output in {out} (summary.json missing)")
    summary = json.loads(path.read_text(encoding="utf-8"))
    counts = summary.get("counts") or {}
    c, v = counts.get("clips") or {}, counts.get("videos") or {}
    index, kept_sample = read_rows(out, "index", INDEX_SCHEMA, int(c.get("kept", 0)), max_rows)
    rejected, rejected_sample = read_rows(
        out, "rejected", REJECTED_SCHEMA,
        int(c.get("dropped", 0)) + int(v.get("failed", 0)) + int(v.get("removed", 0)), max_rows)
    is_clip = pc.fill_null(pc.equal(rejected.column("kind"), "clip"), False)
    return ReportData(out, summary, index, rejected.filter(is_clip),
                      rejected.filter(pc.invert(is_clip)), _decisions(out / "ledger.sqlite"),
                      kept_sample, rejected_sample)


def _connect(path: Path) -> sqlite3.Connection | None:
    if not path.is_file():
        return None
    try:
        # only SELECTs; not mode=ro, which cannot clean up the WAL files when it closes
        return sqlite3.connect(path, timeout=10)
    except sqlite3.Error:
        return None


def _decisions(path: Path) -> list[tuple[str, str, int]]:
    db = _connect(path)
    if db is None:
        return []
    try:
        return [(str(d), str(r), int(n)) for d, r, n in db.execute(
            "SELECT decision, reason, COUNT(*) FROM decisions GROUP BY 1, 2 ORDER BY 3 DESC, 1, 2")]
    except sqlite3.Error:  # a ledger from before policy decisions were recorded
        return []
    finally:
        db.close()


def video_facts(out: Path, item_keys: list[str]) -> dict[str, tuple[int, str]]:
    """Display rotation (0/90/180/270, from the probe) and content SHA-256 of the given
    inputs, from the ledger: a dropped clip's strip is made from its source, turned, and
    named by the bytes it shows (a file replaced under the same id gets new pictures)."""
    db = _connect(out / "ledger.sqlite")
    if db is None or not item_keys:
        return {}
    facts: dict[str, tuple[int, str]] = {}
    try:
        for key, info, sha in query_in(db, "SELECT item_key, info, source_sha256 FROM videos"
                                       " WHERE item_key IN ({})", item_keys):
            rotation = int(json.loads(info).get("rotation") or 0) if info else 0
            facts[key] = (rotation, sha or "")
    except (sqlite3.Error, ValueError):
        pass
    finally:
        db.close()
    return facts


def kept_downloads(out: Path, urls: list[str]) -> dict[str, str]:
    """The fetched copy that ``fetch.keep_sources`` kept of each URL that has one (its
    ``.fetch.json`` marker names it, in ``OUTPUT/sources`` or the configured
    ``fetch.sources_dir``): a dropped clip of a remote source is shown from it."""
    from clipfactory.fetch.base import marker_path, sources_dirs

    if not urls:
        return {}
    configured = None
    db = _connect(out / "ledger.sqlite")
    if db is not None:
        try:
            row = db.execute("SELECT value FROM meta WHERE key = 'config'").fetchone()
            configured = ((json.loads(row[0]) or {}).get("fetch") or {}).get("sources_dir") \
                if row else None
        except (sqlite3.Error, ValueError, AttributeError):
            pass
        finally:
            db.close()
    dirs = sources_dirs(out, configured)
    found: dict[str, str] = {}
    for url in urls:
        for d in dirs:
            try:
                name = Path(json.loads(marker_path(d, url).read_text(
                    encoding="utf-8"))["path"]).name
            except (OSError, ValueError, KeyError, TypeError):
                continue
            if (d / name).is_file():  # beside its marker, wherever the output has moved
                found[url] = str(d / name)
                break
    return found


def _rank(clip_id: str) -> bytes:
    return hashlib.blake2b(clip_id.encode("utf-8", "surrogatepass"), digest_size=8).digest()


def sample_ids(ids: list[str], n: int) -> list[str]:
    """At most ``n`` of ``ids``: the same ones for the same ids on every call, in id order."""
    if len(ids) <= n:
        return sorted(ids)
    return sorted(sorted(ids, key=_rank)[:n])


def select_rows(table: pa.Table, ids: list[str]) -> list[dict[str, Any]]:
    """The rows of ``table`` whose ``clip_id`` is in ``ids`` (in ``ids`` order), as dicts with
    ``scores`` as a dict."""
    if not ids or not len(table):
        return []
    rows = table.filter(pc.is_in(table.column("clip_id"), pa.array(ids, pa.string()))).to_pylist()
    by_id = {r["clip_id"]: r for r in rows}
    out = []
    for i in ids:
        r = by_id.get(i)
        if r is not None:
            r["scores"] = dict(r.get("scores") or [])
            out.append(r)
    return out


def score_columns(table: pa.Table) -> dict[str, np.ndarray]:
    """Every score present in ``table``'s ``scores`` map: name -> values (rows lacking it are
    left out), computed without a Python object per row."""
    if not len(table):
        return {}
    col = table.column("scores").combine_chunks()
    if isinstance(col, pa.ChunkedArray):  # some pyarrow versions keep one chunk
        col = col.chunk(0) if col.num_chunks else pa.array([], col.type)
    keys = col.keys.dictionary_encode()
    codes = keys.indices.to_numpy(zero_copy_only=False)
    values = col.items.to_numpy(zero_copy_only=False).astype(np.float64)
    out: dict[str, np.ndarray] = {}
    for i, name in enumerate(keys.dictionary.to_pylist()):
        v = values[codes == i]
        out[name] = v[np.isfinite(v)]
    return dict(sorted(out.items()))
