"""The persistent dedup index gives a run the decisions a full pass over the dataset would."""

from __future__ import annotations

import random

from clipfactory.config import DedupConfig
from clipfactory.dedup import DedupItem, find_duplicates
from clipfactory.dedup.store import WINDOW, DedupStore, incremental_duplicates
from clipfactory.ledger import Ledger


def _flip(h: int, rng: random.Random, bits: int) -> int:
    for b in rng.sample(range(64), bits):
        h ^= 1 << b
    return h


def _population(rng: random.Random, n: int, prefix: str) -> list[DedupItem]:
    return [DedupItem(f"{prefix}{i:05d}", f"x{prefix}{i}",
                      tuple(rng.getrandbits(64) for _ in range(5)), 640, 360, 120)
            for i in range(n)]


def _store(tmp_path, items: list[DedupItem], cfg: DedupConfig) -> DedupStore:
    ledger = Ledger(tmp_path / "ledger.sqlite")
    store = DedupStore(ledger)
    store.rebuild(cfg)  # empty ledger: the index is ready and empty
    store.add(items)
    return store


def test_new_clips_meet_their_duplicates_in_the_index(tmp_path) -> None:
    rng = random.Random(7)
    cfg = DedupConfig()
    existing = _population(rng, 3000, "old")
    store = _store(tmp_path, existing, cfg)
    assert store.ready(cfg) and store.size() == 3000
    base = existing[10]
    new = [
        DedupItem("z-exact", base.exact_hash, tuple(rng.getrandbits(64) for _ in range(5)),
                  640, 360, 120),  # same decoded content, other frame hashes
        DedupItem("z-near", "n1", tuple(_flip(h, rng, 3) for h in existing[20].phash),
                  640, 360, 120),  # a re-encode of old00020
        DedupItem("new-better", "n2", tuple(_flip(h, rng, 2) for h in existing[30].phash),
                  1920, 1080, 120),  # a sharper copy: replaces the indexed clip
        DedupItem("new-twin-a", "n3", tuple(rng.getrandbits(64) for _ in range(5)), 640, 360, 90),
        *_population(rng, 50, "fresh"),
    ]
    new.append(DedupItem("new-twin-b", "n4", tuple(_flip(h, rng, 1) for h in new[3].phash),
                         640, 360, 120))  # two new clips that duplicate each other
    got = {(d.clip_id, d.kept, d.reason) for d in incremental_duplicates(store, new, cfg)}
    full = find_duplicates([*existing, *new], cfg)
    assert got == {(d.clip_id, d.kept, d.reason) for d in full}
    assert got == {("z-exact", "old00010", "exact_duplicate"),
                   ("z-near", "old00020", "near_duplicate"),
                   ("old00030", "new-better", "near_duplicate"),
                   ("new-twin-a", "new-twin-b", "near_duplicate")}


def test_a_giant_bucket_is_read_around_the_new_clip(tmp_path) -> None:
    """All-black frames hash to 0: thousands share every band value, a lookup reads a window."""
    rng = random.Random(3)
    cfg = DedupConfig()
    black = [DedupItem(f"black{i:05d}", f"b{i}", (0, 0, rng.getrandbits(64), rng.getrandbits(64),
                                                   rng.getrandbits(64)), 640, 360, 100)
             for i in range(2000)]
    store = _store(tmp_path, black, cfg)
    target = black[1234]
    copy = DedupItem("copy", "c", tuple(_flip(h, rng, 1) if i > 1 else h
                                        for i, h in enumerate(target.phash)), 640, 360, 100)
    stats: dict = {}
    dups = incremental_duplicates(store, [copy], cfg, stats)
    assert [(d.clip_id, d.kept) for d in dups] == [("copy", "black01234")]
    # 3 positions x 3 bands of random hashes (exhaustive, tiny buckets) + 2 positions x 3 bands
    # of the shared value 0, each read as a window of 2 * WINDOW + 1 around the new clip
    assert stats["candidates"] <= 6 * (2 * WINDOW + 1) + 9 * 5


def test_the_index_forgets_clips_that_leave_the_dataset(tmp_path) -> None:
    from clipfactory.records import ClipRecord, SourceItem, VideoResult

    cfg = DedupConfig()
    ledger = Ledger(tmp_path / "ledger.sqlite")
    ledger.register([SourceItem(item_key="v1", source="/v1.mp4")])
    clips = [ClipRecord(clip_id=f"c{i}", key=f"c{i}", item_key="v1", video_id="v1",
                        source="/v1.mp4", start_frame=0, end_frame=10, start_s=0.0,
                        end_s=1.0, fps=10.0, width=64, height=64, state="staged",
                        exact_hash=f"h{i}", phash=[i, i + 1, i + 2, i + 3, i + 4])
             for i in range(3)]
    ledger.record(VideoResult(item=SourceItem(item_key="v1", source="/v1.mp4"), clips=clips))
    store = DedupStore(ledger)
    store.rebuild(cfg)
    store.add(DedupItem(c.clip_id, c.exact_hash, tuple(c.phash), 64, 64, 10) for c in clips)
    assert store.size() == 3
    clips[0].drop("dedup", "near_duplicate")
    ledger.update_clips([clips[0]])
    assert store.indexed(["c0", "c1", "c2"]) == {"c1", "c2"}
    # a retry records the video again: its old clips are deleted, and leave the index
    ledger.record(VideoResult(item=SourceItem(item_key="v1", source="/v1.mp4"), clips=[]))
    assert store.size() == 0
    probe = DedupItem("p", "h1", (1, 2, 3, 4, 5), 64, 64, 10)
    assert incremental_duplicates(store, [probe], cfg) == []
