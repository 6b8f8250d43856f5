"""The policy gate in real runs: exactly which videos of a mixed-license manifest reach the
shards under each policy, what is recorded per video and per clip, and that a quarantined or
opted-out input is never decoded."""

from __future__ import annotations

import sqlite3

import pytest

from clipfactory.cli import main
from clipfactory.config import Config, PolicyConfig
from clipfactory.pipeline import run
from clipfactory.testing.synth import ShotSpec, write_video

from .conftest import ALL, COMMERCIAL, LICENSES, RESEARCH, Out, row, write_manifest

EXPECTED_IDS = {
    "cc0": "CC0-1.0", "ccby": "CC-BY-4.0", "ccbysa": "CC-BY-SA-4.0", "nc": "CC-BY-NC-4.0",
    "ncsa": "CC-BY-NC-SA-4.0", "nd": "CC-BY-ND-4.0", "unk": "unknown",
    "arr": "LicenseRef-all-rights-reserved", "missing": "missing", "yt": "CC-BY-3.0",
    "pd": "LicenseRef-public-domain",
}


def _videos(out: Out) -> dict[str, sqlite3.Row]:
    db = sqlite3.connect(out.path / "ledger.sqlite")
    db.row_factory = sqlite3.Row
    try:
        return {r["manifest_id"]: r for r in db.execute("SELECT * FROM videos")}
    finally:
        db.close()


def test_without_policy_nothing_is_gated_but_everything_is_recorded(ungated):
    assert ungated.ids() == ALL
    for r in ungated.index():
        vid = r["video_id"]
        assert r["license"] == EXPECTED_IDS[vid]
        assert r["license_raw"] == LICENSES[vid]
        assert (r["policy_decision"], r["policy_reason"]) == ("ungated", "ungated")
        assert r["attribution"] == f"Author {vid}"
        assert r["source_url"] == f"https://videos.example.org/v/{vid}"
    # the shard's KEY.json carries the same provenance as the index row
    members = ungated.members()
    for r in ungated.index():
        import json

        meta = json.loads(members[f"{r['key']}.json"])
        assert {k: meta[k] for k in ("license", "license_raw", "attribution", "source_url",
                                     "policy_decision")} == \
               {k: r[k] for k in ("license", "license_raw", "attribution", "source_url",
                                  "policy_decision")}
    summary = ungated.summary()
    assert summary["unknown_license_clips"] == 2
    assert summary["policy"]["name"] == "none"
    assert summary["licenses"]["CC-BY-3.0"] == 1
    card = ungated.card()
    assert "**Warning:** 2 clips have an unknown or missing license" in card
    assert "No license policy was applied" in card
    # the credits CC BY requires: title, author, source, license with link, changes made
    assert ("“Title ccby” by Author ccby, https://videos.example.org/v/ccby, "
            "[CC-BY-4.0](https://creativecommons.org/licenses/by/4.0/); cut into clips and "
            "re-encoded.") in card
    section = card.split("### CC-BY-NC-4.0")[1].split("###")[0]
    assert "Author nc" in section and "Author ccby" not in section


POLICIES = {
    "commercial": (PolicyConfig(name="commercial"), COMMERCIAL),
    "research+terms": (PolicyConfig(name="research", dataset_terms="research-only"), RESEARCH),
    "custom": (PolicyConfig(name="custom", allow=["CC-BY-ND-*", "unknown"]), {"nd", "unk"}),
    "commercial-deny-sa+unknown": (
        PolicyConfig(name="commercial", deny=["CC-BY-SA"], allow_unknown=True),
        COMMERCIAL - {"ccbysa"} | {"unk", "missing"}),
    "commercial+research-terms": (
        PolicyConfig(name="commercial", dataset_terms="research-only"), set()),
}


@pytest.mark.parametrize("name", list(POLICIES))
def test_exact_videos_reach_the_shards_under_each_policy(name, manifest, tmp_path):
    policy, expected = POLICIES[name]
    out = Out(tmp_path / "out")
    summary = run(manifest, out.path, Config(policy=policy))
    assert out.ids() == expected
    assert {k.split("_")[0] for k in out.shard_keys()} == expected
    assert all(r["policy_decision"] == "allowed" for r in out.index())
    assert all(r["policy_reason"].startswith("allowed:" + r["license"]) for r in out.index())
    rejected = {r["video_id"]: r for r in out.rejected() if r["kind"] == "video"}
    assert set(rejected) == ALL - expected
    videos = _videos(out)
    for vid in ALL - expected:
        assert rejected[vid]["stage"] == "policy"
        v = videos[vid]
        # quarantined at ingest: never probed, hashed or decoded
        assert (v["state"], v["info"], v["source_sha256"], v["frames"]) == (
            "failed", None, None, 0)
    if name == "commercial":
        reasons = {v: rejected[v]["reason"] for v in rejected}
        assert reasons == {"nc": "license_not_allowed:CC-BY-NC-4.0",
                           "ncsa": "license_not_allowed:CC-BY-NC-SA-4.0",
                           "nd": "license_not_allowed:CC-BY-ND-4.0",
                           "arr": "license_not_allowed:LicenseRef-all-rights-reserved",
                           "unk": "license_unknown", "missing": "license_missing"}
        assert summary["counts"]["failed_by_reason"]["policy/license_unknown"] == 1
        assert "License policy: **commercial**. 6 inputs were quarantined" in out.card()
    if name == "commercial+research-terms":
        assert {r["reason"] for r in rejected.values() if r["video_id"] in COMMERCIAL} == {
            "terms_not_allowed:LicenseRef-research-only"}
    # the decision is recorded per video too
    db = sqlite3.connect(out.path / "ledger.sqlite")
    decisions = dict(db.execute("SELECT item_key, decision FROM decisions").fetchall())
    db.close()
    assert decisions == {f"id:{v}": "allowed" if v in expected else "quarantined" for v in ALL}


def test_folder_license_flag_and_requeue(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    write_video(folder / "holiday.mp4", [ShotSpec(66, "texture", 91)], width=160, height=90)
    out = Out(tmp_path / "out")
    args = ["run", "--input", str(folder), "--output", str(out.path), "--quiet"]
    assert main([*args, "--policy", "commercial"]) == 0
    assert out.ids() == set()
    assert [r["reason"] for r in out.rejected()] == ["license_missing"]
    # declaring the footage owned requeues the quarantined input; the policy is remembered
    assert main([*args, "--license", "owned"]) == 0
    rows = out.index()
    assert [(r["license"], r["license_raw"], r["policy_reason"]) for r in rows] == [
        ("LicenseRef-owned", "owned", "allowed:LicenseRef-owned")]
    assert out.summary()["policy"]["name"] == "commercial"


def test_policy_is_kept_applied_retroactively_and_loosened(ungated_copy, manifest):
    out = ungated_copy
    before = out.shards()[0].read_bytes()
    run(manifest, out.path, Config(policy=PolicyConfig(name="commercial")))
    assert out.ids() == COMMERCIAL  # removed from the shards without reprocessing anything
    assert out.shards()[0].read_bytes() != before
    log = out.audit_log()
    assert [e["kind"] for e in log] == ["policy"]
    assert {v["item_key"] for v in log[0]["videos"]} == {f"id:{v}" for v in ALL - COMMERCIAL}
    # a run that names no policy keeps the output's policy: nothing quarantined comes back
    run(manifest, out.path, Config())
    assert out.ids() == COMMERCIAL
    # a looser policy requeues what it now allows
    run(manifest, out.path, Config(policy=PolicyConfig(name="research")))
    assert out.ids() == RESEARCH
    from clipfactory.provenance.audit import audit

    assert audit(out.path).ok, audit(out.path).render()


def test_opt_out_at_ingest_costs_nothing(licensed_media, tmp_path):
    optout = tmp_path / "optout.txt"
    optout.write_text("\n".join([
        "# opt-outs received",
        "http://www.videos.example.org/v/ccby/",  # another spelling of the same URL
        "channel:CHAN-cc0",
        "regex:/v/p[d]$",
        "id:yt",
    ]) + "\n")
    rows = [row(v, licensed_media) for v in ("cc0", "ccby", "ccbysa", "yt", "pd")]
    manifest = write_manifest(tmp_path / "m.jsonl", rows)
    out = Out(tmp_path / "out")
    assert main(["run", "--input", str(manifest), "--output", str(out.path), "--quiet",
                 "--opt-out-file", str(optout)]) == 0
    assert out.ids() == {"ccbysa"}
    rejected = {r["video_id"]: r for r in out.rejected()}
    assert {v: (r["stage"], r["reason"]) for v, r in rejected.items()} == {
        v: ("policy", "opted_out") for v in ("cc0", "ccby", "yt", "pd")}
    assert "channel:CHAN-cc0" in rejected["cc0"]["detail"]
    videos = _videos(out)
    assert all(videos[v]["info"] is None for v in rejected)
