"""The persistent dedup index: new clips are deduplicated against the dataset without loading it.

Two ledger tables hold every kept clip (staged or sharded) once it has been through dedup
(schema in :mod:`clipfactory.ledger_derived`, whose triggers forget a clip the moment it
leaves the kept states):

- ``dedup_items``: clip id, exact hash, the K perceptual frame hashes (a blob of K uint64),
  area and frame count: everything the keeper rule and the distance need;
- ``dedup_lsh``: one row per (K, frame position, band, band value) of each clip, ordered by
  the clip's first frame hash, so that a bucket is read as a range scan.

For the new clips of a run, :func:`incremental_duplicates` gathers the candidates (same exact
hash; or sharing a band of a frame hash at the same position), then runs the same
:func:`clipfactory.dedup.find_duplicates` over new + candidates. Only groups holding a new clip
are acted on: a new clip can still replace a sharded one that it beats under the keeper rule,
as a full pass would. Bands are 3 per frame hash (21/22 bits: a random bucket holds ~5 clips
at 10^7), and a bucket bigger than ``2 * WINDOW`` (all-black frames) is read only around the
new clip's position in first-hash order, as the in-memory search windows its giant buckets.

Rows of clips that left are removed lazily: a stale ``dedup_lsh`` row points at no item and
is skipped. ``rebuild`` (``clipfactory dedup --full``) rewrites both tables from the clips.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager

import numpy as np

from clipfactory.config import DedupConfig
from clipfactory.dedup import DedupItem, Duplicate, find_duplicates
from clipfactory.dedup.perceptual import _band_masks
from clipfactory.ledger import Ledger, query_in

__all__ = ["BANDS", "WINDOW", "DedupStore", "incremental_duplicates", "item_of", "lsh_keys"]

log = logging.getLogger("clipfactory")

BANDS = 3
WINDOW = 32
_VERSION = 1
_META = "dedup_index"


def _signed(x: int) -> int:
    return x - (1 << 64) if x >= 1 << 63 else x


def lsh_keys(phash: Sequence[int]) -> list[int]:
    """The LSH keys of one clip's frame hashes: (K, position, band, band value) packed."""
    k = len(phash)
    keys = []
    for pos, h in enumerate(phash):
        for band, (shift, mask) in enumerate(_band_masks(BANDS)):
            value = (int(h) >> int(shift)) & int(mask)
            keys.append((((k * 64 + pos) * 4 + band) << 32) | value)
    return keys


def _blob(phash: Sequence[int]) -> bytes | None:
    return np.asarray(phash, dtype="<u8").tobytes() if len(phash) else None


def _unblob(b: bytes | None) -> tuple[int, ...]:
    return tuple(int(x) for x in np.frombuffer(b, dtype="<u8")) if b else ()


class DedupStore:
    """The persistent dedup index of one ledger (see the module docstring)."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.db = ledger.db

    # -- state ---------------------------------------------------------------------------------
    def ready(self, cfg: DedupConfig) -> bool:
        """True when the index holds every kept clip under the current settings."""
        return self.ledger.get_meta(_META) == self._fingerprint(cfg)

    def invalidate(self) -> None:
        """Mark the index incomplete (clips were kept without going through it)."""
        self.db.execute("DELETE FROM meta WHERE key = ?", (_META,))

    @staticmethod
    def _fingerprint(cfg: DedupConfig) -> dict[str, int]:
        return {"version": _VERSION, "bands": BANDS, "window": WINDOW,
                "phash_frames": cfg.phash_frames}

    def indexed(self, clip_ids: Iterable[str]) -> set[str]:
        """Which of ``clip_ids`` the index already holds."""
        return {r[0] for r in query_in(
            self.db, "SELECT clip_id FROM dedup_items WHERE clip_id IN ({})", clip_ids)}

    def size(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM dedup_items").fetchone()[0]

    # -- writes --------------------------------------------------------------------------------
    def add(self, items: Iterable[DedupItem]) -> int:
        """Index kept clips (one transaction per chunk); return how many were added."""
        n = 0
        for chunk in _chunks(items, 5000):
            with self.ledger.transaction() as db:
                for it in chunk:
                    cur = db.execute(_INSERT_ITEM, _item_row(it))
                    if cur.rowcount:
                        db.executemany(_INSERT_LSH.format(table="dedup_lsh"),
                                       _lsh_rows(cur.lastrowid, it, None))
                    n += cur.rowcount
        return n

    @contextmanager
    def bulk(self, cfg: DedupConfig) -> Iterator[Callable[[Iterable[tuple[DedupItem, list[int]
                                                                          | None]]], int]]:
        """Fill the index from scratch: yields ``load(pairs)`` taking (item, its LSH keys or
        None to compute them) and returning how many are loaded so far.

        The LSH rows go to a temporary table and, at the end, into ``dedup_lsh`` in key
        order (SQLite's external sort): one sequential B-tree build instead of 10^8 random
        inserts. The index is marked ready only when the block completes."""
        self.invalidate()
        self.db.execute("DELETE FROM dedup_lsh")
        self.db.execute("DELETE FROM dedup_items")
        self.db.execute("DROP TABLE IF EXISTS temp.lsh_stage")
        self.db.execute("CREATE TEMP TABLE lsh_stage (key INTEGER, ord INTEGER, rid INTEGER)")
        rid = 0

        def load(pairs: Iterable[tuple[DedupItem, list[int] | None]]) -> int:
            nonlocal rid
            items, lsh = [], []
            for it, keys in pairs:
                rid += 1
                items.append((rid, *_item_row(it)))
                lsh += _lsh_rows(rid, it, keys)
            with self.ledger.transaction() as db:
                db.executemany("INSERT INTO dedup_items (rid, clip_id, exact_hash, phash, area,"
                               " frames) VALUES (?,?,?,?,?,?)", items)
                db.executemany(_INSERT_LSH.format(table="temp.lsh_stage"), lsh)
            return rid

        try:
            yield load
            with self.ledger.transaction() as db:
                db.execute("INSERT OR IGNORE INTO dedup_lsh SELECT key, ord, rid FROM"
                           " temp.lsh_stage ORDER BY key, ord, rid")
        finally:
            self.db.execute("DROP TABLE IF EXISTS temp.lsh_stage")
        self.mark_ready(cfg)

    def rebuild(self, cfg: DedupConfig) -> int:
        """Rewrite the index from every sharded clip in the ledger (streamed in clip-id
        pages, loaded by :meth:`bulk`); return its size."""
        t0 = time.perf_counter()
        n = 0
        with self.bulk(cfg) as load:
            for chunk in _chunks(self._kept_items(), 5000):
                n = load((it, None) for it in chunk)
        log.info("dedup index rebuilt: %d clips in %.1f s", n, time.perf_counter() - t0)
        return n

    def mark_ready(self, cfg: DedupConfig) -> None:
        self.ledger.set_meta(_META, self._fingerprint(cfg))

    def _kept_items(self) -> Iterator[DedupItem]:
        """Every sharded clip, read in clip-id pages so memory stays bounded."""
        last = ""
        while True:
            rows = self.db.execute(
                "SELECT clip_id, record FROM clips WHERE clip_id > ? AND state = 'sharded'"
                " ORDER BY clip_id LIMIT 5000", (last,)).fetchall()
            if not rows:
                return
            for clip_id, record in rows:
                yield item_of(clip_id, json.loads(record))
            last = rows[-1][0]

    # -- reads ---------------------------------------------------------------------------------
    def all_items(self) -> list[DedupItem]:
        """Every indexed clip (the full re-dedup reads them all)."""
        return [self._item(r) for r in self.db.execute(
            "SELECT clip_id, exact_hash, phash, area, frames FROM dedup_items ORDER BY rid")]

    @staticmethod
    def _item(r: Sequence) -> DedupItem:
        clip_id, exact, blob, area, frames = r
        return DedupItem(clip_id, exact, _unblob(blob), area, 1, frames)

    def candidates(self, new: Sequence[DedupItem], cfg: DedupConfig) -> list[DedupItem]:
        """Indexed clips that could be a duplicate of one of ``new``."""
        rids: set[int] = set()
        if cfg.exact:
            rids.update(r[0] for r in query_in(
                self.db, "SELECT rid FROM dedup_items WHERE exact_hash IN ({})",
                sorted({it.exact_hash for it in new if it.exact_hash})))
        if cfg.perceptual:
            for it in new:
                if not it.phash:
                    continue
                first = _signed(int(it.phash[0]))
                for key in lsh_keys(it.phash):
                    rids.update(r[0] for r in self.db.execute(
                        "SELECT rid FROM dedup_lsh WHERE key = ? AND ord >= ? ORDER BY ord"
                        " LIMIT ?", (key, first, WINDOW + 1)))
                    rids.update(r[0] for r in self.db.execute(
                        "SELECT rid FROM dedup_lsh WHERE key = ? AND ord < ? ORDER BY ord DESC"
                        " LIMIT ?", (key, first, WINDOW)))
        return [self._item(r) for r in query_in(
            self.db, "SELECT clip_id, exact_hash, phash, area, frames FROM dedup_items WHERE rid"
            " IN ({})", sorted(rids))]


_INSERT_ITEM = ("INSERT OR IGNORE INTO dedup_items (clip_id, exact_hash, phash, area, frames)"
                " VALUES (?,?,?,?,?)")
_INSERT_LSH = "INSERT OR IGNORE INTO {table} (key, ord, rid) VALUES (?,?,?)"


def _item_row(it: DedupItem) -> tuple:
    """The ``dedup_items`` row of a clip, without its rid."""
    return (it.clip_id, it.exact_hash or None, _blob(it.phash), it.width * it.height,
            it.num_frames)


def _lsh_rows(rid: int, it: DedupItem, keys: list[int] | None) -> list[tuple[int, int, int]]:
    """The ``dedup_lsh`` rows of a clip; ``keys`` are its :func:`lsh_keys` when already
    computed (the bench builder's workers do)."""
    if not it.phash:
        return []
    first = _signed(int(it.phash[0]))
    return [(key, first, rid) for key in (keys or lsh_keys(it.phash))]


def item_of(clip_id: str, record: dict) -> DedupItem:
    """What dedup needs from a clip record (``ClipRecord.to_dict`` form)."""
    frames = int(record.get("end_frame", 0)) - int(record.get("start_frame", 0))
    return DedupItem(clip_id, record.get("exact_hash"), tuple(record.get("phash") or ()),
                     int(record.get("width") or 0), int(record.get("height") or 0), frames)


def incremental_duplicates(store: DedupStore, new: Sequence[DedupItem], cfg: DedupConfig,
                           stats: dict | None = None) -> list[Duplicate]:
    """Duplicates among ``new`` and between ``new`` and the indexed clips (module docstring).

    Only groups holding a new clip count; an indexed clip appears in the result only when a
    new clip of its group replaces it under the keeper rule.
    """
    if not new:
        return []
    ids = {it.clip_id for it in new}
    cands = [c for c in store.candidates(new, cfg) if c.clip_id not in ids]
    dups = find_duplicates([*new, *cands], cfg, stats=stats)
    groups: dict[str, list[Duplicate]] = {}
    for d in dups:
        groups.setdefault(d.kept, []).append(d)
    out = [d for kept, ds in groups.items()
           if kept in ids or any(d.clip_id in ids for d in ds) for d in ds]
    if stats is not None:
        stats["candidates"] = len(cands)
    return sorted(out, key=lambda d: d.clip_id)


def _chunks(items: Iterable, n: int) -> Iterator[list]:
    chunk: list = []
    for x in items:
        chunk.append(x)
        if len(chunk) >= n:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
