"""One LSH table is a pure function (``table_pairs``) whose pairs the caller unions: the groups
are those of the earlier single loop, which skipped pairs already joined by earlier tables."""

from __future__ import annotations

import numpy as np
import pytest

from clipfactory.dedup.perceptual import (
    _band_masks,
    _bucket_pairs,
    _groups_same_k,
    _median_rows,
    _popcount,
    _union,
    hash_rank,
    lsh_tables,
    map_tables_here,
    near_duplicate_groups,
    table_pairs,
)


def _old_groups_same_k(hashes: np.ndarray, max_hamming: float, window: int,
                       bands: int) -> np.ndarray:
    """The loop as it was before tables became functions (kept here verbatim as the oracle)."""
    n, k = hashes.shape
    parent = np.arange(n)
    rank = np.empty(n, dtype=np.uint64)
    rank[np.lexsort(hashes.T[::-1])] = np.arange(n, dtype=np.uint64)
    for pos in range(k):
        for shift, mask in _band_masks(bands):
            band = (hashes[:, pos] >> shift) & mask
            for a, c in _bucket_pairs(band, rank, window):
                fresh = parent[a] != parent[c]
                a, c = a[fresh], c[fresh]
                ok = _median_rows(_popcount(hashes[a] ^ hashes[c])) <= max_hamming
                if ok.any():
                    parent = _union(parent, a[ok], c[ok])
    return parent


def _flip(rng: np.random.Generator, rows: np.ndarray, bits: int) -> np.ndarray:
    """``rows`` with ``bits`` random bits flipped in every frame hash."""
    out = rows.copy()
    for _ in range(bits):
        out ^= np.uint64(1) << rng.integers(0, 64, size=out.shape, dtype=np.uint64)
    return out


def planted(n: int, k: int = 5, seed: int = 0) -> np.ndarray:
    """``n`` random hash tuples, then near copies (2 to 12 flipped bits per frame, some near
    the limit so only a few tables see them), chains of copies, and a degenerate bucket of
    all-zero frames bigger than the window."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 2**64, size=(n, k), dtype=np.uint64)
    parts = [base]
    for bits in (2, 4, 8, 12):
        src = base[rng.choice(n, n // 100, replace=False)]
        parts.append(_flip(rng, src, bits))
    chain = base[:50]
    for _ in range(4):  # a - b - c - d - e: each hop 3 bits, the ends far apart
        chain = _flip(rng, chain, 3)
        parts.append(chain)
    zeros = np.zeros((300, k), dtype=np.uint64)
    zeros[::2, 1:] = rng.integers(0, 2**64, size=(150, k - 1), dtype=np.uint64)
    parts.append(zeros)
    hashes = np.concatenate(parts)
    return hashes[rng.permutation(len(hashes))]


@pytest.mark.parametrize(("bands", "window", "limit"), [(4, 32, 10), (3, 8, 6), (2, 32, 10)])
def test_union_of_tables_equals_the_old_loop(bands: int, window: int, limit: float) -> None:
    hashes = planted(20_000)
    old = _old_groups_same_k(hashes, limit, window, bands)
    stats = {"candidate_pairs": 0, "verified_pairs": 0, "matched_pairs": 0}
    new = _groups_same_k(hashes, limit, window, bands, stats, map_tables_here)
    assert np.array_equal(old, new)
    joined = int((old != np.arange(len(old))).sum())
    assert joined > 600  # the planted copies were found, so the comparison means something
    # a forest pair is counted when it joins rows no earlier table had joined (one new join
    # can take two pairs of one forest), so at least once per joined row
    assert stats["matched_pairs"] >= joined


def test_table_order_does_not_matter() -> None:
    hashes = planted(5_000, seed=1)
    rank = hash_rank(hashes)
    tables = lsh_tables(5, 4)

    def backwards(h, r, ts, limit, window):
        return [table_pairs(h, r, t, limit, window) for t in reversed(ts)]

    stats = {"candidate_pairs": 0, "verified_pairs": 0, "matched_pairs": 0}
    forward = _groups_same_k(hashes, 10, 32, 4, dict(stats), map_tables_here)
    assert np.array_equal(forward, _groups_same_k(hashes, 10, 32, 4, dict(stats), backwards))
    for t in tables:  # a forest: smaller row first, every joined row once
        found = table_pairs(hashes, rank, t, 10, 32)
        assert (found.a < found.b).all() and len(np.unique(found.b)) == len(found.b)


def test_groups_match_the_old_loop_through_the_public_function() -> None:
    hashes = planted(20_000, k=3, seed=2)
    phashes = [tuple(int(x) for x in row) for row in hashes]
    groups = near_duplicate_groups(phashes, 10, bands=3)
    roots = _old_groups_same_k(hashes, 10, 32, 3)
    want: dict[int, list[int]] = {}
    for i, r in enumerate(roots.tolist()):
        want.setdefault(r, []).append(i)
    assert sorted(groups) == sorted(g for g in want.values() if len(g) > 1)


@pytest.mark.parametrize("kind", ["random", "planted", "degenerate", "tiny"])
def test_hash_rank_is_the_lexsort_order(kind: str) -> None:
    rng = np.random.default_rng(9)
    hashes = {
        "random": rng.integers(0, 2**64, size=(5_000, 4), dtype=np.uint64),
        "planted": planted(3_000, k=4, seed=9),
        # few distinct values per column: long runs, ties on every column, duplicates
        "degenerate": rng.integers(0, 3, size=(5_000, 4)).astype(np.uint64),
        "tiny": np.zeros((1, 2), dtype=np.uint64),
    }[kind]
    want = np.empty(len(hashes), dtype=np.uint64)
    want[np.lexsort(hashes.T[::-1])] = np.arange(len(hashes), dtype=np.uint64)
    assert np.array_equal(hash_rank(hashes), want)
