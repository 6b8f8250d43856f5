"""Mergeable statistics of kept clips: everything the summary, the card and the report say
about the clips themselves, without holding the clips.

A dataset of 10^8 clips cannot be loaded to be described. Instead each shard's clips are
counted once, when the shard's index part is written (:func:`kept_stats`); the small JSON
result is kept, and finalize merges the parts of every shard (:func:`merge_stats`). Every
field is a sum, a union or a minimum, so merging the statistics of disjoint sets of clips
gives the statistics of their union (``merge_stats([kept_stats(a), kept_stats(b)]) ==
kept_stats(a + b)``), except two fields that are bounded on purpose:

- ``licenses[L]["videos"]``: distinct videos. Exact while the merged ids number at most
  ``video_id_cap`` (``video_ids`` holds them); beyond, ``video_ids`` is None and the parts'
  counts are added, an upper bound: a video whose clips lie in several shards counts in each.
- ``licenses[L]["credits"]``: one credit per source video (title, author, where, clips), at
  most ``credit_cap`` of them, those with the most clips; ``credits_trimmed`` says some were
  left out. Clips not covered by a listed credit are ``clips`` minus the credits' clips.

Keys of the result (``version`` first): ``clips``, ``duration_us`` (integer microseconds: sums
are exact in any order), ``bytes``, ``licenses``, ``codecs`` (codec -> pixel format -> clips),
``sizes`` (``WxH``), ``cut_methods``, ``audio``, ``buckets`` (bucket -> clips and shard names),
``caption_models``, ``caption_status``, ``categories``, ``camera_motion``, ``score_names``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from clipfactory.policy.licenses import MISSING
from clipfactory.records import ClipRecord
from clipfactory.sinks.index import _caption_columns, bucket_of

__all__ = ["CREDIT_CAP", "STATS_VERSION", "VIDEO_ID_CAP", "as_stats", "kept_stats",
           "merge_stats"]

STATS_VERSION = 1  # stored stats of another version are recomputed, never merged
CREDIT_CAP = 1000  # credit lines per license in a result
VIDEO_ID_CAP = 100_000  # video ids per license kept for an exact distinct count
_SLACK = 4  # credits held while merging before trimming: counts stay exact across neighbours
_COUNTERS = ("sizes", "cut_methods", "audio", "caption_models", "caption_status", "categories",
             "camera_motion")


@dataclass
class _License:
    clips: int = 0
    duration_us: int = 0
    ids: set[str] | None = field(default_factory=set)  # None once the count is an upper bound
    extra: int = 0  # videos counted without their ids (an upper bound)
    credits: dict[str, dict[str, Any]] = field(default_factory=dict)
    trimmed: bool = False

    def add_videos(self, ids: Iterable[str] | None, n: int, cap: int) -> None:
        if self.ids is not None and ids is not None:
            self.ids.update(ids)
            if len(self.ids) > cap:
                self.extra, self.ids = len(self.ids), None
            return
        if self.ids is not None:
            self.extra, self.ids = len(self.ids), None
        self.extra += n

    def add_credit(self, video_id: str, entry: Mapping[str, Any], cap: int) -> None:
        have = self.credits.get(video_id)
        if have is None:
            self.credits[video_id] = dict(entry)
        else:  # the credit of a video is its first clip's (the card's order is by clip id)
            n = have["clips"] + entry["clips"]
            if entry["first"] < have["first"]:
                have.update(entry)
            have["clips"] = n
        if len(self.credits) > _SLACK * cap:
            self.trim(cap)

    def trim(self, cap: int) -> None:
        if len(self.credits) > cap:
            top = sorted(self.credits.items(), key=lambda kv: (-kv[1]["clips"], kv[1]["first"]))
            self.credits = dict(top[:cap])
            self.trimmed = True

    def result(self, credit_cap: int, video_id_cap: int) -> dict[str, Any]:
        self.trim(credit_cap)
        # listed by first clip id (the order of the unsharded card); when trimmed, largest first
        key = ((lambda kv: (-kv[1]["clips"], kv[1]["first"])) if self.trimmed
               else (lambda kv: kv[1]["first"]))
        exact = self.ids is not None and len(self.ids) <= video_id_cap
        return {"clips": self.clips, "duration_us": self.duration_us,
                "videos": len(self.ids) + self.extra if self.ids is not None else self.extra,
                "video_ids": sorted(self.ids) if exact and self.ids is not None else None,
                "credits": dict(sorted(self.credits.items(), key=key)),
                "credits_trimmed": self.trimmed}


class _Acc:
    """The running statistics, fed clips (:func:`kept_stats`) or results (:func:`merge_stats`)."""

    def __init__(self, credit_cap: int, video_id_cap: int) -> None:
        self.credit_cap, self.video_id_cap = credit_cap, video_id_cap
        self.clips = self.duration_us = self.bytes = 0
        self.licenses: dict[str, _License] = {}
        self.codecs: dict[str, dict[str, int]] = {}
        self.counters: dict[str, dict[str, int]] = {k: {} for k in _COUNTERS}
        self.buckets: dict[str, tuple[list[int], set[str]]] = {}  # clips (boxed), shard names
        self.score_names: set[str] = set()

    def _count(self, name: str, key: str | None, n: int = 1) -> None:
        if key:
            c = self.counters[name]
            c[key] = c.get(key, 0) + n

    def add_clip(self, c: ClipRecord) -> None:
        us = round(c.duration_s * 1e6)
        self.clips += 1
        self.duration_us += us
        self.bytes += c.bytes
        lic = self.licenses.setdefault(c.license or MISSING, _License())
        lic.clips += 1
        lic.duration_us += us
        if lic.ids is not None:  # always, from clips: only merging makes it an upper bound
            lic.ids.add(c.video_id)
        lic.add_credit(c.video_id, {
            "first": c.clip_id, "title": c.extra.get("title"), "author": c.attribution,
            "where": c.source_url or os.path.basename(c.source), "clips": 1}, self.credit_cap)
        cut = c.extra.get("cut") or {}
        pix = self.codecs.setdefault(cut.get("codec") or "unknown", {})
        fmt = cut.get("pix_fmt") or "unknown"
        pix[fmt] = pix.get(fmt, 0) + 1
        sar = f" (SAR {cut['sar']})" if cut.get("sar") else ""  # anamorphic: shown wider
        self._count("sizes", f"{c.width}x{c.height}{sar}")
        self._count("cut_methods", cut.get("method") or "unknown")
        self._count("audio", "with audio" if cut.get("audio") else "no audio")
        bucket = bucket_of(c.shard)
        if bucket:
            clips, shards = self.buckets.setdefault(bucket, ([0], set()))
            clips[0] += 1
            shards.add(c.shard or "")
        self._count("caption_models", _caption_columns(c)["caption_model"])
        self._count("caption_status", c.extra.get("caption_status")
                    or ("source" if c.extra.get("caption") else None))
        self._count("categories", c.extra.get("category"))
        self._count("camera_motion", c.extra.get("camera_motion"))
        self.score_names.update(c.scores)

    def add_stats(self, s: Mapping[str, Any]) -> None:
        if s.get("version") != STATS_VERSION:
            raise ValueError(f"kept stats of version {s.get('version')!r}, not "
                             f"{STATS_VERSION}: recompute them from the index part")
        self.clips += s["clips"]
        self.duration_us += s["duration_us"]
        self.bytes += s["bytes"]
        for name, part in s["licenses"].items():
            lic = self.licenses.setdefault(name, _License())
            lic.clips += part["clips"]
            lic.duration_us += part["duration_us"]
            lic.add_videos(part["video_ids"], part["videos"], self.video_id_cap)
            lic.trimmed |= part["credits_trimmed"]
            for vid, entry in part["credits"].items():
                lic.add_credit(vid, entry, self.credit_cap)
        for codec, fmts in s["codecs"].items():
            pix = self.codecs.setdefault(codec, {})
            for fmt, n in fmts.items():
                pix[fmt] = pix.get(fmt, 0) + n
        for name in _COUNTERS:
            for key, n in s[name].items():
                self._count(name, key, n)
        for bucket, b in s["buckets"].items():
            clips, shards = self.buckets.setdefault(bucket, ([0], set()))
            clips[0] += b["clips"]
            shards.update(b["shards"])
        self.score_names.update(s["score_names"])

    def result(self) -> dict[str, Any]:
        return {
            "version": STATS_VERSION, "clips": self.clips, "duration_us": self.duration_us,
            "bytes": self.bytes,
            "licenses": {k: v.result(self.credit_cap, self.video_id_cap)
                         for k, v in sorted(self.licenses.items())},
            "codecs": {k: dict(sorted(v.items())) for k, v in sorted(self.codecs.items())},
            **{k: dict(sorted(self.counters[k].items())) for k in _COUNTERS},
            "buckets": {k: {"clips": n[0], "shards": sorted(s)}
                        for k, (n, s) in sorted(self.buckets.items())},
            "score_names": sorted(self.score_names)}


def kept_stats(clips: Iterable[ClipRecord], *, credit_cap: int = CREDIT_CAP,
               video_id_cap: int = VIDEO_ID_CAP) -> dict[str, Any]:
    """The statistics of these kept clips (one shard's, typically), as plain JSON data."""
    acc = _Acc(credit_cap, video_id_cap)
    for c in clips:
        acc.add_clip(c)
    return acc.result()


def merge_stats(parts: Iterable[Mapping[str, Any]], *, credit_cap: int = CREDIT_CAP,
                video_id_cap: int = VIDEO_ID_CAP) -> dict[str, Any]:
    """The statistics of the union of the parts' clips (the parts must not share a clip).
    ``ValueError`` for a part of another :data:`STATS_VERSION`."""
    acc = _Acc(credit_cap, video_id_cap)
    for p in parts:
        acc.add_stats(p)
    return acc.result()


def as_stats(stats_or_clips: Mapping[str, Any] | Iterable[ClipRecord]) -> dict[str, Any]:
    """Statistics as given, or computed from clip records (a caller holding a small list)."""
    if isinstance(stats_or_clips, Mapping):
        return dict(stats_or_clips)
    return kept_stats(stats_or_clips)
