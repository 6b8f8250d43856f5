"""Takedown: every clip of the matched sources leaves every shard, the index and the card, an
audit record says what happened, and the sources never come back."""

from __future__ import annotations

import hashlib
import shutil
import sqlite3

from clipfactory.cli import main
from clipfactory.config import Config
from clipfactory.pipeline import run
from clipfactory.provenance.audit import audit
from clipfactory.provenance.takedown import takedown, takedown_rules

from .conftest import ALL, Out, row, write_manifest


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_takedown_leaves_not_one_byte(ungated_copy):
    out = ungated_copy
    doomed = {"nc", "arr"}
    members = out.members()
    index = out.index()
    gone_keys = {r["key"] for r in index if r["video_id"] in doomed}
    gone_bytes = [members[f"{k}.{ext}"] for k in gone_keys for ext in ("mp4", "json")]
    kept_bytes = [members[f"{r['key']}.mp4"] for r in index if r["video_id"] not in doomed]
    shard = out.shards()[0]
    sha_before = _sha(shard)

    rc = main(["takedown", str(out.path), "--source", "https://videos.example.org/v/nc",
               "--video-id", "arr", "--reason", "creator request #12"])
    assert rc == 0

    blob = b"".join(p.read_bytes() for p in out.path.rglob("*") if p.is_file()
                    and p.suffix == ".tar")
    for data in gone_bytes:
        assert data not in blob
    for data in kept_bytes:
        assert data in blob
    assert not [p for p in (out.path / "shards").iterdir() if p.name.startswith(".")]
    assert out.ids() == ALL - doomed
    card = out.card()
    assert "Author nc," not in card and "videos.example.org/v/arr" not in card
    assert "takedown/taken_down" in card  # the card says how many sources were removed
    # the audit record: when, why, which clips, shard hashes before and after
    [record] = out.audit_log()
    assert record["kind"] == "takedown" and record["reason"] == "creator request #12"
    assert record["at"] > 0 and record["at_iso"].endswith("Z")
    assert sorted(record["clips"]) == sorted(r["clip_id"] for r in index
                                             if r["video_id"] in doomed)
    [change] = record["shards"]
    assert (change["name"], change["sha256_before"], change["sha256_after"]) == (
        shard.name, sha_before, _sha(shard))
    assert change["removed"] == 2
    assert {v["matched"] for v in record["videos"]} == {"https://videos.example.org/v/nc",
                                                        "id:arr"}
    summary = out.summary()
    assert summary["shards"][0]["sha256"] == _sha(shard)
    assert summary["counts"]["videos"]["removed"] == 2
    rejected = {r["video_id"]: r for r in out.rejected() if r["kind"] == "video"}
    assert {rejected[v]["reason"] for v in doomed} == {"taken_down"}
    db = sqlite3.connect(out.path / "ledger.sqlite")
    assert db.execute("SELECT COUNT(*) FROM events WHERE kind='takedown'").fetchone()[0] == 1
    states = dict(db.execute("SELECT manifest_id, state FROM videos").fetchall())
    assert {v for v, s in states.items() if s == "removed"} == doomed
    db.close()
    report = audit(out.path)
    assert report.ok, report.render()


def test_taken_down_sources_never_come_back(ungated_copy, manifest, licensed_media, tmp_path):
    out = ungated_copy
    takedown(out.path, takedown_rules(video_ids=["cc0"]), "DMCA notice")
    run(manifest, out.path, Config())  # the same manifest again: skipped
    assert "cc0" not in out.ids()
    # the same bytes under another name and without an id: caught by content hash
    twin = tmp_path / "renamed.mp4"
    shutil.copy(licensed_media / "cc0.mp4", twin)
    m2 = write_manifest(tmp_path / "m2.jsonl", [{"path": str(twin), "license": "CC0"}])
    run(m2, out.path, Config())
    assert out.ids() == ALL - {"cc0"}
    rej = [r for r in out.rejected() if r["source"] == str(twin)]
    assert [(r["stage"], r["reason"]) for r in rej] == [("policy", "taken_down")]
    assert audit(out.path).ok


def test_takedown_of_every_clip_deletes_the_shard_and_opt_out_is_retroactive(
        ungated_copy, manifest, tmp_path):
    out = ungated_copy
    optout = tmp_path / "optout.txt"
    optout.write_text("domain:videos.example.org\n")
    run(manifest, out.path, Config.model_validate({"policy": {"opt_out_file": str(optout)}}))
    assert out.ids() == set() and out.shards() == []
    [record] = out.audit_log()
    assert record["kind"] == "opt_out" and record["shards"][0]["sha256_after"] is None
    assert out.summary()["counts"]["removed_by_reason"] == {"takedown/opted_out": len(ALL)}
    assert audit(out.path).ok


def test_takedown_without_match_keeps_the_rule(ungated_copy, licensed_media, tmp_path):
    out = ungated_copy
    url = "https://videos.example.org/v/later"
    removal = takedown(out.path, takedown_rules(sources=[url]), "pre-emptive opt-out")
    assert removal.videos == [] and out.ids() == ALL
    m = write_manifest(tmp_path / "m.jsonl", [row("nd", licensed_media, url=url) | {"id": "n2"}])
    run(m, out.path, Config())
    assert "n2" not in out.ids()
    assert main(["takedown", str(out.path), "--reason", "x"]) == 2  # nothing to match on


def test_takedown_reaches_copies_of_the_same_bytes(licensed_media, tmp_path):
    copy = tmp_path / "reupload.mp4"
    shutil.copy(licensed_media / "ccby.mp4", copy)
    m = write_manifest(tmp_path / "m.jsonl", [
        row("ccby", licensed_media),
        {"path": str(copy), "id": "reupload", "license": "CC BY 4.0", "author": "Someone"}])
    out = Out(tmp_path / "out")
    run(m, out.path, Config())
    removal = takedown(out.path, takedown_rules(video_ids=["ccby"]), "creator request")
    assert {v["item_key"]: v["matched"] for v in removal.videos} == {
        "id:ccby": "id:ccby", "id:reupload": "same content as id:ccby"}
    assert out.ids() == set()
    assert audit(out.path).ok
