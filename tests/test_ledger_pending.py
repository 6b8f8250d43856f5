"""Pending inputs come from the ledger page by page, never as one list."""

from __future__ import annotations

from clipfactory.ledger import Ledger
from clipfactory.records import Rejection, SourceItem, VideoResult


def _items(lo: int, hi: int) -> list[SourceItem]:
    return [SourceItem(item_key=f"id:v{i:05d}", source=f"/media/v{i:05d}.mp4", id=f"v{i:05d}",
                       spans=((0.0, 1.0, "c"),) if i % 2 else ())
            for i in range(lo, hi)]


def _done(item: SourceItem) -> VideoResult:
    return VideoResult(item=item, video_id=item.id)


def test_all_pending_items_once_in_order_while_the_consumer_records(tmp_path):
    ledger = Ledger(tmp_path / "ledger.sqlite")
    try:
        ledger.register(_items(0, 2500))
        ledger.set_video_state(["id:v00010"], "failed", "ingest", "x")  # not pending
        assert ledger.pending_count() == 2499
        got = []
        for item in ledger.pending():
            got.append(item.item_key)
            if item.id == "v00005":  # leaves pending before its page is read: not yielded
                ledger.set_video_state(["id:v01500"], "failed", "policy", "x")
            ledger.record(_done(item))  # as the pipeline does, on the same connection
        expected = [f"id:v{i:05d}" for i in range(2500) if i not in (10, 1500)]
        assert got == expected
        assert ledger.pending_count() == 0 and list(ledger.pending()) == []
    finally:
        ledger.close()


def test_items_keep_their_fields(tmp_path):
    ledger = Ledger(tmp_path / "ledger.sqlite")
    try:
        items = _items(0, 3)
        ledger.register([*items, Rejection("row:m:9", "m row 9", "ingest", "bad", "x")])
        assert list(ledger.pending()) == items
    finally:
        ledger.close()


def test_pages_are_read_as_the_consumer_goes(tmp_path):
    """After the first item only one page has been read: inputs registered then, after it,
    still come out, and the queries run are one per page consumed."""
    ledger = Ledger(tmp_path / "ledger.sqlite")
    queries: list[str] = []
    try:
        ledger.register(_items(0, 2500))
        ledger.db.set_trace_callback(
            lambda sql: queries.append(sql) if "state = 'pending' AND seq >" in sql else None)
        it = ledger.pending(page=1000)
        first = next(it)
        assert first.item_key == "id:v00000" and len(queries) == 1
        ledger.db.set_trace_callback(None)
        ledger.register(_items(2500, 2600))  # arrives while the run is under way
        ledger.db.set_trace_callback(
            lambda sql: queries.append(sql) if "state = 'pending' AND seq >" in sql else None)
        rest = [i.item_key for i in it]
        assert len(queries) == 3  # pages of 1000, 1000, then the last 600 (short: the end)
        assert [first.item_key, *rest] == [f"id:v{i:05d}" for i in range(2600)]
    finally:
        ledger.close()
