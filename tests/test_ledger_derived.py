"""The ledger's tally and dirty parts, kept by triggers, agree with a full recount."""

from __future__ import annotations

import dataclasses
import sqlite3

from clipfactory.ledger import Ledger
from clipfactory.records import ClipRecord, Rejection, SourceItem, VideoResult


def _clip(item: str, i: int, state: str = "staged") -> ClipRecord:
    return ClipRecord(clip_id=f"{item}-{i}", key=f"{item}_{i}", item_key=item, video_id=item,
                      source=f"/{item}.mp4", start_frame=i * 30, end_frame=i * 30 + 45,
                      start_s=i * 1.0, end_s=i * 1.0 + 1.5, fps=30.0, width=64, height=64,
                      state=state)


def _recount(db: sqlite3.Connection) -> dict:
    """What counts() said before the tally: a scan of every row."""
    clips = dict(db.execute("SELECT state, COUNT(*) FROM clips GROUP BY 1").fetchall())
    videos = dict(db.execute("SELECT state, COUNT(*) FROM videos GROUP BY 1").fetchall())
    dropped = dict(db.execute(
        "SELECT stage || '/' || reason, COUNT(*) FROM clips WHERE state = 'dropped'"
        " GROUP BY 1").fetchall())
    out_s = db.execute("SELECT COALESCE(SUM(json_extract(record, '$.end_s') - json_extract("
                       "record, '$.start_s')), 0) FROM clips WHERE state = 'sharded'").fetchone()[0]
    return {"clips": clips, "videos": videos, "dropped": dropped, "hours_out": out_s / 3600}


def _check(ledger: Ledger) -> None:
    got, want = ledger.counts(), _recount(ledger.db)
    assert got["clips"] == {"kept": want["clips"].get("sharded", 0),
                            "staged": want["clips"].get("staged", 0),
                            "dropped": want["clips"].get("dropped", 0)}
    assert got["videos"]["total"] == sum(want["videos"].values())
    for state in ("done", "failed", "pending", "removed"):
        assert got["videos"][state] == want["videos"].get(state, 0)
    assert got["dropped_by_reason"] == want["dropped"]
    assert abs(got["hours_out"] - want["hours_out"]) < 1e-9


def test_tally_follows_every_write_path(tmp_path) -> None:
    ledger = Ledger(tmp_path / "ledger.sqlite")
    items = [SourceItem(item_key=f"v{i}", source=f"/v{i}.mp4") for i in range(6)]
    ledger.register([*items, Rejection("bad", "/bad.mp4", "ingest", "invalid_id", "x")])
    _check(ledger)
    for it in items[:4]:
        ledger.record(VideoResult(item=it, clips=[_clip(it.item_key, k) for k in range(3)]))
    _check(ledger)
    sharded = ledger.clips("staged")[:5]
    for c in sharded:
        c.state, c.shard = "sharded", "shard-000000.tar"
    ledger.add_shards([("shard-000000.tar", "0" * 64, 10, 5)], sharded)
    dropped = ledger.clips("staged")[:2]
    for c in dropped:
        c.drop("dedup", "near_duplicate")
    ledger.update_clips(dropped)
    _check(ledger)
    # a retry records a video again (its clips are replaced), a takedown removes one
    ledger.record(VideoResult(item=items[0], clips=[_clip("v0", 9)]))
    ledger.set_video_state(["v1"], "removed", "takedown", "taken_down", "request 1")
    ledger.record(VideoResult(item=items[4], clips=[], rejection=Rejection(
        "v4", "/v4.mp4", "probe", "corrupt", "moov atom not found")))
    _check(ledger)
    assert ledger.counts()["failed_by_reason"] == {"ingest/invalid_id": 1, "probe/corrupt": 1}
    assert ledger.counts()["removed_by_reason"] == {"takedown/taken_down": 1}


def test_a_clip_recorded_again_under_another_input_is_counted_once(tmp_path) -> None:
    """The same bytes under two names give the same clip ids: a file replaced after it was
    cut leaves its dropped clips, and the copy of its old bytes is cut next. Recording them
    replaces the dropped rows, which must leave the tally too."""
    ledger = Ledger(tmp_path / "ledger.sqlite")
    a, b = SourceItem(item_key="a", source="/a.mp4"), SourceItem(item_key="b", source="/b.mp4")
    ledger.register([a, b])
    ledger.record(VideoResult(item=a, clips=[_clip("v", k) for k in range(2)]))
    gone = ledger.clips_of(["a"])
    for c in gone:
        c.drop("ingest", "source_replaced")
    ledger.update_clips(gone)
    ledger.record(VideoResult(item=b, clips=[
        dataclasses.replace(_clip("v", k), item_key="b") for k in range(2)]))
    _check(ledger)
    assert ledger.counts()["clips"] == {"kept": 0, "staged": 2, "dropped": 0}


def test_a_ledger_from_before_the_tally_is_filled_on_open(tmp_path) -> None:
    path = tmp_path / "ledger.sqlite"
    ledger = Ledger(path)
    it = SourceItem(item_key="v0", source="/v0.mp4")
    ledger.register([it])
    ledger.record(VideoResult(item=it, clips=[_clip("v0", k) for k in range(4)]))
    want = ledger.counts()
    # what an older clipfactory left: no tally, no triggers, no dirty parts
    for (name,) in ledger.db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
        ledger.db.execute(f"DROP TRIGGER {name}")
    ledger.db.execute("DROP TABLE tally")
    ledger.db.execute("DELETE FROM dirty_rejected")
    ledger.db.execute("DELETE FROM meta WHERE key = 'derived_version'")
    ledger.close()
    again = Ledger(path)
    assert again.counts() == want
    assert [r[0] for r in again.db.execute("SELECT part FROM dirty_rejected")] == [0]
