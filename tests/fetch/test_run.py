"""End to end: a manifest of URLs on a loopback server through `run` and `retry`."""

from __future__ import annotations

import json
import sqlite3
import time

import pyarrow.parquet as pq

from clipfactory.config import Config
from clipfactory.fetch.retry import retry
from clipfactory.pipeline import run


def _cfg():
    cfg = Config(workers=1, skip=["filters", "dedup"])
    cfg.clips.min_s = 1.0
    cfg.fetch.rate_per_host = 0
    cfg.fetch.allow_private_network = True  # the servers are on 127.0.0.1
    cfg.fetch.backoff_base_s = 0.05
    cfg.fetch.max_attempts = 2
    cfg.fetch.min_speed_bps = 20_000
    cfg.fetch.min_speed_window_s = 0.5
    return cfg


def _videos(out):
    db = sqlite3.connect(out / "ledger.sqlite")
    db.row_factory = sqlite3.Row
    rows = {r["manifest_id"]: dict(r) for r in db.execute("SELECT * FROM videos")}
    clips = [(r[0], json.loads(r[1])) for r in db.execute("SELECT item_key, record FROM clips")]
    db.close()
    return rows, clips


def test_run_fetches_cuts_spans_records_failures_and_retries(server, video_bytes, tmp_path):
    good = server.add("/v/good.mp4", video_bytes)
    flaky = server.add("/v/flaky.mp4", video_bytes, fault="status", status=500, times=-1)
    slow = server.add("/v/slow.mp4", video_bytes, fault="trickle", trickle_bytes=512,
                      trickle_s=0.05)
    page = server.add("/v/page.mp4", b"<!doctype html><html>sign in</html>" * 30,
                      content_type="text/html")
    rows = [
        {"id": "good", "url": good, "spans": [[0.3, 1.9], [2.3, 4.5]],
         "captions": ["a first walk", "a second walk"]},
        {"id": "gone", "url": server.url("/v/gone.mp4")},
        {"id": "flaky", "url": flaky},
        {"id": "slow", "url": slow},
        {"id": "page", "url": page},
    ]
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    out = tmp_path / "out"
    cfg = _cfg()
    summary = run(manifest, out, cfg)

    videos, clips = _videos(out)
    assert videos["good"]["state"] == "done"
    assert {k: (v["stage"], v["reason"]) for k, v in videos.items() if k != "good"} == {
        "gone": ("fetch", "http_404"), "flaky": ("fetch", "http_500"),
        "slow": ("fetch", "too_slow"), "page": ("fetch", "html_instead_of_video")}
    for k in ("gone", "flaky", "slow", "page"):
        assert videos[k]["attempts"] == 1 and videos[k]["last_error"].startswith("fetch/")
    assert videos["gone"]["next_retry_at"] is None and videos["page"]["next_retry_at"] is None
    assert videos["flaky"]["next_retry_at"] > time.time() + 60
    assert "after 2 attempts" in videos["flaky"]["detail"]
    assert {k for k, _ in clips} == {"id:good"}  # nothing is written for a failed item
    assert json.loads(videos["good"]["fetch"])["fetcher"] == "http"

    kept = pq.read_table(out / "index.parquet").to_pylist()
    assert {c["source"] for c in kept} == {good}
    for c in kept:  # every kept clip lies inside a span and carries that span's caption
        extra = json.loads(c["extra"])
        lo, hi = extra["span"]
        assert lo - 1e-6 <= c["start_s"] and c["end_s"] <= hi + 0.05
        assert extra["caption"] == {0: "a first walk", 1: "a second walk"}[extra["span_index"]]
    assert sorted({json.loads(c["extra"])["caption"] for c in kept}) == [
        "a first walk", "a second walk"]
    assert not list((out / "sources").glob("*.mp4"))  # fetched sources go once recorded
    assert len(list((out / "sources" / ".partial").glob("*.part"))) == 1  # the slow one
    assert summary["throughput"]["fetch"]["failed"] == 4

    # `retry` waits for the next retry time unless told otherwise, and then runs only those
    server.routes["/v/flaky.mp4"].fault = None
    server.routes["/v/slow.mp4"].fault = None
    assert retry(out)["retry"]["requeued"] == 0
    before = server.routes["/v/slow.mp4"].served
    summary = retry(out, now=True)
    assert summary["retry"]["requeued"] == 2  # flaky and slow; 404 and HTML are permanent
    videos, _ = _videos(out)
    assert videos["flaky"]["state"] == "done" and videos["flaky"]["attempts"] == 2
    assert videos["slow"]["state"] == "done"
    assert server.routes["/v/slow.mp4"].ranges[before].startswith("bytes=")  # resumed
    assert videos["gone"]["state"] == "failed" and videos["page"]["state"] == "failed"


def _inputs(out) -> dict[str, tuple[str, int]]:
    """source -> (state, clips sharded) of every input."""
    db = sqlite3.connect(out / "ledger.sqlite")
    try:
        rows = db.execute("SELECT v.source, v.state, (SELECT COUNT(*) FROM clips c WHERE "
                          "c.item_key = v.item_key AND c.state = 'sharded') FROM videos v")
        return {src: (state, kept) for src, state, kept in rows}
    finally:
        db.close()


def test_a_txt_list_of_urls_and_paths_is_a_manifest_read_again_from_where_it_stopped(
        server, video_file, video_bytes, tmp_path):
    """One URL or path per line, comments and blank lines as in yt-dlp's batch files: each
    line is an input; lines appended later are the only ones a second run reads."""
    # each with other bytes than the local file's (else a duplicate source)
    a = server.add("/v/a.mp4", video_bytes + b"\0")
    b = server.add("/v/b.mp4", video_bytes + b"\0\0")
    listing = tmp_path / "urls.txt"
    listing.write_text(f"# clips for the demo\n{a}\n\n; the local one\n{video_file}\n",
                       encoding="utf-8")
    out = tmp_path / "out"
    cfg = _cfg()  # (dedup off: the three inputs' clips are alike)
    run(listing, out, cfg)
    got = _inputs(out)
    assert sorted(got) == sorted([a, str(video_file)])
    assert all(state == "done" and kept == 2 for state, kept in got.values()), got

    with listing.open("a", encoding="utf-8") as fh:
        fh.write(f"{b}\n")
    requests = server.media_requests
    run(listing, out, cfg)
    got = _inputs(out)
    assert sorted(got) == sorted([a, b, str(video_file)])
    assert all(state == "done" and kept == 2 for state, kept in got.values()), got
    assert server.media_requests == requests + 1  # only the new line's video was fetched


def test_rows_that_cut_spans_of_one_url_each_get_their_clips(server, video_bytes, tmp_path):
    """A CSV listing three spans of one video, a row each: one download, and every row cut
    (two of the three were lost, one to a clash of the downloads' files and one to a file
    deleted while it waited)."""
    url = server.add("/v/a.mp4", video_bytes)
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"id,url,start,end\nfirst,{url},0.2,2.0\nsecond,{url},2.3,4.5\n"
                        f"whole,{url},0.0,4.5\n", encoding="utf-8")
    out = tmp_path / "out"
    run(manifest, out, _cfg())
    videos, clips = _videos(out)
    assert {k: v["state"] for k, v in videos.items()} == {
        "first": "done", "second": "done", "whole": "done"}
    assert server.media_requests == 1
    spans = {"first": (0.2, 2.0), "second": (2.3, 4.5), "whole": (0.0, 4.5)}
    by_id = {}
    for key, rec in clips:
        vid = next(k for k, v in videos.items() if v["item_key"] == key)
        by_id.setdefault(vid, []).append(rec)
        lo, hi = spans[vid]
        assert lo - 1e-6 <= rec["start_s"] and rec["end_s"] <= hi + 0.04
    assert sorted(by_id) == ["first", "second", "whole"]
    assert not list((out / "sources").glob("*.mp4"))  # deleted once the last row was cut
