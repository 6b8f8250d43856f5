"""Synthetic benchmark of semantic dedup (:mod:`clipfactory.dedup.semantic`) on planted copies:
``python -m clipfactory.bench.semantic [--n 100000 --dim 512]``.

Draws unit vectors around a few hundred random topics, plants near-copies (cos 0.97-0.995),
then times training, assignment and deduplication of every cluster, and an increment of 1%
new vectors deduped only in the clusters it touches. Prints wall and CPU seconds per step,
vectors/s, peak RSS, recall of the planted copies and the nn_sim distribution with its eps
table. The measurements and the scaling estimate are in :mod:`clipfactory.dedup.semantic`.
"""

from __future__ import annotations

import argparse
import math
import resource
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

from clipfactory.dedup.semantic import (
    assign,
    auto_clusters,
    dedup_cluster,
    eps_table,
    similarity_quantiles,
    train_kmeans,
)

__all__ = ["bench_semantic", "main"]


def _normalise(x: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norm > 0, norm, 1)


@contextmanager
def _timed(out: dict[str, Any], name: str) -> Iterator[None]:
    wall, cpu = time.perf_counter(), time.process_time()
    yield
    out[f"{name}_wall_s"] = time.perf_counter() - wall
    out[f"{name}_cpu_s"] = time.process_time() - cpu


def _synthetic(
    rng: np.random.Generator, topics: np.ndarray, n: int, dup_fraction: float,
    originals: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """n unit vectors around random topics (pairwise cos ~0.33 within a topic); the last
    ``dup_fraction`` of them are copies (cos 0.97-0.995) of distinct rows of ``originals``
    (or of this batch when ``originals`` is empty). Returns (vectors, original row per copy)."""
    dim = topics.shape[1]
    n_dup = round(n * dup_fraction)
    base = n - n_dup
    x = np.empty((n, dim), dtype=np.float32)
    noise = rng.standard_normal((base, dim), dtype=np.float32) * np.float32(math.sqrt(2 / dim))
    x[:base] = _normalise(topics[rng.integers(len(topics), size=base)] + noise)
    src = originals if len(originals) else x[:base]
    orig = rng.choice(len(src), n_dup, replace=False)
    cos = rng.uniform(0.97, 0.995, n_dup)
    sigma = (np.sqrt(1 / cos**2 - 1) / math.sqrt(dim)).astype(np.float32)[:, None]
    x[base:] = _normalise(src[orig] + sigma * rng.standard_normal((n_dup, dim), dtype=np.float32))
    return x, orig


def _dedup_all(
    x: np.ndarray, ids: np.ndarray, priority: np.ndarray, eps: float, only: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, int]:
    """Dedup every cluster (or those flagged in ``only``): global (dup target, nn_sim, rows)."""
    order = np.lexsort((priority, ids))
    sid = ids[order]
    starts = np.flatnonzero(np.r_[True, sid[1:] != sid[:-1]])
    target = np.full(len(x), -1, dtype=np.int64)
    nn = np.full(len(x), np.nan, dtype=np.float32)
    done = 0
    for a, b in zip(starts, np.r_[starts[1:], len(order)], strict=True):
        if only is not None and not only[sid[a]]:
            continue
        rows = order[a:b]
        r = dedup_cluster(x[rows], eps)
        target[rows] = np.where(r.kept, -1, rows[r.duplicate_of])
        nn[rows] = r.nn_sim
        done += b - a
    return target, nn, done


def bench_semantic(
    n: int = 100_000, dim: int = 512, dup_fraction: float = 0.05, eps: float = 0.05,
    seed: int = 0,
) -> dict[str, Any]:
    """Synthetic end-to-end run: train, assign, dedup all clusters, then a 1% increment.

    Reports wall and CPU seconds per step, vectors/s, peak RSS, recall of the planted copies
    (copy dropped, or its original dropped in its place), false drops (drops whose target is
    not the planted partner), and the nn_sim distribution with its eps table.
    """
    rng = np.random.default_rng(seed)
    topics = _normalise(rng.standard_normal((300, dim), dtype=np.float32))
    out: dict[str, Any] = {"n": n, "dim": dim, "eps": eps, "k": auto_clusters(n)}
    with _timed(out, "generate"):
        x, orig = _synthetic(rng, topics, n, dup_fraction, np.empty((0, dim), np.float32))
    copies = np.arange(n - len(orig), n)
    with _timed(out, "train"):
        centroids = train_kmeans(x, out["k"], seed=seed)
    with _timed(out, "assign"):
        ids, _ = assign(x, centroids)
    priority = rng.permutation(n)
    with _timed(out, "dedup"):
        target, nn, _ = _dedup_all(x, ids, priority, eps, None)
    partner = np.full(n, -1)
    partner[copies], partner[orig] = orig, copies
    dropped = target >= 0
    out["total_wall_s"] = sum(out[f"{s}_wall_s"] for s in ("train", "assign", "dedup"))
    out["total_cpu_s"] = sum(out[f"{s}_cpu_s"] for s in ("train", "assign", "dedup"))
    out["vectors_per_s"] = n / out["total_wall_s"]
    out["planted"] = len(copies)
    out["dropped"] = int(dropped.sum())
    out["recall"] = float(np.mean(dropped[copies] | dropped[orig])) if len(copies) else 1.0
    out["false_drops"] = int(np.count_nonzero(dropped & (target != partner)))
    out["split_pairs"] = int(np.count_nonzero(ids[copies] != ids[orig]))
    out["nn_sim"] = similarity_quantiles(nn)
    out["eps_table"] = eps_table(nn)

    n_new = max(1, n // 100)
    new, orig2 = _synthetic(rng, topics, n_new, dup_fraction, x)
    all_x = np.concatenate([x, new])
    with _timed(out, "inc_assign"):
        new_ids, _ = assign(new, centroids)
    touched = np.zeros(len(centroids), dtype=bool)
    touched[new_ids] = True
    with _timed(out, "inc_dedup"):
        target2, _, rows = _dedup_all(
            all_x, np.r_[ids, new_ids], np.r_[priority, rng.permutation(n_new)], eps, touched
        )
    hit = (target2[n + n_new - len(orig2) :] >= 0) | (target2[orig2] >= 0)
    out.update(inc_new=n_new, inc_clusters=int(touched.sum()), inc_rows=rows,
               inc_planted=len(orig2), inc_recall=float(hit.mean()) if len(hit) else 1.0)
    out["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def _print(r: dict[str, Any]) -> None:
    print(f"semantic dedup bench: n={r['n']} dim={r['dim']} k={r['k']} eps={r['eps']}")
    print(f"{'step':<22}{'wall_s':>9}{'cpu_s':>9}{'vectors/s':>12}")
    for step, count in [("generate", r["n"]), ("train", r["n"]), ("assign", r["n"]),
                        ("dedup", r["n"]), ("total", r["n"]), ("inc_assign", r["inc_new"]),
                        ("inc_dedup", r["inc_rows"])]:
        wall = r[f"{step}_wall_s"]
        rate = count / max(wall, 1e-9)
        print(f"{step:<22}{wall:>9.2f}{r[f'{step}_cpu_s']:>9.2f}{rate:>12,.0f}")
    print(f"increment: {r['inc_new']} new vectors touched {r['inc_clusters']}/{r['k']} "
          f"clusters ({r['inc_rows']} rows re-deduped); recall of its {r['inc_planted']} "
          f"planted copies {r['inc_recall']:.4f}")
    print(f"planted copies {r['planted']}, dropped {r['dropped']}, recall {r['recall']:.4f} "
          f"({r['split_pairs']} pairs split across clusters), false drops {r['false_drops']}")
    print("nn_sim " + ", ".join(f"{k} {v:.4f}" for k, v in r["nn_sim"].items()))
    print(f"{'eps':>8}{'threshold':>11}{'clips':>9}{'share':>9}")
    for row in r["eps_table"]:
        print(f"{row['eps']:>8}{row['threshold']:>11.3f}{row['clips']:>9}{row['share']:>9.4f}")
    print(f"peak RSS {r['peak_rss_mib']:.0f} MiB")


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m clipfactory.bench.semantic``: run :func:`bench_semantic`, print a table."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--eps", type=float, default=0.05)
    p.add_argument("--dup-fraction", type=float, default=0.05)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    _print(bench_semantic(a.n, a.dim, a.dup_fraction, a.eps, a.seed))


if __name__ == "__main__":
    main()
