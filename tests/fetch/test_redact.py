"""Signed URLs: fetched as given, published without their credentials."""

from __future__ import annotations

import json
import sqlite3

import pyarrow.parquet as pq

from clipfactory.pipeline import run
from clipfactory.provenance.takedown import takedown, takedown_rules
from clipfactory.redact import public_url, redact_text
from tests.fetch.test_run import _cfg

SECRET = "c0ffee5ecret"
KEY_ID = "AKIAIOSFODNN7EXAMPLE"


def test_public_url_redacts_what_signs_and_keeps_the_rest_as_given():
    s3 = ("https://b.s3.amazonaws.com/v%20a.mp4?X-Amz-Algorithm=AWS4-HMAC-SHA256"
          f"&X-Amz-Credential={KEY_ID}%2F20261205%2Fus-east-1&X-Amz-Date=20261205T000000Z"
          f"&X-Amz-Expires=3600&X-Amz-SignedHeaders=host&X-Amz-Signature={SECRET}")
    assert public_url(s3) == (
        "https://b.s3.amazonaws.com/v%20a.mp4?X-Amz-Algorithm=AWS4-HMAC-SHA256"
        "&X-Amz-Credential=REDACTED&X-Amz-Date=20261205T000000Z&X-Amz-Expires=3600"
        "&X-Amz-SignedHeaders=host&X-Amz-Signature=REDACTED")
    assert public_url(f"https://d.cloudfront.net/a.mp4?Expires=9&Signature={SECRET}"
                      "&Key-Pair-Id=K2") == \
        "https://d.cloudfront.net/a.mp4?Expires=9&Signature=REDACTED&Key-Pair-Id=REDACTED"
    assert public_url(f"https://a.blob.core.windows.net/c/v.mp4?sv=2022&sp=r&sig={SECRET}") \
        == "https://a.blob.core.windows.net/c/v.mp4?sv=2022&sp=r&sig=REDACTED"
    assert public_url(f"https://ann:{SECRET}@cdn.example.org/v.mp4?access_token={SECRET}"
                      "&w=640#t=3") == "https://cdn.example.org/v.mp4?access_token=REDACTED&w=640#t=3"
    for plain in ("https://www.youtube.com/watch?v=abc&t=10", "https://x.org/a.mp4?author=ann",
                  "https://conf.example/talks?session=keynote&day=2",
                  "/data/videos/a.mp4", "s3://bucket/a.mp4", "", None):
        assert public_url(plain) == plain
    assert public_url(f"http://[::1/v.mp4?token={SECRET}") == "http://[::1/v.mp4?REDACTED"
    assert redact_text(f"HTTP 404 from https://x.org/a.mp4?token={SECRET} (after 1 attempt)") \
        == "HTTP 404 from https://x.org/a.mp4?token=REDACTED (after 1 attempt)"


def test_a_run_fetches_signed_urls_and_publishes_none_of_their_secrets(server, video_bytes,
                                                                       tmp_path):
    query = (f"?X-Amz-Credential={KEY_ID}%2F20261205&X-Amz-Expires=600"
             f"&X-Amz-Signature={SECRET}")
    good = server.add("/v/good.mp4", video_bytes) + query
    gone = server.url("/v/gone.mp4") + f"?token={SECRET}"
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("\n".join(json.dumps(r) for r in [
        {"id": "good", "url": good, "license": "CC-BY-4.0"}, {"id": "gone", "url": gone}]),
        encoding="utf-8")
    out = tmp_path / "out"
    run(manifest, out, _cfg())
    assert server.routes["/v/good.mp4"].served >= 1
    assert f"/v/good.mp4{query}" in server.paths  # fetched with its signature
    kept = pq.read_table(out / "index.parquet").to_pylist()
    assert kept and {(c["source"], c["source_url"]) for c in kept} == {(public_url(good),) * 2}
    assert "REDACTED" in kept[0]["source_url"] and "X-Amz-Expires=600" in kept[0]["source_url"]
    failed = [r for r in pq.read_table(out / "rejected.parquet").to_pylist()
              if r["kind"] == "video"]
    assert [(r["source"], r["reason"]) for r in failed] == [(public_url(gone), "http_404")]

    def leaks() -> list[str]:
        return sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file() and (
            SECRET.encode() in p.read_bytes() or KEY_ID.encode() in p.read_bytes()))

    assert leaks() == ["ledger.sqlite"]
    # a takedown citing the URL as the dataset shows it finds the source, and one citing
    # the signed URL the other; the audit trail names both without their secrets
    done = takedown(out, takedown_rules([kept[0]["source_url"]]), "rights holder request")
    assert len(done.clips) == len(kept) and [v["source"] for v in done.videos] == [
        public_url(good)]
    assert pq.read_table(out / "index.parquet").num_rows == 0
    done = takedown(out, takedown_rules([gone]), "rights holder request")
    assert [v["source"] for v in done.videos] == [public_url(gone)]
    assert SECRET in done.rules[0] and SECRET not in json.dumps(done.to_dict())
    assert leaks() == ["ledger.sqlite"]
    db = sqlite3.connect(out / "ledger.sqlite")  # the run's own state keeps them, for `retry`
    try:
        assert {r[0] for r in db.execute("SELECT source FROM videos")} == {good, gone}
    finally:
        db.close()
