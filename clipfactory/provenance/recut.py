"""Duplicates of a removed clip come back: cut again from their own sources, or listed as lost.

Dedup keeps one clip of a group and drops the others as its duplicates, deleting their files.
When the kept clip is later removed (a takedown, an opt-out, a consent refusal found by
``revalidate``), the content it stood for would silently leave the dataset with it, although
other sources that were never taken down hold it too. So a removal marks the dropped
duplicates of every clip it removes (``dedup/keeper_removed``; the removal's audit record
lists them as its ``orphans``, while the clips themselves never name the removed keeper, whose
id holds the removed video's), and the next ``clipfactory run`` cuts them again from their
sources:

- a local source must still be there with the SHA-256 it had; a remote one is fetched again,
  through the same politeness, safety and consent checks as any fetch;
- the span is re-encoded frame-exactly (the analysis pass's frame timestamps are not kept, so
  nothing is stream-copied; ``keyframe`` mode cuts in ``exact`` mode here), then the clip is
  staged like a new one, and finalize dedups and shards it as usual;
- a clip whose source is gone, changed or cannot be cut is dropped as ``recut/<why>`` with the
  detail in ``extra.recut_error``: listed as lost in ``rejected.parquet`` and the card.

A run killed half-way simply cuts the remaining ones again next time.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from clipfactory.config import Config
from clipfactory.errors import MediaError
from clipfactory.ids import short_hash
from clipfactory.ledger import Ledger, query_in
from clipfactory.records import ClipRecord, SourceItem, Span

__all__ = ["ORPHAN_REASON", "mark_orphans", "recut_orphans"]

log = logging.getLogger("clipfactory")
ORPHAN_REASON = "keeper_removed"


def mark_orphans(ledger: Ledger, removed_clip_ids: Iterable[str],
                 removed_items: Iterable[str] = ()) -> list[str]:
    """Mark the dropped duplicates of ``removed_clip_ids`` for a re-cut; returns their ids.
    Duplicates that are clips of ``removed_items`` (the inputs being removed) are not: they
    go with their input. Neither are those an earlier removal marked and this one removes."""
    ids = list(dict.fromkeys(removed_clip_ids))
    gone = set(removed_items)
    orphans = [ledger._clip(r) for r in query_in(
        ledger.db, "SELECT record, state, stage, reason, shard FROM clips WHERE state ="
        " 'dropped' AND stage = 'dedup' AND json_extract(record, '$.duplicate_of') IN ({})",
        ids)]
    removed = set(ids)
    orphans = [c for c in orphans if c.clip_id not in removed and c.item_key not in gone]
    for c in orphans:
        c.reason, c.duplicate_of = ORPHAN_REASON, None
    ledger.update_clips(orphans)
    return [c.clip_id for c in orphans]


def _waiting(ledger: Ledger) -> list[ClipRecord]:
    rows = ledger.db.execute(
        "SELECT record, state, stage, reason, shard FROM clips WHERE state = 'dropped' AND"
        " stage = 'dedup' AND reason = ? ORDER BY clip_id", (ORPHAN_REASON,))
    return [ledger._clip(r) for r in rows]


def _lose(clip: ClipRecord, why: str, detail: str) -> None:
    clip.drop("recut", why)
    clip.extra["recut_error"] = detail


def _cut_from(path: str, row: Any, clips: list[ClipRecord], out: Path, cfg: Config) -> None:
    from clipfactory.media.cut import cut_clips
    from clipfactory.worker import cut_info, file_sha256, stage_clip

    if row["source_sha256"] and file_sha256(path) != row["source_sha256"]:
        for c in clips:
            _lose(c, "source_changed", f"{row['source']} no longer has SHA-256 "
                  f"{row['source_sha256']}")
        return
    info = json.loads(row["info"] or "{}")
    folder = out / "staging" / f"recut_{short_hash(row['item_key'], 12)}"
    folder.mkdir(parents=True, exist_ok=True)
    cut_cfg = cfg.cut if cfg.cut.mode != "keyframe" else cfg.cut.model_copy(
        update={"mode": "exact"})
    try:
        results = cut_clips(path, [Span(c.start_frame, c.end_frame) for c in clips],
                            [str(folder / f"{c.key}.mp4") for c in clips], frame_pts=None,
                            rotation=int(info.get("rotation") or 0), cfg=cut_cfg)
    except MediaError as e:
        for c in clips:
            _lose(c, "cut_failed", str(e))
        return
    for c, res in zip(clips, results, strict=True):
        if res.error:
            _lose(c, "cut_failed", res.error)
            continue
        c.extra["cut"] = cut_info(res)
        stage_clip(c, res)
        c.stage, c.reason = None, None
        c.extra["recut"] = {"after": f"dedup/{ORPHAN_REASON}",
                            "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def recut_orphans(out: str | Path, cfg: Config, ledger: Ledger) -> dict[str, int]:
    """Cut the marked duplicates again (module docstring); returns counts by outcome."""
    from clipfactory.fetch.base import sources_dir
    from clipfactory.fetch.prefetch import FetchFailure, Prefetcher
    from clipfactory.fetch.router import needs_fetch

    out = Path(out)
    clips = _waiting(ledger)
    if not clips:
        return {}
    by_item: dict[str, list[ClipRecord]] = {}
    for c in clips:
        by_item.setdefault(c.item_key, []).append(c)
    rows = {r["item_key"]: r for r in ledger.videos() if r["item_key"] in by_item}
    remote: list[SourceItem] = []
    for key, cs in by_item.items():
        row = rows.get(key)
        if row is None or row["state"] != "done":
            for c in cs:
                _lose(c, "source_unavailable", f"its input is {row['state'] if row else '?'}")
        elif needs_fetch(row["source"]):
            remote.append(SourceItem(item_key=key, source=row["source"],
                                     source_url=row["source_url"]))
        elif Path(row["source"]).is_file():
            _cut_from(row["source"], row, cs, out, cfg)
        else:
            for c in cs:
                _lose(c, "source_unavailable", f"{row['source']} is not there any more")
    if remote:
        pre = Prefetcher(cfg.fetch, sources_dir(out, cfg.fetch.sources_dir),
                         consent=cfg.policy.consent)
        failed: list[FetchFailure] = []
        try:
            for item in pre.items(remote, on_failure=failed.append):
                _cut_from(item.local_path or item.source, rows[item.item_key],
                          by_item[item.item_key], out, cfg)
                pre.release(item)
        finally:
            pre.close()
        for f in failed:
            for c in by_item[f.item.item_key]:
                _lose(c, "source_unavailable", f"{f.error.stage}/{f.error.reason}: "
                      f"{f.error.detail}")
    from clipfactory.stages.store import ensure_schema

    ensure_schema(ledger)
    back = [c.clip_id for c in clips if c.state == "staged"]
    with ledger.transaction() as db:
        ledger.write_clips(db, clips)
        # a clip cut again is new to semantic dedup: its vector (of the same frames) keeps,
        # but its cluster is decided afresh against what is kept now. With the cluster of
        # the time it was dropped, it was never compared again, and near-copies came back
        list(query_in(db, "UPDATE embeddings SET cluster = NULL, nn_sim = NULL"
                      " WHERE clip_id IN ({})", back))
    counts: dict[str, int] = {}
    for c in clips:
        k = "recut" if c.state == "staged" else f"lost:{c.reason}"
        counts[k] = counts.get(k, 0) + 1
    log.info("duplicates of removed clips: %s", ", ".join(f"{n} {k}" for k, n in
                                                          sorted(counts.items())))
    return counts
