"""Global dedup: exact groups, LSH near-duplicate groups, keeper choice, phash64."""

from __future__ import annotations

import random

import numpy as np
import pytest

from clipfactory.config import DedupConfig
from clipfactory.dedup import DedupItem, Duplicate, find_duplicates, hamming, phash64
from clipfactory.dedup.exact import exact_groups
from clipfactory.dedup.perceptual import near_duplicate_groups


def item(cid, exact=None, ph=(), w=640, h=360, n=100):
    return DedupItem(cid, exact, tuple(ph), w, h, n)


def flip(h: int, bits) -> int:
    for b in bits:
        h ^= 1 << b
    return h


def near(ph, rng: random.Random, nbits: int):
    """Each frame hash with ``nbits`` distinct random bits flipped."""
    return tuple(flip(h, rng.sample(range(64), nbits)) for h in ph)


def rand_ph(rng: random.Random, k: int = 5):
    return tuple(rng.getrandbits(64) for _ in range(k))


# --- exact --------------------------------------------------------------------------------


def test_exact_group_keeps_highest_resolution():
    items = [
        item("a", "h1", w=640, h=360),
        item("b", "h1", w=1920, h=1080),
        item("c", "h1", w=1280, h=720),
        item("d", "h2"),
    ]
    dups = find_duplicates(items, DedupConfig())
    assert dups == [
        Duplicate("a", "b", "exact_duplicate", 0.0),
        Duplicate("c", "b", "exact_duplicate", 0.0),
    ]


def test_exact_none_never_matches_and_groups_are_linear():
    assert exact_groups([None, None, "x", "y", "x", ""]) == [[2, 4]]
    assert find_duplicates([item("a"), item("b")], DedupConfig()) == []


def test_tie_break_frames_then_clip_id():
    items = [item("z", "h", n=50), item("y", "h", n=80), item("x", "h", n=80)]
    assert {d.clip_id: d.kept for d in find_duplicates(items, DedupConfig())} == {
        "z": "x",
        "y": "x",
    }
    # input order does not matter
    again = find_duplicates(list(reversed(items)), DedupConfig())
    assert {d.clip_id: d.kept for d in again} == {"z": "x", "y": "x"}


# --- near ---------------------------------------------------------------------------------


def test_near_duplicates_found_through_banding():
    rng = random.Random(1)
    base = rand_ph(rng)
    others = [item(f"o{i}", ph=rand_ph(rng)) for i in range(200)]
    # 3 flipped bits per frame always leave one 16-bit band intact (pigeonhole)
    items = [item("a", ph=base, w=1280, h=720), item("b", ph=near(base, rng, 3)), *others]
    stats: dict = {}
    dups = find_duplicates(items, DedupConfig(max_hamming=10), stats=stats)
    assert dups == [Duplicate("b", "a", "near_duplicate", 3.0)]
    assert stats["matched_pairs"] == 1


def test_median_over_frames_decides():
    rng = random.Random(2)
    base = rand_ph(rng)
    # 3 of 5 frames identical, 2 frames completely different: median distance 0
    mixed = (*base[:3], base[3] ^ (2**64 - 1), base[4] ^ (2**64 - 1))
    assert near_duplicate_groups([base, mixed], 10) == [[0, 1]]
    # 3 of 5 frames far: median above the limit even though 2 frames are identical
    far = (base[0], base[1], *rand_ph(rng, 3))
    assert near_duplicate_groups([base, far], 10) == []


def test_unrelated_and_mismatched_k_not_grouped():
    rng = random.Random(3)
    base = rand_ph(rng)
    items = [rand_ph(rng) for _ in range(500)] + [base, base[:4], ()]
    assert near_duplicate_groups(items, 10) == []
    assert near_duplicate_groups([(), ()], 10) == []


def test_transitive_group_resolves_to_one_kept_clip():
    rng = random.Random(4)
    a = rand_ph(rng)
    # a - b - c chain: 3 bits per hop on the same frames, so a-c is 6 bits apart
    b = tuple(flip(h, (0, 20, 40)) for h in a)
    c = tuple(flip(h, (1, 21, 41)) for h in b)
    items = [
        item("a", ph=a, w=320, h=180),
        item("b", ph=b, w=320, h=180),
        item("c", ph=c, w=1920, h=1080),
        item("d", "e1", ph=a, w=3840, h=2160),  # exact dup of e: goes in the exact pass
        item("e", "e1", ph=a, w=320, h=180),
    ]
    dups = {d.clip_id: d for d in find_duplicates(items, DedupConfig(max_hamming=3))}
    assert dups["e"] == Duplicate("e", "d", "exact_duplicate", 0.0)
    # near pass on survivors a, b, c, d: d is identical to a and has the most pixels
    assert {k: (d.kept, d.reason) for k, d in dups.items() if k != "e"} == {
        "a": ("d", "near_duplicate"),
        "b": ("d", "near_duplicate"),
        "c": ("d", "near_duplicate"),
    }
    assert dups["c"].distance == 6.0  # measured directly to the kept clip
    kept = {d.kept for d in dups.values()}
    assert kept.isdisjoint(dups)  # a kept clip is never itself removed


def test_switches():
    items = [item("a", "h", ph=(1, 2, 3)), item("b", "h", ph=(1, 2, 3)), item("c", ph=(1, 2, 3))]
    assert find_duplicates(items, DedupConfig(enabled=False)) == []
    only_near = find_duplicates(items, DedupConfig(exact=False))
    assert {d.reason for d in only_near} == {"near_duplicate"} and len(only_near) == 2
    only_exact = find_duplicates(items, DedupConfig(perceptual=False))
    assert [(d.clip_id, d.reason) for d in only_exact] == [("b", "exact_duplicate")]


def test_degenerate_bucket_is_not_quadratic():
    rng = random.Random(5)
    black = [item(f"k{i:04d}", ph=(0, 0, 0, 0, 0)) for i in range(3000)]
    half = [item(f"h{i:04d}", ph=(0, *rand_ph(rng, 4))) for i in range(3000)]
    stats: dict = {}
    dups = find_duplicates(black + half, DedupConfig(), window=8, stats=stats)
    assert {d.kept for d in dups} == {"k0000"} and len(dups) == 2999
    # the 6000-member buckets would give ~18M pairs each; the window bounds them to n * 8
    assert stats["candidate_pairs"] <= 6000 * 8 * 20


def test_many_random_items_verify_few_pairs():
    rng = random.Random(6)
    items = [item(f"c{i:05d}", ph=rand_ph(rng)) for i in range(20_000)]
    planted = [item(f"d{i:05d}", ph=near(items[i].phash, rng, 2), w=10, h=10) for i in range(50)]
    stats: dict = {}
    dups = find_duplicates(items + planted, DedupConfig(), stats=stats)
    assert sorted((d.clip_id, d.kept) for d in dups) == [
        (f"d{i:05d}", f"c{i:05d}") for i in range(50)
    ]
    # random 16-bit band collisions: ~20 tables * n^2 / 2^17 = 61k, far below n^2 / 2 = 2e8
    assert stats["verified_pairs"] < 150_000


def test_wider_bands_for_large_populations():
    rng = random.Random(7)
    hashes = [rand_ph(rng, 2) for _ in range(3000)]
    hashes.append(tuple(flip(h, (0,)) for h in hashes[0]))
    stats: dict = {}
    assert near_duplicate_groups(hashes, 4, bands=2, stats=stats) == [[0, 3000]]
    assert stats["bands"] == 2 and stats["verified_pairs"] < 100


# --- phash64 ------------------------------------------------------------------------------


def texture(seed: int, h: int = 90, w: int = 160) -> np.ndarray:
    """Smooth random texture: low-pass filtered noise plus coarse blocks."""
    r = np.random.default_rng(seed)
    f = np.fft.fft2(r.normal(size=(h, w)))
    fy, fx = np.fft.fftfreq(h)[:, None], np.fft.fftfreq(w)[None]
    smooth = np.real(np.fft.ifft2(f * np.exp(-(fy**2 + fx**2) * 400)))
    smooth = (smooth - smooth.min()) / np.ptp(smooth)
    blocks = np.kron(r.random((9, 16)), np.ones((10, 10)))[:h, :w]
    return (255 * (0.5 * smooth + 0.5 * blocks)).astype(np.uint8)


def test_phash_stable_under_mild_changes():
    rng = np.random.default_rng(0)
    for seed in range(5):
        img = texture(seed)
        h = phash64(img)
        assert 0 <= h < 2**64
        noisy = np.clip(img + rng.normal(0, 8, img.shape), 0, 255).astype(np.uint8)
        brighter = np.clip(img.astype(int) + 20, 0, 255).astype(np.uint8)
        half = img.reshape(45, 2, 80, 2).mean(axis=(1, 3))  # 2x downscale, float
        double = np.kron(img, np.ones((2, 2), np.uint8))  # 2x upscale
        quantised = (img // 16) * 16 + 8  # coarse levels, like heavy compression
        for variant in (noisy, brighter, half, double, quantised, img.astype(np.float32)):
            assert hamming(h, phash64(variant)) <= 6


def test_phash_far_for_different_textures():
    hashes = [phash64(texture(s)) for s in range(8)]
    for i in range(len(hashes)):
        for j in range(i + 1, len(hashes)):
            assert hamming(hashes[i], hashes[j]) >= 20


def test_phash_rejects_bad_input():
    with pytest.raises(ValueError):
        phash64(np.zeros((4, 4, 3), np.uint8))
    assert phash64(np.zeros((5, 7), np.uint8)) == phash64(np.zeros((90, 160), np.uint8))
