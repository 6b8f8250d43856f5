"""Semantic dedup as a run does it, on a synthetic ledger: ``python -m clipfactory.bench.semdedup``.

Builds a ledger of ``n`` kept clips with float16 vectors (drawn around a few hundred topics,
with ``dup_fraction`` planted near-copies), then times :func:`semantic_duplicates` for the first
finalize (train, assign all, decide every cluster) and for an increment of ``increment`` new
clips (assign those, decide them against their clusters), with the ledger I/O included. Prints
wall and CPU seconds, peak RSS, and how many planted copies were dropped.
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from clipfactory.bench.embed import _timed
from clipfactory.config import DedupConfig
from clipfactory.dedup.semantic_index import semantic_duplicates
from clipfactory.ledger import Ledger
from clipfactory.stages.store import ensure_schema

__all__ = ["run_semdedup_bench"]


def _vectors(rng: np.random.Generator, n: int, dim: int, topics: np.ndarray,
             dup_fraction: float) -> tuple[np.ndarray, int]:
    t = topics[rng.integers(0, len(topics), n)]
    x = t + rng.normal(0, 1.0 / np.sqrt(dim), (n, dim)).astype(np.float32) * 1.2
    n_dup = int(n * dup_fraction)
    src = rng.integers(0, n - n_dup, n_dup)
    x[n - n_dup:] = x[src] + rng.normal(0, 0.12 / np.sqrt(dim), (n_dup, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), n_dup


def _insert(ledger: Ledger, x: np.ndarray, start: int) -> None:
    rows, emb = [], []
    for i, v in enumerate(x, start):
        cid = f"c{i:09d}"
        rec = {"clip_id": cid, "width": 640, "height": 360, "start_frame": 0, "end_frame": 150}
        rows.append((cid, f"item{i}", "staged", json.dumps(rec)))
        emb.append((cid, "embed", "synthetic", "r0", x.shape[1], v.astype(np.float16).tobytes(),
                    "part-000000.parquet", 640 * 360, 150))
    with ledger.transaction() as db:
        db.executemany("INSERT INTO clips (clip_id, item_key, state, record) VALUES (?,?,?,?)",
                       rows)
        db.executemany("INSERT INTO embeddings (clip_id, stage, model, revision, dim, vec, part,"
                       " pixels, frames) VALUES (?,?,?,?,?,?,?,?,?)", emb)


def run_semdedup_bench(n: int = 100_000, dim: int = 512, increment: int = 1000,
                       dup_fraction: float = 0.05, eps: float = 0.05,
                       workdir: str | None = None) -> dict[str, Any]:
    """Measure (see module doc); returns the figures."""
    rng = np.random.default_rng(0)
    topics = rng.normal(0, 1, (300, dim)).astype(np.float32)
    topics /= np.linalg.norm(topics, axis=1, keepdims=True)
    with tempfile.TemporaryDirectory(dir=workdir) as d:
        ledger = Ledger(Path(d) / "ledger.sqlite")
        ensure_schema(ledger)
        cfg = DedupConfig(semantic=True, semantic_eps=eps)
        x, planted = _vectors(rng, n, dim, topics, dup_fraction)
        _, ins_w, _ = _timed(lambda: _insert(ledger, x, 0))
        dups, w1, c1 = _timed(lambda: semantic_duplicates(ledger, cfg))
        ledger.db.executemany("UPDATE clips SET state = 'dropped' WHERE clip_id = ?",
                              [(d.clip_id,) for d in dups])
        y, planted2 = _vectors(rng, increment, dim, topics, dup_fraction)
        _insert(ledger, y, n)
        dups2, w2, c2 = _timed(lambda: semantic_duplicates(ledger, cfg))
        k = ledger.get_meta("semantic_index")["k"]
        ledger.close()
    planted_ids = {f"c{i:09d}" for i in range(n - planted, n)}
    return {"n": n, "dim": dim, "clusters": k, "eps": eps, "insert_s": round(ins_w, 2),
            "first": {"wall_s": round(w1, 2), "cpu_s": round(c1, 2), "dropped": len(dups),
                      "planted": planted,
                      "planted_dropped": sum(d.clip_id in planted_ids for d in dups)},
            "increment": {"clips": increment, "wall_s": round(w2, 2), "cpu_s": round(c2, 2),
                          "dropped": len(dups2), "planted": planted2},
            "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m clipfactory.bench.semdedup")
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--increment", type=int, default=1000)
    p.add_argument("--eps", type=float, default=0.05)
    a = p.parse_args(argv)
    r = run_semdedup_bench(a.n, a.dim, a.increment, eps=a.eps)
    f, i = r["first"], r["increment"]
    print(f"semantic dedup through the ledger: {r['n']} clips, dim {r['dim']}, "
          f"{r['clusters']} clusters, eps {r['eps']} (inserting the rows: {r['insert_s']} s)")
    print(f"first finalize (train + assign + decide all): {f['wall_s']} s wall, {f['cpu_s']} s "
          f"CPU; dropped {f['dropped']} ({f['planted_dropped']} of {f['planted']} planted)")
    print(f"increment of {i['clips']} clips (assign + decide new only): {i['wall_s']} s wall, "
          f"{i['cpu_s']} s CPU; dropped {i['dropped']} (planted {i['planted']})")
    print(f"peak RSS {r['peak_rss_mib']} MiB")


if __name__ == "__main__":
    main()
