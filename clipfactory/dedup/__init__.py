"""Global deduplication over clip records (no pixels).

Runs once, after every video is processed. Exact duplicates (same decoded-content hash) are
removed first; near duplicates (perceptual frame hashes within ``max_hamming``, median over
aligned frames) are then found among the exact survivors via LSH banding, so the whole step
stays near-linear in the number of clips. Every group keeps one clip: highest resolution,
then most frames, then smallest ``clip_id``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from clipfactory.config import DedupConfig
from clipfactory.dedup.exact import exact_groups
from clipfactory.dedup.perceptual import (
    hamming,
    median_distance,
    near_duplicate_groups,
    phash64,
)

__all__ = [
    "DedupItem",
    "Duplicate",
    "exact_groups",
    "find_duplicates",
    "hamming",
    "median_distance",
    "near_duplicate_groups",
    "phash64",
]


@dataclass(frozen=True)
class DedupItem:
    """What dedup needs to know about one clip.

    ``phash`` holds 64-bit frame hashes (``0 <= h < 2**64``) of K frames sampled at fixed
    relative positions of the clip; it may be empty (then the clip is never a near duplicate).
    """

    clip_id: str
    exact_hash: str | None
    phash: tuple[int, ...]
    width: int
    height: int
    num_frames: int


@dataclass(frozen=True)
class Duplicate:
    """A removed clip and the kept clip that represents its group.

    ``distance`` is 0 for exact duplicates and, for near duplicates, the median per-frame
    Hamming distance between this clip and ``kept`` (measured directly; in a transitive chain
    it may exceed ``max_hamming``).
    """

    clip_id: str
    kept: str
    reason: str  # "exact_duplicate" | "near_duplicate"
    distance: float


def _keeper(items: Sequence[DedupItem], rows: Sequence[int]) -> int:
    """Row of the clip a group keeps: largest area, then most frames, then smallest id."""
    return min(
        rows,
        key=lambda r: (-items[r].width * items[r].height, -items[r].num_frames, items[r].clip_id),
    )


def find_duplicates(
    items: Sequence[DedupItem],
    cfg: DedupConfig,
    *,
    window: int = 32,
    stats: dict[str, Any] | None = None,
    near: Callable[..., list[list[int]]] = near_duplicate_groups,
) -> list[Duplicate]:
    """Every clip to remove, each pointing at the kept clip of its (transitive) group.

    Exact grouping runs first (``cfg.exact``); near grouping (``cfg.perceptual``) runs on
    the exact survivors only, so a clip is reported at most once. ``window`` bounds the
    comparisons inside one oversized LSH bucket (see :mod:`clipfactory.dedup.perceptual`);
    ``stats``, when given, receives the LSH pair counters and group counts. ``near`` groups
    the near duplicates: :func:`near_duplicate_groups` or a function with its signature and
    result (on Ray: :func:`clipfactory.dedup.ray_dedup.near_duplicate_groups_ray`). The result
    is sorted by ``clip_id``.
    """
    if not cfg.enabled:
        return []
    out: list[Duplicate] = []
    survivors = list(range(len(items)))
    counters: dict[str, Any] = {"exact_groups": 0, "near_groups": 0}

    if cfg.exact:
        removed: set[int] = set()
        for rows in exact_groups([it.exact_hash for it in items]):
            keep = _keeper(items, rows)
            counters["exact_groups"] += 1
            for r in rows:
                if r != keep:
                    removed.add(r)
                    out.append(
                        Duplicate(items[r].clip_id, items[keep].clip_id, "exact_duplicate", 0.0)
                    )
        survivors = [r for r in survivors if r not in removed]

    if cfg.perceptual:
        groups = near(
            [items[r].phash for r in survivors], cfg.max_hamming, window=window, stats=counters
        )
        for local in groups:
            rows = [survivors[j] for j in local]
            keep = _keeper(items, rows)
            counters["near_groups"] += 1
            for r in rows:
                if r != keep:
                    d = median_distance(items[r].phash, items[keep].phash)
                    out.append(
                        Duplicate(items[r].clip_id, items[keep].clip_id, "near_duplicate", d)
                    )

    if stats is not None:
        stats.update(counters)
    out.sort(key=lambda d: d.clip_id)
    return out
