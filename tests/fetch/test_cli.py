"""`clipfactory retry`, `bench-fetch` and the ledger's per-item fetch state."""

from __future__ import annotations

import sqlite3
import time

from clipfactory.bench.fetch import run_fetch_bench
from clipfactory.cli import main
from clipfactory.fetch.retry import requeue_failed
from clipfactory.ledger import _SCHEMA, Ledger
from clipfactory.records import Rejection, SourceItem, VideoResult


def test_an_older_ledger_gets_the_fetch_columns(tmp_path):
    path = tmp_path / "ledger.sqlite"
    db = sqlite3.connect(path)
    db.executescript(_SCHEMA)
    db.close()
    ledger = Ledger(path)
    cols = {r[1] for r in ledger.db.execute("PRAGMA table_info(videos)")}
    ledger.close()
    assert {"spans", "last_error", "next_retry_at", "fetch"} <= cols


def test_requeue_picks_due_retryable_fetch_failures_only(tmp_path):
    ledger = Ledger(tmp_path / "ledger.sqlite")
    items = [SourceItem(item_key=k, source=f"http://h/{k}", spans=((0.0, 1.0, "c"),))
             for k in ("due", "later", "gone", "media", "policy")]
    ledger.register(items)
    assert next(ledger.pending()).spans == ((0.0, 1.0, "c"),)
    now = time.time()
    for key, stage, reason, at in [("due", "fetch", "http_429", now - 1),
                                   ("later", "fetch", "http_503", now + 999),
                                   ("gone", "fetch", "http_404", None),
                                   ("media", "analyse", "undecodable", None),
                                   ("policy", "policy", "license_denied", None)]:
        item = next(i for i in items if i.item_key == key)
        ledger.record(VideoResult(item=item, rejection=Rejection(key, item.source, stage,
                                                                 reason)), at)
    assert requeue_failed(ledger) == ["due"]
    assert requeue_failed(ledger, now=True) == ["later"]
    assert sorted(requeue_failed(ledger, all_failures=True)) == ["gone", "media"]
    row = ledger.videos("pending")[0]
    assert row["attempts"] == 1 and row["last_error"].startswith("fetch/")
    ledger.close()


def test_retry_command(tmp_path, capsys):
    assert main(["retry", str(tmp_path / "nothing")]) == 2
    ledger = Ledger(tmp_path / "ledger.sqlite")
    item = SourceItem(item_key="k", source="http://h/k")
    ledger.register([item])
    ledger.record(VideoResult(item=item, rejection=Rejection("k", "http://h/k", "fetch",
                                                             "http_429")), time.time() + 600)
    ledger.close()
    assert main(["retry", str(tmp_path)]) == 0
    assert "nothing to retry; the next retry is due" in capsys.readouterr().out


def test_bench_fetch_reports_throughput_and_limits():
    rows = run_fetch_bench(hosts=2, files_per_host=4, concurrency=(4,), per_host=2,
                           rate_per_host=0, throttle_bps=0, seconds=1.0, quiet=True)
    (row,) = rows
    assert row["files"] == 8 and row["failed"] == 0 and row["bytes_per_s"] > 0
    assert row["video_hours_per_hour"] > 0
    assert row["max_in_flight_seen"] <= 2
