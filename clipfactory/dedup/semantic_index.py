"""Semantic dedup over the ledger's embeddings, incremental across runs.

State lives in the ledger: each embedding row has its k-means ``cluster`` and ``nn_sim`` (the
highest cosine similarity to another kept clip of its cluster); the centroids are kept in the
ledger's meta. A run assigns only the vectors that have no cluster yet and decides only them,
against the kept members of their cluster (which stay kept: a clip in the dataset is never
dropped for a later one), so its cost is O(new x cluster size), not the cluster squared. The centroids are trained once on
a sample and trained again when the kept set has grown ``RETRAIN_GROWTH``-fold since, which
keeps clusters near ``semantic_cluster_size`` at an amortised constant cost per clip; after a
training every cluster is decided afresh (:func:`~clipfactory.dedup.semantic.dedup_cluster`).
Members are ordered by keep priority: more pixels, then more frames, then clip id.
"""

from __future__ import annotations

import base64
import logging
import sqlite3
from collections.abc import Iterator
from typing import Any

import numpy as np

from clipfactory.config import DedupConfig
from clipfactory.dedup import Duplicate
from clipfactory.dedup.semantic import (
    assign,
    auto_clusters,
    dedup_cluster,
    dedup_new,
    eps_table,
    similarity_quantiles,
    train_kmeans,
)
from clipfactory.ledger import Ledger
from clipfactory.stages.store import ensure_schema

__all__ = ["RETRAIN_GROWTH", "semantic_duplicates", "semantic_stats"]

log = logging.getLogger("clipfactory")

RETRAIN_GROWTH = 4.0
_META = "semantic_index"
_KEPT = ("SELECT e.clip_id, e.vec, e.pixels, e.frames, e.nn_sim FROM embeddings e JOIN clips c"
         " ON c.clip_id = e.clip_id WHERE c.state IN ('staged', 'sharded')")
# a cluster's kept members: the cluster index first (CROSS JOIN fixes the order; SQLite would
# otherwise scan every kept clip by state for each cluster)
_MEMBERS = ("SELECT e.clip_id, e.vec, e.pixels, e.frames, e.nn_sim FROM embeddings e CROSS JOIN"
            " clips c ON c.clip_id = e.clip_id WHERE e.cluster = ?"
            " AND c.state IN ('staged', 'sharded')")
_CHUNK = 50_000
_SAMPLE = 200_000  # vectors k-means trains on


def _vecs(rows: list[sqlite3.Row]) -> np.ndarray:
    return np.stack([np.frombuffer(r["vec"], dtype=np.float16) for r in rows]).astype(np.float32)


def _chunks(cur: sqlite3.Cursor) -> Iterator[list[sqlite3.Row]]:
    while rows := cur.fetchmany(_CHUNK):
        yield rows


def _centroids(state: dict[str, Any]) -> np.ndarray:
    raw = base64.b64decode(state["centroids"])
    return np.frombuffer(raw, dtype=np.float16).reshape(state["k"], state["dim"]).astype(np.float32)


def _train(ledger: Ledger, cfg: DedupConfig, n: int) -> dict[str, Any]:
    # every kept vector up to the sample size; beyond, a fixed pseudo-random subset (by clip
    # id), so the same ledger always trains the same centroids
    q = _KEPT if n <= _SAMPLE else _KEPT + " ORDER BY substr(e.clip_id, -6) LIMIT ?"
    sample = ledger.db.execute(q, () if n <= _SAMPLE else (_SAMPLE,)).fetchall()
    x = _vecs(sample)
    k = auto_clusters(n, cfg.semantic_cluster_size)
    cents = train_kmeans(x, k, seed=0)
    state = {"k": int(cents.shape[0]), "dim": int(cents.shape[1]), "trained_n": n,
             "model": list(_vector_model(ledger) or ()),
             "centroids": base64.b64encode(cents.astype(np.float16).tobytes()).decode()}
    ledger.set_meta(_META, state)
    ledger.db.execute("UPDATE embeddings SET cluster = NULL")
    log.info("semantic dedup: %d clusters trained on %d of %d kept clips", state["k"],
             len(sample), n)
    return state


def _vector_model(ledger: Ledger) -> tuple[str, str, int] | None:
    """(model, revision, dim) of the stored vectors (one model at a time: the run refuses a
    second while vectors of the first are kept); None when there are none."""
    r = ledger.db.execute("SELECT model, revision, dim FROM embeddings LIMIT 1").fetchone()
    return (r["model"] or "", r["revision"] or "", int(r["dim"])) if r else None


def _assign_new(ledger: Ledger, cents: np.ndarray) -> dict[int, set[str]]:
    """Give every vector without a cluster its nearest centroid; return the new clip ids per
    cluster hit."""
    touched: dict[int, set[str]] = {}
    cur = ledger.db.execute("SELECT clip_id, vec, pixels, frames FROM embeddings"
                            " WHERE cluster IS NULL")
    for rows in _chunks(cur):
        ids, _ = assign(_vecs(rows), cents)
        for i, r in zip(ids, rows, strict=True):
            touched.setdefault(int(i), set()).add(r["clip_id"])
        with ledger.transaction() as db:
            db.executemany("UPDATE embeddings SET cluster = ? WHERE clip_id = ?",
                           [(int(i), r["clip_id"]) for i, r in zip(ids, rows, strict=True)])
    return touched


def _sim(s: float) -> float | None:
    return None if not np.isfinite(s) else float(s)


def semantic_duplicates(ledger: Ledger, cfg: DedupConfig) -> list[Duplicate]:
    """Cluster new vectors, re-decide the clusters they touch; return the clips to drop
    (none when ``semantic_eps`` is None: then only the similarity statistics are updated)."""
    ensure_schema(ledger)
    n = ledger.db.execute("SELECT COUNT(*) FROM (" + _KEPT + ")").fetchone()[0]
    if n == 0:
        return []
    state = ledger.get_meta(_META)
    # centroids of another model's vectors (every vector removed by takedowns, then another
    # model): assigning to them raised on a width mismatch in this run and every later one,
    # or, at the same width, clustered against another model's space
    model = list(_vector_model(ledger) or ())
    retrained = state is None or n > RETRAIN_GROWTH * state["trained_n"] or \
        state.get("dim") != model[2] or state.get("model", model) != model
    if retrained:
        state = _train(ledger, cfg, n)
    touched = _assign_new(ledger, _centroids(state))
    dups: list[Duplicate] = []
    for cluster in sorted(touched):
        rows = ledger.db.execute(_MEMBERS, (cluster,)).fetchall()
        rows.sort(key=lambda r: (-r["pixels"], -r["frames"], r["clip_id"]))
        if retrained:  # every member decided afresh, in priority order
            new, old = rows, []
            res = dedup_cluster(_vecs(rows), cfg.semantic_eps)
            old_best = np.zeros(0, dtype=np.float32)
        else:  # members already kept stay kept; only the new ones are decided
            fresh = touched[cluster]
            new = [r for r in rows if r["clip_id"] in fresh]
            old = [r for r in rows if r["clip_id"] not in fresh]
            if not new:
                continue
            res, old_best = dedup_new(_vecs(old) if old else np.zeros((0, 1), np.float32),
                                      _vecs(new), cfg.semantic_eps)
        everyone = old + new
        updates = [(_sim(s), r["clip_id"]) for s, r in zip(res.nn_sim, new, strict=True)]
        updates += [(_sim(max(r["nn_sim"] if r["nn_sim"] is not None else -1.0, float(b))),
                     r["clip_id"]) for b, r in zip(old_best, old, strict=True) if np.isfinite(b)]
        with ledger.transaction() as db:
            db.executemany("UPDATE embeddings SET nn_sim = ? WHERE clip_id = ?", updates)
        for i, r in enumerate(new):
            if not res.kept[i]:
                j = int(res.duplicate_of[i])
                keeper = (everyone[j] if not retrained else rows[j])["clip_id"]
                dups.append(Duplicate(r["clip_id"], keeper, "semantic_duplicate",
                                      round(1.0 - float(res.similarity[i]), 6)))
    log.info("semantic dedup: %d clusters re-decided, %d duplicates", len(touched), len(dups))
    return dups


def semantic_stats(ledger: Ledger, eps: float | None) -> dict[str, Any] | None:
    """For the card: nearest-neighbour similarity of kept clips, and what each eps would
    drop (NeMo Curator's advice: look at this before choosing eps)."""
    ensure_schema(ledger)
    state = ledger.get_meta(_META)
    if state is None:
        return None
    # straight into float32 (4 bytes a clip), no list of row tuples (tens of GB at 10^8 clips)
    sims = np.fromiter((r[0] for r in ledger.db.execute(
        "SELECT e.nn_sim FROM embeddings e JOIN clips c ON c.clip_id = e.clip_id"
        " WHERE c.state IN ('staged', 'sharded') AND e.nn_sim IS NOT NULL")), dtype=np.float32)
    return {"eps": eps, "clusters": state["k"], "trained_on": state["trained_n"],
            "clips": int(sims.size), "quantiles": similarity_quantiles(sims) if sims.size else {},
            "eps_table": eps_table(sims) if sims.size else []}
