"""Removing inputs from a dataset: every clip out of every shard, ledger updated, audit record.

This is the one code path behind ``clipfactory takedown``, ``revalidate --purge``, the
retroactive opt-out and policy checks of a run, and a run's input files replaced since they
were cut (:mod:`clipfactory.provenance.replaced`). Affected shards are rewritten atomically
(temp file, fsync, rename) without the removed samples, so not one byte of a removed clip is
left in any shard; staged clip files are deleted too, and so is every embedding of the
removed clips (the Parquet parts holding one are rewritten). Inputs removed for good (not
quarantined by a policy, not replaced on disk to be cut again) also lose the caption text of
their own record, and what was downloaded of their URL (a file kept by
``fetch.keep_sources``, a partial download kept for ``retry``) unless an input still in the
dataset reads the same URL. The order of the steps makes a crash at any point safe to repeat:
shards first, then clip records, then the audit record, and the input's state last (an input
not yet marked is matched and finished again next time).
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from clipfactory.fetch.base import sources_dirs, url_key
from clipfactory.fetch.router import needs_fetch
from clipfactory.ledger import Ledger, query_in
from clipfactory.provenance.recut import ORPHAN_REASON, mark_orphans
from clipfactory.records import ClipRecord
from clipfactory.redact import public_url, redact_text
from clipfactory.sinks.shards import rewrite_shard_without, shard_info
from clipfactory.stages.store import remove_embeddings

__all__ = ["AUDIT_LOG", "Removal", "ShardChange", "append_audit", "remove_inputs"]

AUDIT_LOG = "audit.jsonl"
_DERIVED_TEXT = ("caption", "caption_windows", "source_caption", "caption_status",
                 "caption_model")


@dataclass(frozen=True)
class ShardChange:
    """One shard rewritten by a removal: hashes and sizes before and after (``None`` after
    when nothing was left and the shard was deleted)."""

    name: str
    sha256_before: str | None
    bytes_before: int | None
    sha256_after: str | None
    bytes_after: int | None
    removed: int


@dataclass
class Removal:
    """The audit record of one removal."""

    kind: str  # takedown | opt_out | policy | revalidate | replaced
    reason: str
    at: float
    videos: list[dict[str, Any]] = field(default_factory=list)
    clips: list[str] = field(default_factory=list)
    shards: list[ShardChange] = field(default_factory=list)
    rules: list[str] = field(default_factory=list)
    embeddings: int = 0  # clip vectors purged from embeddings/ and the ledger
    orphans: list[str] = field(default_factory=list)  # duplicates of removed clips, to re-cut
    downloads: int = 0  # files of removed URLs deleted from the sources folder

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["at_iso"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.at))
        d["rules"] = [redact_text(r) for r in self.rules]  # a signed URL cited as given
        return d


def append_audit(out: str | Path, ledger: Ledger, kind: str, record: dict[str, Any]) -> None:
    """Append one record to the ledger's events and to ``OUT/audit.jsonl`` (fsynced)."""
    ledger.event(kind, record)
    with open(Path(out) / AUDIT_LOG, "a", encoding="utf-8") as fh:
        fh.write(json.dumps({"kind": kind, **record}, sort_keys=True) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def _rewrite(shard_dir: Path, shard: str, keys: set[str], ledger: Ledger) -> ShardChange:
    path = shard_dir / shard
    if not path.is_file():  # emptied and deleted by an interrupted earlier removal
        ledger.remove_shard(shard)
        return ShardChange(shard, None, None, None, None, len(keys))
    before = shard_info(path)
    info = rewrite_shard_without(path, keys)
    ledger.remove_shard(shard)
    if info is not None:  # the ledger's name is the path under shards/ (bucket/shard-N.tar)
        ledger.add_shards([(shard, info.sha256, info.bytes, info.count)], [])
    return ShardChange(shard, before.sha256, before.bytes, info.sha256 if info else None,
                       info.bytes if info else None, len(set(before.keys) & keys))


def _video_entry(row: Mapping[str, Any], why: str) -> dict[str, Any]:
    return {"item_key": row["item_key"], "source": public_url(row["source"]),
            "source_url": public_url(row["source_url"]), "video_id": row["video_id"],
            "source_sha256": row["source_sha256"], "matched": redact_text(why)}


def _purge_downloads(out: Path, ledger: Ledger, rows: Sequence[sqlite3.Row]) -> int:
    """Delete what was downloaded of the removed inputs' URLs: the complete file and its
    marker (kept by ``keep_sources``), the partial transfer and its JSON (kept for ``retry``).
    A URL that an input still in the dataset reads (another span of the same video) keeps its
    file. Every fetcher names its files by :func:`url_key` (``KEY.ext``, ``KEY.fetch.json``,
    ``.partial/KEY.part``, yt-dlp's ``.partial/KEY.ext.part``); returns the files deleted."""
    removed = {r["item_key"] for r in rows}
    urls = {r["source"] for r in rows if needs_fetch(r["source"])}
    kept = {r["source"] for r in query_in(
        ledger.db, "SELECT item_key, source FROM videos WHERE state != 'removed' AND source IN"
        " ({})", sorted(urls)) if r["item_key"] not in removed}
    cfg = ledger.get_meta("config") or {}
    dirs = sources_dirs(out, (cfg.get("fetch") or {}).get("sources_dir"))
    deleted = 0
    for url in sorted(urls - kept):
        key = url_key(url)  # hex digits: no glob metacharacters
        for d in dirs:
            for folder in (d, d / ".partial"):
                for p in folder.glob(f"{key}.*") if folder.is_dir() else ():
                    if p.is_file():
                        p.unlink(missing_ok=True)
                        deleted += 1
    return deleted


def _scrub_video_text(ledger: Ledger, keys: Sequence[str]) -> None:
    """Drop the caption text of the removed inputs' own records (a manifest's ``caption``
    in ``extra``, per-span captions in ``spans``); their spans and provenance stay."""
    with ledger.transaction() as db:
        for r in list(query_in(db, "SELECT item_key, extra, spans FROM videos WHERE item_key"
                                   " IN ({})", keys)):
            extra = json.loads(r["extra"] or "{}")
            spans = json.loads(r["spans"] or "null")
            if not any(k in extra for k in _DERIVED_TEXT) and not any(
                    len(sp) > 2 and sp[2] is not None for sp in spans or ()):
                continue
            for k in _DERIVED_TEXT:
                extra.pop(k, None)
            if spans:
                spans = [[*sp[:2], None] for sp in spans]
            db.execute("UPDATE videos SET extra = ?, spans = ? WHERE item_key = ?",
                       (json.dumps(extra), json.dumps(spans) if spans else None,
                        r["item_key"]))


def remove_inputs(out: str | Path, ledger: Ledger, rows: Sequence[sqlite3.Row],
                  matched: Mapping[str, str], *, kind: str, reason: str, state: str,
                  stage: str, codes: Mapping[str, str], rules: Sequence[str] = ()) -> Removal:
    """Remove the inputs of ``rows`` and everything derived from them.

    ``matched`` maps item keys to why each matched (a rule or a status); ``codes`` to the
    machine-readable reason recorded on the input and its clips (``opted_out:...``). Inputs go
    to ``state`` (``removed`` for takedowns, ``failed`` for a policy quarantine) with ``stage``.
    Returns the audit record, which has been appended already.
    """
    out = Path(out)
    removal = Removal(kind, reason, time.time(), rules=list(rules))
    keys = [r["item_key"] for r in rows]
    clips = ledger.clips_of(keys)
    by_shard: dict[str, set[str]] = {}
    for c in clips:
        if c.state == "sharded" and c.shard:
            by_shard.setdefault(c.shard, set()).add(c.key)
    for shard, shard_keys in sorted(by_shard.items()):
        removal.shards.append(_rewrite(out / "shards", shard, shard_keys, ledger))
    changed: list[ClipRecord] = []
    for c in clips:
        if c.staged_path:
            Path(c.staged_path).unlink(missing_ok=True)
        for k in _DERIVED_TEXT:  # captions go with the clip, in the ledger too
            c.extra.pop(k, None)
        if c.state in ("sharded", "staged", "candidate"):
            removal.clips.append(c.clip_id)
            c.drop(stage, codes[c.item_key])
            c.shard = c.staged_path = None
            changed.append(c)
        elif c.state == "dropped" and (c.stage, c.reason) == ("dedup", ORPHAN_REASON):
            # waiting to be cut again for an earlier removal of its keeper: its own input
            # goes now, so it is not cut again (nor listed as lost)
            c.drop(stage, codes[c.item_key])
            c.staged_path = None
            changed.append(c)
        elif c.state == "dropped" and (c.stage, c.reason) == (stage, codes[c.item_key]):
            # dropped by this removal's earlier attempt, killed before its audit record: the
            # record names it (an attempt killed after its record names it twice, not never)
            removal.clips.append(c.clip_id)
            c.staged_path = None
            changed.append(c)
        else:
            c.staged_path = None
            changed.append(c)
    ledger.update_clips(changed)
    # what the removed clips stood for as dedup keepers is cut again from the duplicates'
    # own sources by the next run (clipfactory.provenance.recut)
    removal.orphans = mark_orphans(ledger, removal.clips, keys)
    # every derived vector goes too, kept or dropped (a semantic duplicate still has one)
    removal.embeddings = remove_embeddings(out, ledger, [c.clip_id for c in clips])
    if state == "removed":  # gone for good (not a quarantine, not a file to cut again)
        _scrub_video_text(ledger, keys)
        removal.downloads = _purge_downloads(out, ledger, rows)
    removal.videos = [_video_entry(r, matched[r["item_key"]]) for r in rows]
    append_audit(out, ledger, kind, removal.to_dict())
    by_code: dict[str, list[str]] = {}
    for k in keys:
        by_code.setdefault(codes[k], []).append(k)
    for code, ks in by_code.items():
        ledger.set_video_state(ks, state, stage, code, reason)
    return removal
