"""The global steps of a run, on records only: dedup, shards, index parts, summary, card, report.

Each step costs what the run added, not what the dataset holds (docs/scale.md):

- dedup: the new (staged) clips against the persistent index (:mod:`clipfactory.dedup.store`);
- shards: only the new clips are packed; a dedup drop rewrites only the shards it touches;
- index: one Parquet part per shard, rewritten only when its shard changed; rejected parts
  per range of inputs, rewritten only when marked dirty (:mod:`clipfactory.sinks.partition`);
- summary and card: counts from the ledger's tally, everything else merged from per-shard
  statistics; ``index.parquet`` and ``rejected.parquet`` are compacted from the parts while
  the dataset is small (``shards.compact_max_clips``) and on demand (``clipfactory compact``).

Every output file is derived from the ledger and written atomically, so ``finalize`` can run
again at any time, and a run killed inside it loses nothing.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from clipfactory import __version__
from clipfactory.atomic import write_atomic
from clipfactory.config import Config
from clipfactory.consent.store import consent_summary
from clipfactory.dedup import DedupItem, Duplicate
from clipfactory.dedup.store import DedupStore, incremental_duplicates
from clipfactory.ledger import Ledger
from clipfactory.media.stagetime import PhaseClock
from clipfactory.policy.report import license_counts, policy_summary, unknown_license_clips
from clipfactory.records import ClipRecord
from clipfactory.report import report_after_finalize
from clipfactory.sinks.card import write_card
from clipfactory.sinks.layout import (
    locate_staged,
    prune_staging_dirs,
    remove_orphan_shards,
    remove_orphan_staged,
    remove_staged_files,
    write_staged_shards,
)
from clipfactory.sinks.partition import (
    compact,
    compacted,
    file_stale,
    merged_stats,
    refresh_parts,
)
from clipfactory.sinks.ray_parts import parts_mapper
from clipfactory.sinks.refresh import refresh_shards, refresh_stale_shards
from clipfactory.sinks.stats import kept_stats, merge_stats
from clipfactory.stages.store import annotation_summary, ensure_schema, mark_stale

__all__ = ["finalize", "full_rededup"]

log = logging.getLogger("clipfactory")


def finalize(out: str | Path, cfg: Config, ledger: Ledger,
             stats: dict[str, Any] | None = None, *,
             phases: PhaseClock | None = None) -> dict[str, Any]:
    """Dedup and shard the new clips; bring index parts, summary, card and report up to date.
    ``phases``: the run's driver clock, charged per step (``clipfactory bench``)."""
    t0 = time.perf_counter()
    phases = phases or PhaseClock(enabled=False)
    out = Path(out)
    shard_dir = out / "shards"
    shard_dir.mkdir(exist_ok=True)
    remove_orphan_shards(shard_dir, ledger)
    staged = _check_staged(ledger, out / "staging")
    remove_orphan_staged(out / "staging", ledger, staged)
    store = DedupStore(ledger)
    if cfg.dedup_on:
        _dedup(staged, ledger, cfg, shard_dir, store)
        staged = ledger.clips("staged")
    else:
        store.invalidate()  # clips kept now bypass the index: rebuild it when dedup is back on
    phases.lap("dedup")
    _write_shards(staged, ledger, cfg, shard_dir)
    refresh_stale_shards(ledger, shard_dir)  # annotations that came after the clip was sharded
    phases.lap("shards")
    parts = refresh_parts(out, ledger, kept_stats, map_parts=parts_mapper(cfg))  # Ray: tasks
    counts = ledger.counts()
    files = _compact(out, cfg, counts, ledger)
    phases.lap("index")
    if stats and stats["videos"]:
        ledger.set_meta("throughput", stats)
    kept = merged_stats(ledger, merge_stats)
    summary = {
        "version": __version__,
        "counts": counts,
        "shards": [dict(s) for s in ledger.shards()],
        "index": {"parts": "index/", "rejected_parts": "rejected/", **files},
        "throughput": ledger.get_meta("throughput", {}),
        "unknown_license_clips": unknown_license_clips(kept),
        "licenses": license_counts(kept),
        "policy": policy_summary(cfg.policy),
        "consent": consent_summary(ledger, cfg.policy.consent),
        **annotation_summary(ledger, kept, cfg),
    }
    if ledger.get_meta("config_changes"):  # runs with other settings than the last one's
        summary["config_changes"] = ledger.get_meta("config_changes")
    if ledger.get_meta("mix"):  # a dataset written by `clipfactory mix`
        summary["mix"] = ledger.get_meta("mix")
    write_atomic(out / "summary.json", json.dumps(summary, indent=2))
    write_card(out / "README.md", summary, kept, cfg.to_yaml())
    phases.lap("summary")
    report_after_finalize(out)  # report.html: a failure is logged, never raised
    phases.lap("report")
    log.info("finalize: %.2f s (%d new index parts, %d rejected parts)",
             time.perf_counter() - t0, parts.index_written, parts.rejected_written)
    return summary


def _compact(out: Path, cfg: Config, counts: dict[str, Any], ledger: Ledger) -> dict[str, Any]:
    """Keep ``index.parquet``/``rejected.parquet`` compacted while the dataset is small; above
    ``shards.compact_max_clips`` a stale one is removed rather than left behind (a takedown
    must not survive in it) and ``clipfactory compact`` writes it on demand."""
    c, v = counts["clips"], counts["videos"]
    sizes = {"index": c["kept"], "rejected": c["dropped"] + v["failed"] + v["removed"]}
    out_files: dict[str, Any] = {}
    for which in ("index", "rejected"):
        path = out / f"{which}.parquet"
        stale = file_stale(ledger, which)
        if sizes[which] <= cfg.shards.compact_max_clips:
            if stale or not path.is_file():
                compact(out, which)
        elif stale and path.is_file():
            path.unlink()
            log.warning("%s.parquet removed: %d rows is above shards.compact_max_clips; read "
                        "%s/ or run `clipfactory compact`", which, sizes[which], which)
        compacted(ledger, which)
        out_files[f"{which}_file"] = path.name if path.is_file() else None
    return out_files


def _check_staged(ledger: Ledger, staging: Path) -> list[ClipRecord]:
    """The staged clips whose files are there (found at their place in ``staging`` when the
    recorded path misses them); the rest are dropped as ``staged_file_missing``."""
    staged, changed = [], []
    for c in ledger.clips("staged"):
        before = c.staged_path
        if locate_staged(c, staging):
            staged.append(c)
            if c.staged_path != before:
                changed.append(c)
        else:
            c.drop("finalize", "staged_file_missing")
            changed.append(c)
    if changed:
        ledger.update_clips(changed)
    return staged


def _item(c: ClipRecord) -> DedupItem:
    return DedupItem(c.clip_id, c.exact_hash, tuple(c.phash), c.width, c.height, c.num_frames)


def _dedup(staged: list[ClipRecord], ledger: Ledger, cfg: Config, shard_dir: Path,
           store: DedupStore) -> None:
    """The new clips against the persistent index, then (when on) semantic dedup."""
    if not store.ready(cfg.dedup):
        store.rebuild(cfg.dedup)  # a new output, one from before the index, or dedup was off
    indexed = store.indexed(c.clip_id for c in staged)  # kept by a finalize killed later on
    new = [c for c in staged if c.clip_id not in indexed]
    dstats: dict[str, Any] = {}
    dups = incremental_duplicates(store, [_item(c) for c in new], cfg.dedup, dstats)
    _drop_duplicates(dups, ledger, shard_dir, {c.clip_id: c for c in new})
    gone = {d.clip_id for d in dups}
    store.add(_item(c) for c in new if c.clip_id not in gone)
    if new:
        log.info("dedup: %d new clips against %d candidates: %d duplicates", len(new),
                 dstats.get("candidates", 0), len(dups))
    if cfg.dedup.semantic:  # over what exact and near dedup kept, from the stored vectors
        from clipfactory.dedup.semantic_index import semantic_duplicates

        _drop_duplicates(semantic_duplicates(ledger, cfg.dedup), ledger, shard_dir, {})


def full_rededup(out: str | Path, cfg: Config, ledger: Ledger) -> dict[str, Any]:
    """Rebuild the dedup index from every kept clip and dedup the whole dataset again (the
    explicit, O(dataset) command: ``clipfactory dedup --full``); then finalize.

    With ``executor: ray`` the near-duplicate LSH tables run as Ray tasks and the driver
    merges their pairs; the connection stays open through the finalize (index parts)."""
    from clipfactory.dedup import find_duplicates
    from clipfactory.dedup.ray_dedup import near_groups_for

    out = Path(out)
    store = DedupStore(ledger)
    store.rebuild(cfg.dedup)
    items = store.all_items() + [_item(c) for c in _check_staged(ledger, out / "staging")]
    with near_groups_for(cfg) as near:
        dups = find_duplicates(items, cfg.dedup, near=near)
        _drop_duplicates(dups, ledger, out / "shards", {})
        summary = finalize(out, cfg, ledger)
    summary["rededup"] = {"clips": len(items), "removed": len(dups)}
    return summary


def _drop_duplicates(dups: list[Duplicate], ledger: Ledger, shard_dir: Path,
                     known: dict[str, ClipRecord]) -> None:
    if not dups:
        return
    missing = [d.clip_id for d in dups if d.clip_id not in known]
    by_id = {**known, **{c.clip_id: c for c in ledger.clips_by_id(missing)}}
    removed_from: set[str] = set()  # the shards that held dropped clips
    changed, unstaged = [], []
    for d in dups:
        c = by_id[d.clip_id]
        if c.state == "sharded" and c.shard:
            removed_from.add(c.shard)
        elif c.staged_path:
            unstaged.append(c.staged_path)
        c.drop("dedup", d.reason)
        c.duplicate_of = d.kept
        c.scores["dedup.distance"] = float(d.distance)
        c.shard, c.staged_path = None, None
        changed.append(c)
    # the drops first, with their shards marked stale in the same commit: a kill before a
    # shard is rewritten leaves it stale, and the next finalize (a run's, or this command's
    # again) rewrites it to the ledger's clips (refresh_stale_shards). The other order left
    # shards without clips the ledger still listed, which only `dedup --full` again mended.
    ensure_schema(ledger)
    with ledger.transaction() as db:
        ledger.write_clips(db, changed)
        mark_stale(db, removed_from)
    # each shard rewritten whole to the ledger's clips: without the dropped samples, and with
    # the current metadata of those it keeps (a correction or an annotation may have marked
    # it stale too; clearing its mark with only the drops applied left that out for good)
    refresh_shards(ledger, shard_dir, sorted(removed_from))
    remove_staged_files(unstaged)  # after the drops are recorded: a kill leaves files, not clips
    log.info("dedup removed %d clips (%s)", len(dups), ", ".join(sorted({d.reason for d in dups})))


def _write_shards(staged: list[ClipRecord], ledger: Ledger, cfg: Config, shard_dir: Path) -> None:
    """Pack staged clips into new shards (flat or bucketed: :mod:`clipfactory.sinks.layout`)."""
    def done(paths: list[str]) -> None:
        if not cfg.shards.keep_staging:
            remove_staged_files(paths)

    written = write_staged_shards(staged, ledger, cfg, shard_dir, after_shard=done)
    if written and not cfg.shards.keep_staging:  # once: a walk over staging/ per shard cost
        prune_staging_dirs(shard_dir.parent / "staging")  # 0.38 s at 10,000 video folders


