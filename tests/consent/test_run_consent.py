"""End to end: a manifest of URLs on a loopback server whose robots.txt, headers and
tdmrep.json reserve some of them; `run` refuses those (or records them), the card lists the
refusals, and `revalidate` finds a reservation added later and purges like a takedown."""

from __future__ import annotations

import json
import sqlite3

import pyarrow.parquet as pq

from clipfactory.cli import main

ROBOTS = "User-agent: clipfactory\nDisallow: /members/\n"


def _manifest(tmp_path, server, video_bytes):
    server.add("/robots.txt", ROBOTS.encode(), content_type="text/plain")
    server.add("/.well-known/tdmrep.json", json.dumps(
        [{"location": "/studio/*", "tdm-reservation": 1}]).encode())
    rows = [{"id": "free", "url": server.add("/open/free.mp4", video_bytes)},
            {"id": "later", "url": server.add("/open/later.mp4", video_bytes)},
            {"id": "members", "url": server.add("/members/m.mp4", video_bytes)},
            {"id": "noai", "url": server.add("/open/noai.mp4", video_bytes,
                                            headers={"X-Robots-Tag": "noai"})},
            {"id": "studio", "url": server.add("/studio/s.mp4", video_bytes)}]
    path = tmp_path / "m.jsonl"
    path.write_text("\n".join(json.dumps({**r, "license": "CC-BY-4.0"}) for r in rows),
                    encoding="utf-8")
    return path


def _consent_rows(out):
    db = sqlite3.connect(out / "ledger.sqlite")
    rows = {(v, s): (bool(e), json.loads(ev)) for v, s, e, ev in db.execute(
        "SELECT v.manifest_id, c.signal, c.enforced, c.evidence FROM consent c"
        " JOIN videos v USING (item_key)")}
    db.close()
    return rows


def _kept_ids(out):
    return {r["video_id"] for r in pq.read_table(out / "index.parquet").to_pylist()}


def test_enforce_refuses_records_evidence_and_revalidate_purges(server, video_bytes,
                                                                tmp_path, capsys):
    out = tmp_path / "out"
    manifest = _manifest(tmp_path, server, video_bytes)
    assert main(["run", "--input", str(manifest), "--output", str(out), "--allow-private-network", "--quiet",
                 "--skip", "filters", "--skip", "dedup"]) == 0
    assert _kept_ids(out) == {"free", "later"}
    failed = {(r["video_id"], r["stage"], r["reason"])
              for r in pq.read_table(out / "rejected.parquet").to_pylist()
              if r["kind"] == "video"}
    assert failed == {("members", "consent", "robots_disallowed"),
                      ("noai", "consent", "noai"), ("studio", "consent", "tdm_reservation")}
    assert server.routes["/members/m.mp4"].served == 0  # disallowed: never requested
    assert server.routes["/studio/s.mp4"].served == 0
    evidence = _consent_rows(out)
    assert set(evidence) == {("members", "robots_disallowed"), ("noai", "noai"),
                             ("studio", "tdm_reservation")}
    enforced, ev = evidence[("members", "robots_disallowed")]
    assert enforced and ev["where"].endswith("/robots.txt")
    assert ev["value"].startswith("Disallow: /members/")
    card = (out / "README.md").read_text(encoding="utf-8")
    assert "## Consent signals" in card and "Mode: **enforce**" in card
    assert "| consent/robots_disallowed | 1 |" in card and "| consent/noai | 1 |" in card
    assert "X-Robots-Tag header" in card
    summary = json.loads((out / "summary.json").read_text())
    assert summary["consent"]["refused"] == {"noai": 1, "robots_disallowed": 1,
                                             "tdm_reservation": 1}

    # the site reserves a source that is already in the dataset
    server.routes["/open/later.mp4"].headers["tdm-reservation"] = "1"
    capsys.readouterr()
    assert main(["revalidate", str(out), "--rate", "0", "--allow-private-network"]) == 1
    text = capsys.readouterr().out
    assert "refused: " + server.url("/open/later.mp4") in text
    assert _kept_ids(out) == {"free", "later"}  # reported, not purged without --purge
    assert main(["revalidate", str(out), "--rate", "0", "--allow-private-network",
                 "--purge"]) == 0
    assert _kept_ids(out) == {"free"}
    assert ("later", "tdm_reservation") in _consent_rows(out)
    assert {(r["video_id"], r["stage"], r["reason"])
            for r in pq.read_table(out / "rejected.parquet").to_pylist()
            if r["video_id"] == "later"} >= {("later", "consent", "tdm_reservation")}
    audit = [json.loads(line) for line in (out / "audit.jsonl").read_text().splitlines()]
    assert audit[-1]["kind"] == "revalidate" and audit[-1]["videos"][0]["matched"].startswith(
        "consent/tdm_reservation")
    assert main(["audit", str(out)]) == 0
    # studio refused at fetch and later purged: both counted under the reason they share
    counts = json.loads((out / "summary.json").read_text())["counts"]
    assert counts["failed_by_reason"]["consent/tdm_reservation"] == 1
    assert counts["removed_by_reason"]["consent/tdm_reservation"] == 1
    page = (out / "report.html").read_text(encoding="utf-8")
    kept_out = page.split("<h3>Kept out or removed</h3>", 1)[1].split("</table>", 1)[0]
    assert "<tr><td>consent/tdm_reservation</td><td>2</td></tr>" in kept_out
    # a refusal is about the site, not the bytes: the same video at an open URL stays
    assert main(["run", "--input", str(manifest), "--output", str(out), "--quiet",
                 "--allow-private-network", "--skip", "filters", "--skip", "dedup"]) == 0
    assert _kept_ids(out) == {"free"}


def test_record_mode_keeps_items_and_says_so(server, video_bytes, tmp_path):
    out = tmp_path / "out"
    manifest = _manifest(tmp_path, server, video_bytes)
    cfg = tmp_path / "c.yaml"
    cfg.write_text("policy:\n  consent: record\nskip: [filters, dedup]\n", encoding="utf-8")
    assert main(["run", "--input", str(manifest), "--output", str(out), "--config", str(cfg),
                 "--allow-private-network", "--quiet"]) == 0
    assert _kept_ids(out) == {"free", "later", "members", "noai", "studio"}
    evidence = _consent_rows(out)
    assert {k: v[0] for k, v in evidence.items()} == {
        ("members", "robots_disallowed"): False, ("noai", "noai"): False,
        ("studio", "tdm_reservation"): False}
    card = (out / "README.md").read_text(encoding="utf-8")
    assert "Mode: **record**" in card and "**not enforced**" in card
    assert "| robots_disallowed | 1 |" in card
    # revalidate under record mode reports and purges nothing
    assert main(["revalidate", str(out), "--rate", "0", "--allow-private-network",
                 "--purge"]) == 0
    assert len(_kept_ids(out)) == 5


def test_a_robots_txt_and_tdmrep_json_saved_with_a_byte_order_mark_still_reserve(
        server, video_bytes, tmp_path):
    """Saved by Notepad, both files start with a UTF-8 byte order mark: it hid robots.txt's
    first `User-agent` line (so no group, nothing disallowed) and made tdmrep.json invalid
    JSON (so no reservation). The reserved videos were fetched and cut."""
    bom = b"\xef\xbb\xbf"
    server.add("/robots.txt", bom + b"User-agent: *\nDisallow: /members/\n",
               content_type="text/plain")
    server.add("/.well-known/tdmrep.json", bom + json.dumps(
        [{"location": "/studio/*", "tdm-reservation": 1}]).encode())
    rows = [{"id": "free", "url": server.add("/open/free.mp4", video_bytes)},
            {"id": "members", "url": server.add("/members/m.mp4", video_bytes)},
            {"id": "studio", "url": server.add("/studio/s.mp4", video_bytes)}]
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("\n".join(json.dumps({**r, "license": "CC-BY-4.0"}) for r in rows),
                        encoding="utf-8")
    out = tmp_path / "out"
    assert main(["run", "--input", str(manifest), "--output", str(out),
                 "--allow-private-network", "--quiet", "--workers", "1",
                 "--skip", "filters", "--skip", "dedup"]) == 0
    assert _kept_ids(out) == {"free"}
    assert set(_consent_rows(out)) == {("members", "robots_disallowed"),
                                       ("studio", "tdm_reservation")}
    assert server.routes["/members/m.mp4"].served == 0
    assert server.routes["/studio/s.mp4"].served == 0


def test_a_refused_signed_url_is_published_without_its_secrets(server, video_bytes, tmp_path):
    """The card's and summary.json's consent examples cite a refused source as others may
    read it: a signed URL without its signature, token or password."""
    url = server.add("/open/signed.mp4", video_bytes, headers={"X-Robots-Tag": "noai"})
    head, _, tail = url.partition("://")
    rows = [{"id": "s1", "url": f"{url}?X-Amz-Signature=SIGSECRET1&X-Amz-Credential=CREDSECRET2"},
            {"id": "s2", "url": f"{head}://user:PWSECRET3@{tail}?token=TOKSECRET4"}]
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    out = tmp_path / "out"
    assert main(["run", "--input", str(manifest), "--output", str(out), "--quiet",
                 "--allow-private-network", "--skip", "filters", "--skip", "dedup"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["consent"]["refused"] == {"noai": 2}
    assert len(summary["consent"]["examples"]) == 2
    for name in ("README.md", "summary.json", "report.html"):
        text = (out / name).read_text(encoding="utf-8")
        assert "/open/signed.mp4" in text or name == "report.html"
        for secret in ("SIGSECRET1", "CREDSECRET2", "PWSECRET3", "TOKSECRET4"):
            assert secret not in text, (name, secret)
