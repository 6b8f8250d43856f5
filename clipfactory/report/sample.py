"""Which clips the report shows, and where each one's thumbnail comes from.

Counts are taken over every row (from ``summary.json`` when the rows read are a sample of the
parts, :mod:`clipfactory.report.rows`); the clips shown are a deterministic sample
(:func:`clipfactory.report.data.sample_ids`): at most ``per_reason`` per drop reason,
``kept`` kept clips and ``groups`` dedup groups of at most ``per_group`` removed members each,
so the page and the thumbnail work stay bounded however large the dataset is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from clipfactory.report.data import (
    ReportData,
    kept_downloads,
    sample_ids,
    select_rows,
    video_facts,
)
from clipfactory.report.rows import kept_rows
from clipfactory.report.thumbs import ThumbRequest, span_times

__all__ = ["NO_PICTURE_STAGES", "DedupGroup", "Samples", "choose_samples", "reason_column",
           "thumb_requests"]

# clips of sources that were taken down or quarantined by the license policy: the report
# keeps no picture of them (and prunes any it made before)
NO_PICTURE_STAGES = frozenset({"takedown", "policy", "consent"})


@dataclass
class DedupGroup:
    """A kept clip (``keeper``: its index row, ``None`` when it is no longer in the dataset)
    and a sample of the clips dropped as its duplicates (``total`` of them in all)."""

    keeper_id: str
    keeper: dict[str, Any] | None
    removed: list[dict[str, Any]]
    total: int
    missing: str = "no longer in the dataset"  # why ``keeper`` is None


@dataclass
class Samples:
    """The rows the report shows, per part of the page."""

    by_reason: dict[str, tuple[int, list[dict[str, Any]]]] = field(default_factory=dict)
    kept: list[dict[str, Any]] = field(default_factory=list)
    groups: list[DedupGroup] = field(default_factory=list)
    group_total: int = 0
    sampled: bool = False  # the rejected rows are a sample: group_total counts within it


def reason_column(table: pa.Table) -> pa.Array:
    """``stage/reason`` of each row (``?`` for a missing part), as the ledger counts them."""
    stage = pc.fill_null(table.column("stage"), "?")
    reason = pc.fill_null(table.column("reason"), "?")
    return pc.binary_join_element_wise(stage, reason, "/").combine_chunks() if len(table) \
        else pa.array([], pa.string())


def _counts(values: pa.Array) -> list[tuple[str, int]]:
    vc = pc.value_counts(values).to_pylist() if len(values) else []
    return sorted(((d["values"], d["counts"]) for d in vc), key=lambda kv: (-kv[1], kv[0]))


def choose_samples(data: ReportData, *, per_reason: int = 8, kept: int = 24, groups: int = 8,
                   per_group: int = 4) -> Samples:
    """Pick what to show (see the module docstring)."""
    s = Samples(sampled=data.rejected_sample is not None)
    clips = data.clips
    reasons = reason_column(clips)
    counts = dict(_counts(reasons))
    totals = dict(counts)
    if s.sampled:  # every reason of the dataset, with its count, however few rows were read
        totals = data.summary.get("counts", {}).get("dropped_by_reason") or totals
        totals = {**{r: n for r, n in counts.items() if r not in totals}, **totals}
    for reason, n in sorted(totals.items(), key=lambda kv: (-kv[1], kv[0])):
        ids = (clips.filter(pc.equal(reasons, reason)).column("clip_id").to_pylist()
               if reason in counts else [])
        s.by_reason[reason] = (n, select_rows(clips, sample_ids([i for i in ids if i], per_reason)))
    s.kept = select_rows(data.index, sample_ids(data.index.column("clip_id").to_pylist(), kept))
    dup = clips.filter(pc.is_valid(clips.column("duplicate_of")))
    by_keeper: dict[str, list[str]] = {}
    for cid, keeper in zip(dup.column("clip_id").to_pylist(),
                           dup.column("duplicate_of").to_pylist(), strict=True):
        by_keeper.setdefault(keeper, []).append(cid)
    s.group_total = len(by_keeper)
    chosen = sample_ids(list(by_keeper), groups)
    keepers = {r["clip_id"]: r for r in select_rows(data.index, chosen)}
    missing, why = [k for k in chosen if k not in keepers], "no longer in the dataset"
    if missing and data.kept_sample is not None:  # in a part that was not read, likely
        found = kept_rows(data.out, missing, data.index.schema)
        if found is None:
            why = "not among the sampled index rows"
        else:
            keepers.update((r["clip_id"], r) for r in select_rows(found, missing))
    for k in chosen:
        members = by_keeper[k]
        s.groups.append(DedupGroup(k, keepers.get(k),
                                   select_rows(dup, sample_ids(members, per_group)), len(members),
                                   why))
    return s


def _resolve_shard(out: Path, shard: str, found: dict[str, list[Path]]) -> Path | None:
    """The shard file an index row names: its path under ``shards/`` (flat or bucketed), else
    the one file of that name anywhere under ``shards/``."""
    direct = out / "shards" / shard
    if direct.is_file():
        return direct
    if not found:
        for p in (out / "shards").rglob("*.tar"):
            found.setdefault(p.name, []).append(p)
    hits = found.get(Path(shard).name, [])
    return hits[0] if len(hits) == 1 else None


def _kept_request(out: Path, r: dict[str, Any], found: dict[str, list[Path]]) -> ThumbRequest:
    n = max(1, int(r["num_frames"] or (r["end_frame"] - r["start_frame"])))
    fps = float(r["fps"] or 0) or n / max(1e-9, float(r["duration_s"] or 1))
    times = span_times(0.0, 0, n, n / fps)
    shard = _resolve_shard(out, r["shard"], found) if r.get("shard") else None
    if shard is None:
        return ThumbRequest(r["clip_id"], None, times, unavailable="shard gone")
    return ThumbRequest(r["clip_id"], str(shard), times, member=f"{r['key']}.mp4",
                        version=r.get("file_sha256") or "")


def _dropped_request(r: dict[str, Any], facts: dict[str, tuple[int, str]], removed: set[str],
                     kept_copies: dict[str, str]) -> ThumbRequest:
    cid, src = r["clip_id"], r["source"] or ""
    times = span_times(float(r["start_s"] or 0), int(r["start_frame"] or 0),
                       int(r["end_frame"] or 0), float(r["end_s"] or 0))
    if (r.get("stage") or "") in NO_PICTURE_STAGES or r.get("item_key") in removed:
        return ThumbRequest(cid, None, times, unavailable="source removed: no picture kept")
    if "://" in src and src in kept_copies:  # fetch.keep_sources kept the download
        src = kept_copies[src]
    elif "://" in src:
        return ThumbRequest(cid, None, times,
                            unavailable="source gone (remote; the fetched copy was deleted)")
    if not Path(src).is_file():
        return ThumbRequest(cid, None, times, unavailable="source gone")
    rotation, sha = facts.get(r["item_key"], (0, ""))
    return ThumbRequest(cid, src, times, rotation=rotation, version=sha)


def thumb_requests(data: ReportData, s: Samples) -> list[ThumbRequest]:
    """One request per clip shown: kept clips from their shard member, dropped clips from
    their source's span."""
    kept = {r["clip_id"]: r for r in s.kept}
    kept.update((g.keeper_id, g.keeper) for g in s.groups if g.keeper is not None)
    dropped = {r["clip_id"]: r for _, rows in s.by_reason.values() for r in rows}
    dropped.update((r["clip_id"], r) for g in s.groups for r in g.removed)
    facts = video_facts(data.out, sorted({r["item_key"] for r in dropped.values()
                                          if r.get("item_key")}))
    # a clip dropped before its source was taken down keeps its old reason: its input says
    removed = {k for k, stage in zip(data.videos.column("item_key").to_pylist(),
                                     data.videos.column("stage").to_pylist(), strict=True)
               if stage in NO_PICTURE_STAGES}
    found: dict[str, list[Path]] = {}
    reqs = [_kept_request(data.out, r, found) for r in kept.values()]
    copies = kept_downloads(data.out, sorted({r["source"] for r in dropped.values()
                                              if "://" in (r["source"] or "")}))
    reqs += [_dropped_request(r, facts, removed, copies) for cid, r in dropped.items()
             if cid not in kept]
    return reqs
