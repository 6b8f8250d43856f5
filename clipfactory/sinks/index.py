"""Parquet outputs: ``index.parquet`` (one row per kept clip) and ``rejected.parquet`` (one row
per dropped clip or failed input). Both are written to a temporary name and renamed."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from clipfactory.atomic import replacing
from clipfactory.records import ClipRecord
from clipfactory.redact import public_url, redact_text

__all__ = ["INDEX_SCHEMA", "REJECTED_SCHEMA", "bucket_of", "clip_row", "index_table",
           "rejected_table", "write_index", "write_rejected"]

INDEX_SCHEMA = pa.schema([
    ("clip_id", pa.string()), ("video_id", pa.string()), ("source", pa.string()),
    ("source_url", pa.string()), ("source_sha256", pa.string()),
    ("start_frame", pa.int64()), ("end_frame", pa.int64()),
    ("start_s", pa.float64()), ("end_s", pa.float64()), ("duration_s", pa.float64()),
    ("num_frames", pa.int64()), ("fps", pa.float64()), ("width", pa.int32()),
    ("height", pa.int32()), ("license", pa.string()), ("attribution", pa.string()),
    ("license_raw", pa.string()), ("policy_decision", pa.string()),
    ("policy_reason", pa.string()), ("shard", pa.string()), ("bucket", pa.string()),
    ("key", pa.string()),
    ("bytes", pa.int64()),
    ("file_sha256", pa.string()), ("exact_hash", pa.string()),
    ("cut_method", pa.string()), ("video_codec", pa.string()), ("pix_fmt", pa.string()),
    ("sar", pa.string()), ("has_audio", pa.bool_()),
    ("camera_motion", pa.string()), ("category", pa.string()), ("caption", pa.string()), ("caption_status", pa.string()),
    ("caption_model", pa.string()),
    ("scores", pa.map_(pa.string(), pa.float64())), ("extra", pa.string()),
])

REJECTED_SCHEMA = pa.schema([
    ("kind", pa.string()), ("source", pa.string()), ("video_id", pa.string()),
    ("item_key", pa.string()), ("clip_id", pa.string()), ("stage", pa.string()),
    ("reason", pa.string()), ("detail", pa.string()), ("duplicate_of", pa.string()),
    ("start_frame", pa.int64()), ("end_frame", pa.int64()),
    ("start_s", pa.float64()), ("end_s", pa.float64()), ("camera_motion", pa.string()),
    ("scores", pa.map_(pa.string(), pa.float64())),
])


def _caption_columns(c: ClipRecord) -> dict[str, Any]:
    """A captioning model's caption, or the source manifest's (``caption_model: source``)."""
    caption, model = c.extra.get("caption"), c.extra.get("caption_model")
    status = c.extra.get("caption_status")
    if caption is not None and model is None:
        model, status = "source", status or "ok"
    return {"caption": caption, "caption_status": status, "caption_model": model}


def bucket_of(shard: str | None) -> str | None:
    """The bucket a shard name lies in (``720p_16x9/shard-000000.tar``), None when flat."""
    return shard.rpartition("/")[0] or None if shard else None


def clip_row(c: ClipRecord) -> dict[str, Any]:
    """The index row of a kept clip; also the content of its ``KEY.json`` in the shard."""
    cut = c.extra.get("cut") or {}
    return {
        "clip_id": c.clip_id, "video_id": c.video_id, "source": c.source,
        "source_url": c.source_url, "source_sha256": c.source_sha256,
        "start_frame": c.start_frame, "end_frame": c.end_frame,
        "start_s": c.start_s, "end_s": c.end_s, "duration_s": round(c.duration_s, 6),
        "num_frames": c.num_frames, "fps": c.fps, "width": c.width, "height": c.height,
        "license": c.license, "attribution": c.attribution, "license_raw": c.license_raw,
        "policy_decision": c.policy_decision, "policy_reason": c.policy_reason,
        "shard": c.shard, "bucket": bucket_of(c.shard), "key": c.key,
        "bytes": c.bytes, "file_sha256": c.file_sha256, "exact_hash": c.exact_hash,
        "cut_method": cut.get("method"), "video_codec": cut.get("codec"),
        "pix_fmt": cut.get("pix_fmt"), "sar": cut.get("sar"),
        "has_audio": cut.get("audio"), "camera_motion": c.extra.get("camera_motion"),
        "category": c.extra.get("category"),
        **_caption_columns(c),
        "scores": dict(c.scores), "extra": json.dumps(c.extra, sort_keys=True, default=str),
    }


def _write(table: pa.Table, path: Path) -> None:
    with replacing(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")


def _table(rows: list[dict[str, Any]], schema: pa.Schema) -> pa.Table:
    for r in rows:
        r["scores"] = list((r.get("scores") or {}).items())
    return pa.Table.from_pylist(rows, schema=schema)


def write_index(clips: Iterable[ClipRecord], path: str | Path) -> int:
    """Write ``index.parquet`` from the kept clips (sorted by shard, then key)."""
    table = index_table(clips)
    _write(table, Path(path))
    return table.num_rows


def rejected_table(dropped: Iterable[ClipRecord], failed: Iterable[sqlite3.Row]) -> pa.Table:
    """Rejected rows: failed inputs first (in the order given), then dropped clips."""
    rows: list[dict[str, Any]] = [
        {"kind": "video", "source": public_url(v["source"]), "video_id": v["video_id"],
         "item_key": v["item_key"], "clip_id": None, "stage": v["stage"],
         "reason": v["reason"], "detail": redact_text(v["detail"]), "duplicate_of": None,
         "start_frame": None, "end_frame": None, "start_s": v["start_s"], "end_s": v["end_s"],
         "camera_motion": None, "scores": {}} for v in failed]
    rows += [
        {"kind": "clip", "source": c.source, "video_id": c.video_id, "item_key": c.item_key,
         "clip_id": c.clip_id, "stage": c.stage, "reason": c.reason,
         "detail": c.extra.get("cut_error"), "duplicate_of": c.duplicate_of,
         "start_frame": c.start_frame, "end_frame": c.end_frame, "start_s": c.start_s,
         "end_s": c.end_s, "camera_motion": c.extra.get("camera_motion"),
         "scores": dict(c.scores)} for c in dropped]
    return _table(rows, REJECTED_SCHEMA)


def index_table(clips: Iterable[ClipRecord]) -> pa.Table:
    """Index rows of kept clips, sorted by shard, then key."""
    rows = sorted((clip_row(c) for c in clips), key=lambda r: (r["shard"] or "", r["key"]))
    return _table(rows, INDEX_SCHEMA)


def write_rejected(dropped: Iterable[ClipRecord], failed: Iterable[sqlite3.Row],
                   path: str | Path) -> int:
    """Write ``rejected.parquet``: failed inputs first (input order), then dropped clips."""
    table = rejected_table(dropped, failed)
    _write(table, Path(path))
    return table.num_rows
