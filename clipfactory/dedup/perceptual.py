"""Perceptual hashes and near-duplicate grouping over them.

``phash64`` is a DCT hash of one grey frame: area-resize to 32x32, 2-D DCT-II, keep the 8x8
lowest frequencies, threshold each against the median of the 63 AC terms. Both steps are
linear, so they are fused into two small precomputed matrices per input shape
(``L = D8 @ Rh`` and ``R = Rw @ D8.T``): the hash is ``L @ img @ R`` (float32) plus a
threshold, about 20-25 µs per call on a 160x90 analysis frame.

``near_duplicate_groups`` finds clips whose aligned frame hashes have a median Hamming
distance of at most ``max_hamming`` without comparing all pairs: every frame hash is cut
into bands and each (frame position, band index) pair is one LSH table keyed by the band
value. Clips sharing a bucket are candidates; candidates are verified with the full median
distance (vectorised, in bounded batches) and joined transitively with a vectorised
union-find. Clips with different numbers of frame hashes are never compared.

Band width: 4 bands of 16 bits (the most forgiving) for up to 2**16 clips of one K; random
collisions grow as n**2 / 2**bits per table, so larger populations use 3 bands of 21/22 bits
(up to 2**21 clips) and then 2 bands of 32 bits, keeping random candidates near ``n / 2`` per
table. Wider bands find fewer of the pairs near the ``max_hamming`` limit (a pair meets when
one band of one frame is untouched); typical re-encodes (a few bits per frame) are still
found. ``bands=`` overrides the choice.

Giant buckets (say band value 0 from all-black frames) are not expanded quadratically:
within a bucket, members are sorted by their full hash tuple and each is compared only with
the next ``window`` members. Buckets of at most ``window + 1`` members are therefore compared
exhaustively; in bigger ones identical and lexicographically close clips still meet, and
true near-duplicates usually also meet through another band or frame position. The work is
bounded by ``n * tables * window`` pairs.

Each table is a pure function of the hash matrix (:func:`table_pairs`), returning the pairs it
joins; the caller unions them, table after table here, or as Ray tasks
(:mod:`clipfactory.dedup.ray_dedup`). Unions are transitive and a component's root is its
smallest row, so the groups do not depend on where or in which order the tables ran.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import lru_cache
from typing import Any, NamedTuple

import numpy as np

__all__ = ["Table", "TableMap", "TablePairs", "hamming", "hash_rank", "lsh_tables",
           "map_tables_here", "median_distance", "near_duplicate_groups", "phash64",
           "table_pairs"]

_HASH = 32  # resize side
_LOW = 8  # kept low frequencies per axis
_CHUNK = 1 << 20  # candidate pairs verified per numpy batch (bounds memory)
_BITS = bytes.maketrans(b"\x00\x01", b"01")  # bool bytes -> "0"/"1" text, parsed base 2


def _dct_matrix(n: int) -> np.ndarray:
    """Orthonormal DCT-II matrix ``D`` (``D @ x`` is the DCT of column vector ``x``)."""
    k = np.arange(n)[:, None]
    i = np.arange(n)[None, :]
    d = np.cos(np.pi * (2 * i + 1) * k / (2 * n)) * np.sqrt(2.0 / n)
    d[0] /= np.sqrt(2.0)
    return d


def _area_matrix(src: int, dst: int) -> np.ndarray:
    """``(dst, src)`` area-averaging weights: row ``o`` averages the input span it covers."""
    edges = np.arange(dst + 1) * (src / dst)
    lo, hi = edges[:-1, None], edges[1:, None]
    pix = np.arange(src)[None, :]
    overlap = np.clip(np.minimum(hi, pix + 1) - np.maximum(lo, pix), 0.0, None)
    return overlap / overlap.sum(axis=1, keepdims=True)


@lru_cache(maxsize=32)
def _projections(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Fused (resize + DCT low-frequency) left and right matrices for one input shape."""
    d8 = _dct_matrix(_HASH)[:_LOW]
    left = d8 @ _area_matrix(height, _HASH)  # (8, H)
    right = _area_matrix(width, _HASH).T @ d8.T  # (W, 8)
    return left.astype(np.float32), np.ascontiguousarray(right.astype(np.float32))


def phash64(gray: np.ndarray) -> int:
    """64-bit DCT perceptual hash of a 2-D grey image (uint8 or float, any size).

    Bit ``63 - (8 * row + col)`` is set when low-frequency coefficient ``(row, col)`` exceeds
    the median of the 63 AC coefficients (the DC term is excluded from the median).
    """
    if gray.ndim != 2 or gray.size == 0:
        raise ValueError(f"phash64 needs a non-empty 2-D image, got shape {gray.shape}")
    left, right = _projections(*gray.shape)
    coeffs = (left @ gray.astype(np.float32, copy=False) @ right).ravel()
    median = np.sort(coeffs[1:])[31]  # 32nd smallest of the 63 AC terms
    return int((coeffs > median).tobytes().translate(_BITS), 2)


def hamming(a: int, b: int) -> int:
    """Number of differing bits between two hashes."""
    return (a ^ b).bit_count()


def median_distance(a: Sequence[int], b: Sequence[int]) -> float:
    """Median over aligned frame pairs of the Hamming distance (``inf`` if not comparable)."""
    if not a or len(a) != len(b):
        return float("inf")
    return float(np.median([hamming(x, y) for x, y in zip(a, b, strict=True)]))


def _popcount(x: np.ndarray) -> np.ndarray:
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(x)
    lut = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)
    return lut[x.view(np.uint8)].reshape(*x.shape, 8).sum(axis=-1)


def _roots(parent: np.ndarray) -> np.ndarray:
    """Compress every chain to its root (pointer jumping); ``parent[x] <= x`` throughout."""
    while True:
        grand = parent[parent]
        if np.array_equal(grand, parent):
            return parent
        parent = grand


def _union(parent: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Vectorised union-find: hook the larger root onto the smaller until every edge agrees."""
    while True:
        ra, rb = parent[a], parent[b]
        differ = ra != rb
        if not differ.any():
            return parent
        lo, hi = np.minimum(ra, rb)[differ], np.maximum(ra, rb)[differ]
        np.minimum.at(parent, hi, lo)
        parent = _roots(parent)


def _auto_bands(n: int) -> int:
    """Bands per frame hash for ``n`` clips: 16-bit bands up to 2**16 clips, then 21/22-bit,
    then 32-bit, so random bucket collisions stay about ``n / 2`` pairs per table."""
    if n <= 1 << 16:
        return 4
    return 3 if n <= 1 << 21 else 2


def _band_masks(bands: int) -> list[tuple[np.uint64, np.uint64]]:
    """(shift, mask) of each band; widths differ by at most one bit and cover all 64 bits."""
    edges = [round(64 * i / bands) for i in range(bands + 1)]
    return [
        (np.uint64(lo), np.uint64((1 << (hi - lo)) - 1)) for lo, hi in itertools.pairwise(edges)
    ]


def _bucket_pairs(
    band: np.ndarray, rank: np.ndarray, window: int, chunk: int = _CHUNK
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Chunks of row pairs sharing a band value: each row meets its next ``window``
    neighbours in (band value, full hash) order within its bucket.

    ``band`` holds values below 2**32 and ``rank`` each row's position in full-hash order,
    so one argsort of ``band << 32 | rank`` gives the bucket order.
    """
    n = len(band)
    order = np.argsort((band << np.uint64(32)) | rank)
    sb = band[order]
    starts = np.flatnonzero(np.r_[True, sb[1:] != sb[:-1]])
    sizes = np.diff(np.r_[starts, n])
    group = np.repeat(np.arange(len(starts)), sizes)
    count = np.minimum(sizes[group] - (np.arange(n) - starts[group]) - 1, window)
    ends = np.cumsum(count)
    lo, done, total = 0, 0, int(ends[-1]) if n else 0
    while done < total:
        hi = max(int(np.searchsorted(ends, done + chunk, side="right")), lo + 1)
        cnt = count[lo:hi]
        first = np.repeat(np.arange(lo, hi), cnt)
        offset = np.arange(len(first)) - np.repeat(np.cumsum(cnt) - cnt, cnt) + 1
        yield order[first], order[first + offset]
        lo, done = hi, int(ends[hi - 1])


def _median_rows(dist: np.ndarray) -> np.ndarray:
    k = dist.shape[1]
    s = np.sort(dist, axis=1)
    if k % 2:
        return s[:, k // 2].astype(np.float64)
    return (s[:, k // 2 - 1].astype(np.float64) + s[:, k // 2]) / 2.0


class TablePairs(NamedTuple):
    """What one LSH table found: row pairs ``(a[i], b[i])`` that join exactly the components
    its matched pairs join (a spanning forest, ``a < b``), and the pairs it looked at."""

    a: np.ndarray
    b: np.ndarray
    candidates: int
    verified: int


Table = tuple[int, np.uint64, np.uint64]  # (frame position, band shift, band mask)
TableMap = Callable[[np.ndarray, np.ndarray, list[Table], float, int], Iterable[TablePairs]]


def lsh_tables(k: int, bands: int) -> list[Table]:
    """Every LSH table of ``k`` frame hashes cut into ``bands`` bands."""
    return [(pos, shift, mask) for pos in range(k) for shift, mask in _band_masks(bands)]


def hash_rank(hashes: np.ndarray) -> np.ndarray:
    """Each row's position in full-hash (lexicographic, then row) order, as uint64.

    The order of ``np.lexsort`` over all columns, ~8x faster: a stable sort on the first
    frame hash, then ``lexsort`` only over the rows whose first hash is shared (few, unless
    the data are degenerate).
    """
    n = len(hashes)
    order = np.argsort(hashes[:, 0], kind="stable")
    first = hashes[order, 0]
    same = np.r_[False, first[1:] == first[:-1]]
    tied = np.flatnonzero(same | np.r_[same[1:], False])  # positions in a run of equals
    if len(tied):
        sub = order[tied]  # runs ascend by first hash and, inside a run, by row
        order[tied] = sub[np.lexsort(hashes[sub].T[::-1])]
    rank = np.empty(n, dtype=np.uint64)
    rank[order] = np.arange(n, dtype=np.uint64)
    return rank


def table_pairs(hashes: np.ndarray, rank: np.ndarray, table: Table, max_hamming: float,
                window: int) -> TablePairs:
    """The near-duplicate pairs one LSH table finds: a pure function of its arguments, so a
    table can run anywhere (this process, a Ray task) and the caller unions the results.

    The pairs are returned as a forest (each joined row with its smallest component-mate)
    rather than as matched: at most ``n - 1`` pairs whatever a giant bucket of identical
    hashes matches, and a candidate already joined inside this table is not verified again.
    """
    pos, shift, mask = table
    band = (hashes[:, pos] >> shift) & mask
    parent = np.arange(len(hashes))
    candidates = verified = 0
    for a, b in _bucket_pairs(band, rank, window):
        candidates += len(a)
        fresh = parent[a] != parent[b]
        a, b = a[fresh], b[fresh]
        verified += len(a)
        ok = _median_rows(_popcount(hashes[a] ^ hashes[b])) <= max_hamming
        if ok.any():
            parent = _union(parent, a[ok], b[ok])
    rows = np.flatnonzero(parent != np.arange(len(parent)))
    return TablePairs(parent[rows], rows, candidates, verified)


def map_tables_here(hashes: np.ndarray, rank: np.ndarray, tables: list[Table],
                    max_hamming: float, window: int) -> Iterator[TablePairs]:
    """One table after the other in this process (memory: one table's pairs)."""
    for table in tables:
        yield table_pairs(hashes, rank, table, max_hamming, window)


def _groups_same_k(hashes: np.ndarray, max_hamming: float, window: int, bands: int,
                   stats: dict[str, Any], map_tables: TableMap) -> np.ndarray:
    """Component root (its smallest row) of every row of an ``(n, K)`` uint64 hash matrix:
    the union of every table's matched pairs. Unions are transitive and a root is always the
    smallest row of its component, so neither the order of the tables nor pairs found twice
    change the result."""
    parent = np.arange(len(hashes))
    for found in map_tables(hashes, hash_rank(hashes), lsh_tables(hashes.shape[1], bands),
                            max_hamming, window):
        stats["candidate_pairs"] += found.candidates
        stats["verified_pairs"] += found.verified
        fresh = parent[found.a] != parent[found.b]  # joined by an earlier table: no news
        stats["matched_pairs"] += int(fresh.sum())
        if fresh.any():
            parent = _union(parent, found.a[fresh], found.b[fresh])
    return parent


def near_duplicate_groups(
    phashes: Sequence[Sequence[int]],
    max_hamming: float,
    *,
    window: int = 32,
    bands: int | None = None,
    stats: dict[str, Any] | None = None,
    map_tables: TableMap = map_tables_here,
) -> list[list[int]]:
    """Groups (of 2+ input indices, ascending) of transitively near-duplicate hash tuples.

    Only tuples with the same number ``K > 0`` of frame hashes are compared. ``stats``, when
    given, receives ``candidate_pairs``, ``verified_pairs`` (candidates not already joined
    within their table) and ``matched_pairs`` (joins no earlier table had made).
    ``map_tables`` runs the LSH tables of one K and yields their :class:`TablePairs` in table
    order (Ray tasks: :mod:`clipfactory.dedup.ray_dedup`).
    """
    if window < 1 or (bands is not None and not 2 <= bands <= 32):
        raise ValueError("window must be >= 1 and bands in 2..32")
    counters: dict[str, Any] = {"candidate_pairs": 0, "verified_pairs": 0, "matched_pairs": 0}
    by_k: dict[int, list[int]] = {}
    for i, h in enumerate(phashes):
        if len(h):
            by_k.setdefault(len(h), []).append(i)
    groups: list[list[int]] = []
    for k, rows in sorted(by_k.items()):
        if len(rows) < 2:
            continue
        hashes = np.array([tuple(phashes[i]) for i in rows], dtype=np.uint64).reshape(-1, k)
        nb = bands or _auto_bands(len(rows))
        counters["bands"] = max(counters.get("bands", 0), nb)
        roots = _groups_same_k(hashes, max_hamming, window, nb, counters, map_tables)
        joined = np.flatnonzero(np.bincount(roots, minlength=len(roots))[roots] > 1)
        members: dict[int, list[int]] = {}
        for j, root in zip(joined.tolist(), roots[joined].tolist(), strict=True):
            members.setdefault(root, []).append(rows[j])
        groups.extend(members.values())  # rows ascend, so each group is sorted
    if stats is not None:
        stats.update(counters)
    return groups
