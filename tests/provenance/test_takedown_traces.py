"""What a takedown leaves nowhere besides the shards: the downloaded bytes of a removed URL
(kept by ``fetch.keep_sources``, or a partial transfer kept for ``retry``) and the caption text
of the removed input's own ledger record."""

from __future__ import annotations

import json
import sqlite3

from clipfactory.config import Config
from clipfactory.pipeline import run
from clipfactory.provenance.audit import audit
from clipfactory.provenance.takedown import takedown, takedown_rules
from clipfactory.testing.loopback import LoopbackServer
from clipfactory.testing.synth import ShotSpec, write_video

from .conftest import Out, write_manifest


def _video(path, seed):
    write_video(path, [ShotSpec(66, "texture", seed), ShotSpec(72, "texture", seed + 1)],
                width=160, height=90, gop=30)
    return path.read_bytes()


def _cfg(**fetch):
    cfg = Config(workers=1)
    cfg.clips.min_s = 1.0
    cfg.fetch.allow_private_network = True
    for k, v in fetch.items():
        setattr(cfg.fetch, k, v)
    return cfg


def _holding(folder, data):
    """Files under ``folder`` holding the first 4 KiB of ``data`` (a download or a part)."""
    return sorted(p.name for p in folder.rglob("*") if p.is_file()
                  and p.stat().st_size >= 4096 and data[:4096] in p.read_bytes())


def test_a_takedown_deletes_the_kept_download_of_its_url(tmp_path):
    a, b = _video(tmp_path / "a.mp4", 210), _video(tmp_path / "b.mp4", 220)
    with LoopbackServer() as srv:
        url_a, url_b = srv.add("/v/a.mp4", a), srv.add("/v/b.mp4", b)
        man = write_manifest(tmp_path / "m.jsonl", [{"url": url_a, "id": "a", "license": "CC0"},
                                                    {"url": url_b, "id": "b", "license": "CC0"}])
        out = tmp_path / "out"
        run(man, out, _cfg(keep_sources=True))
    sources = out / "sources"
    assert _holding(sources, a) and _holding(sources, b)
    assert len(list(sources.glob("*.fetch.json"))) == 2

    removal = takedown(out, takedown_rules([url_a]), "creator asked")
    assert removal.downloads == 2  # a's file and its marker
    assert not _holding(sources, a)
    assert _holding(sources, b) and len(list(sources.glob("*.fetch.json"))) == 1
    [record] = Out(out).audit_log()
    assert record["downloads"] == 2
    assert audit(out).ok


def test_a_partial_download_goes_with_the_last_input_reading_its_url(tmp_path):
    data = _video(tmp_path / "v.mp4", 230)
    with LoopbackServer() as srv:
        url = srv.add("/v/slow.mp4", data, fault="trickle", trickle_bytes=20000, trickle_s=4)
        man = write_manifest(tmp_path / "m.jsonl", [  # two spans of one video
            {"url": url, "id": "s1", "license": "CC0", "start": 0, "end": 2.2},
            {"url": url, "id": "s2", "license": "CC0", "start": 2.2, "end": 4.6}])
        out = tmp_path / "out"
        run(man, out, _cfg(max_attempts=1, timeout_s=1.0))
    part = out / "sources" / ".partial"
    assert _holding(part, data)  # the first 20 kB, kept to resume from
    removal = takedown(out, takedown_rules([], video_ids=["s1"]), "creator asked")
    assert removal.downloads == 0 and _holding(part, data)  # s2 still resumes from it
    removal = takedown(out, takedown_rules([], video_ids=["s2"]), "creator asked")
    assert removal.downloads == 2  # the part and its JSON
    assert not list(part.iterdir())


def test_a_takedown_drops_the_caption_text_of_the_inputs_own_record(tmp_path):
    _video(tmp_path / "v.mp4", 240)
    _video(tmp_path / "w.mp4", 250)
    man = write_manifest(tmp_path / "m.jsonl", [
        {"path": str(tmp_path / "v.mp4"), "id": "v", "license": "CC0", "title": "Kept title",
         "caption": "A private birthday at 12 Elm Street"},
        {"path": str(tmp_path / "w.mp4"), "id": "w", "license": "CC0",
         "spans": [[0, 2.2], [2.2, 4.6]], "captions": ["Secret one", "Secret two"]}])
    out = tmp_path / "out"
    run(man, out, _cfg())
    assert {r["caption"] for r in Out(out).index()} >= {"A private birthday at 12 Elm Street",
                                                          "Secret one"}
    takedown(out, takedown_rules([], video_ids=["v", "w"]), "creator asked")
    ledger = (out / "ledger.sqlite").read_bytes()
    for text in (b"Elm Street", b"Secret one", b"Secret two"):
        assert text not in ledger
    db = sqlite3.connect(out / "ledger.sqlite")
    rows = dict(db.execute("SELECT manifest_id, extra FROM videos").fetchall())
    spans = dict(db.execute("SELECT manifest_id, spans FROM videos").fetchall())
    db.close()
    assert json.loads(rows["v"]).get("title") == "Kept title"  # provenance stays
    assert json.loads(spans["w"]) == [[0, 2.2, None], [2.2, 4.6, None]]
