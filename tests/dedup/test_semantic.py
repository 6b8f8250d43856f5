"""Semantic dedup: greedy cluster decisions, spherical k-means, assignment, eps guide, bench."""

from __future__ import annotations

import math

import numpy as np
import pytest

from clipfactory.bench.semantic import bench_semantic
from clipfactory.dedup import semantic
from clipfactory.dedup.semantic import (
    assign,
    auto_clusters,
    dedup_cluster,
    eps_table,
    similarity_quantiles,
    train_kmeans,
)


def at_angle(cos: float, axis: int, base: int = 0, dim: int = 4) -> np.ndarray:
    """Unit vector at cosine ``cos`` from ``e_base``, tilted towards ``e_axis``."""
    v = np.zeros(dim, dtype=np.float32)
    v[base], v[axis] = cos, math.sqrt(1 - cos * cos)
    return v


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def reference(x: np.ndarray, eps: float) -> tuple[list[bool], list[int]]:
    """Plain greedy walk, float64."""
    s = x.astype(np.float64) @ x.T.astype(np.float64)
    kept: list[int] = []
    dup = [-1] * len(x)
    for i in range(len(x)):
        sims = [s[i, j] for j in kept]
        if sims and max(sims) >= 1 - eps:
            dup[i] = kept[int(np.argmax(sims))]
        else:
            kept.append(i)
    return [d < 0 for d in dup], dup


# a = e0; b at cos 0.99 from a; c at cos 0.9 from a (cos(b, c) = 0.891)
A = at_angle(1.0, 1)
B = at_angle(0.99, 1)
C = at_angle(0.9, 2)
ABC = np.stack([A, B, C])


def test_eps_decides_which_pairs_are_duplicates():
    r = dedup_cluster(ABC, 0.05)
    assert r.kept.tolist() == [True, False, True]
    assert r.duplicate_of.tolist() == [-1, 0, -1]
    assert r.similarity[1] == pytest.approx(0.99, abs=1e-6)
    assert np.isnan(r.similarity[[0, 2]]).all()

    tight = dedup_cluster(ABC, 0.005)
    assert tight.kept.all() and (tight.duplicate_of == -1).all()


def test_eps_none_keeps_all_but_measures_nearest_neighbours():
    r = dedup_cluster(ABC, None)
    assert r.kept.all() and (r.duplicate_of == -1).all() and np.isnan(r.similarity).all()
    assert r.nn_sim == pytest.approx([0.99, 0.99, 0.9], abs=1e-6)
    assert r.nn_sim.dtype == np.float32 and r.similarity.dtype == np.float32


def test_earlier_member_is_kept():
    r = dedup_cluster(np.stack([B, A, C]), 0.05)
    assert r.kept.tolist() == [True, False, True]
    assert r.duplicate_of.tolist() == [-1, 0, -1]


def test_duplicate_points_at_most_similar_kept_member():
    # a and c are kept (cos 0.9 < 0.95); d is within 0.95 of both, nearer to c
    d = unit((0.4 * A + 0.6 * C)[None])[0]
    r = dedup_cluster(np.stack([A, C, d]), 0.05)
    assert r.kept.tolist() == [True, True, False]
    assert r.duplicate_of[2] == 1
    assert r.similarity[2] == pytest.approx(float(d @ C), abs=1e-6)


def test_chain_does_not_drop_through_a_dropped_member():
    # angles 0, 14 and 28 degrees in one plane: a~b and b~c at cos 0.970, a~c at 0.883
    a, b, c = (at_angle(math.cos(math.radians(t)), 1) for t in (0, 14, 28))
    r = dedup_cluster(np.stack([a, b, c]), 0.05)
    assert r.kept.tolist() == [True, False, True]
    assert r.duplicate_of.tolist() == [-1, 0, -1]


def test_singleton_and_empty_clusters():
    r = dedup_cluster(A[None], 0.05)
    assert r.kept.tolist() == [True] and np.isnan(r.nn_sim[0])
    empty = dedup_cluster(np.zeros((0, 4), np.float32), 0.05)
    assert empty.kept.shape == (0,) and empty.nn_sim.shape == (0,)
    with pytest.raises(ValueError):
        dedup_cluster(ABC, -0.1)


def test_blocked_similarity_matches_reference(monkeypatch):
    rng = np.random.default_rng(3)
    base = unit(rng.standard_normal((20, 16)))
    x = unit(base[rng.integers(20, size=60)] + 0.06 * rng.standard_normal((60, 16)))
    whole = dedup_cluster(x, 0.05)
    monkeypatch.setattr(semantic, "_BLOCK_ELEMS", 7 * 60)  # 7-row blocks
    blocked = dedup_cluster(x, 0.05)
    kept, dup = reference(x, 0.05)
    assert 0 < sum(kept) < 60
    for r in (whole, blocked):
        assert r.kept.tolist() == kept and r.duplicate_of.tolist() == dup
    np.testing.assert_allclose(blocked.nn_sim, whole.nn_sim, atol=1e-6)
    s = x @ x.T
    np.fill_diagonal(s, -np.inf)
    np.testing.assert_allclose(whole.nn_sim, s.max(axis=1), atol=1e-6)


def blobs(seed: int = 0, per: int = 50, dim: int = 16) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(4), per)
    centres = np.eye(dim, dtype=np.float32)[:4]
    return unit(centres[labels] + 0.05 * rng.standard_normal((len(labels), dim))), labels


@pytest.mark.parametrize("seed", range(4))
def test_kmeans_separates_blobs(seed):
    x, labels = blobs(seed)
    ids, sims = assign(x, train_kmeans(x, 4, seed=seed))
    per_blob = [set(ids[labels == b].tolist()) for b in range(4)]
    assert all(len(s) == 1 for s in per_blob)
    assert len(set.union(*per_blob)) == 4
    assert sims.min() > 0.9


def test_kmeans_is_deterministic_and_unit_norm():
    x, _ = blobs(1, per=300)
    a = train_kmeans(x, 6, seed=5, sample=500)
    b = train_kmeans(x, 6, seed=5, sample=500)
    assert a.dtype == np.float32 and a.shape == (6, 16)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1, atol=1e-5)


def test_kmeans_clamps_k_and_handles_tiny_inputs():
    x = ABC.astype(np.float16)
    c = train_kmeans(x, 10)
    assert c.shape == (3, 4)
    assert sorted(assign(x, c)[0].tolist()) == [0, 1, 2]
    one = train_kmeans(B[None], 5)
    np.testing.assert_allclose(one, B[None], atol=1e-6)
    # 8 copies of one point and two others: the k-means++ weights find all three
    many = np.stack([A] * 8 + [B, C])
    ids, sims = assign(many, train_kmeans(many, 3))
    assert len(set(ids.tolist())) == 3 and sims.min() > 0.9999
    with pytest.raises(ValueError):
        train_kmeans(np.zeros((0, 4), np.float32), 3)


def test_assign_matches_brute_force():
    rng = np.random.default_rng(7)
    x = unit(rng.standard_normal((300, 32)))
    c = unit(rng.standard_normal((7, 32)))
    ids, sims = assign(x, c, chunk=16)
    s = x.astype(np.float64) @ c.T.astype(np.float64)
    assert ids.dtype == np.int32 and sims.dtype == np.float32
    np.testing.assert_array_equal(ids, s.argmax(axis=1))
    np.testing.assert_allclose(sims, s.max(axis=1), atol=1e-5)
    ids16, _ = assign(x.astype(np.float16), c)
    assert np.mean(ids16 == ids) > 0.95


def test_auto_clusters():
    assert auto_clusters(0) == 1
    assert auto_clusters(1000) == 1
    assert auto_clusters(1001) == 2
    assert auto_clusters(10**9) == 16384
    assert auto_clusters(5000, cluster_size=100, max_clusters=20) == 20


def test_eps_table_and_quantiles():
    nn = np.array([0.9995, 0.996, 0.985, 0.97, 0.5, np.nan], dtype=np.float32)
    rows = eps_table(nn, (0.001, 0.005, 0.02, 0.05, 0.6))
    assert [r["clips"] for r in rows] == [1, 2, 3, 4, 5]
    assert rows[1]["threshold"] == pytest.approx(0.995)
    assert rows[0]["share"] == pytest.approx(1 / 6)
    q = similarity_quantiles(nn)
    assert set(q) == {"p50", "p90", "p99", "max"}
    assert q["p50"] == pytest.approx(0.985) and q["max"] == pytest.approx(0.9995)
    assert math.isnan(similarity_quantiles(np.array([np.nan]))["max"])


def test_small_bench_recovers_planted_duplicates():
    r = bench_semantic(n=5000, dim=64)
    assert r["k"] == 5 and r["planted"] == 250
    assert r["recall"] > 0.9
    assert r["false_drops"] <= 5
    assert r["inc_clusters"] >= 1 and r["inc_recall"] > 0.5
    assert r["eps_table"][4]["eps"] == 0.05
