"""Exact duplicates: clips whose decoded content hashes to the same digest."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["exact_groups"]


def exact_groups(hashes: Sequence[str | None]) -> list[list[int]]:
    """Groups (of 2+ input indices, ascending) that share the same exact hash.

    ``None`` (and the empty string) means "no hash" and never matches anything. Linear in
    the number of items.
    """
    buckets: dict[str, list[int]] = {}
    for i, h in enumerate(hashes):
        if h:
            buckets.setdefault(h, []).append(i)
    return [rows for rows in buckets.values() if len(rows) > 1]
