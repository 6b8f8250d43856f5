"""A lone surrogate in a manifest's JSON ("\\ud800", valid JSON) or in a video's .info.json:
the row is kept with U+FFFD in its place, and the ledger, the card and the report are written.
Before, SQLite refused the row (an author) or every finalize died writing the card (a title)."""

from __future__ import annotations

import json

import pyarrow.parquet as pq

from clipfactory.config import Config
from clipfactory.pipeline import run
from clipfactory.testing.synth import ShotSpec, write_video


def test_lone_surrogates_become_replacement_characters(tmp_path):
    media = tmp_path / "media"
    media.mkdir()
    for i, name in enumerate(("a", "b", "c")):
        write_video(media / f"{name}.mp4", [ShotSpec(60, "texture", 700 + i)], width=160,
                    height=96, gop=30)
    # json.dumps escapes the lone surrogates as \ud800 and \udc00, as a producer might
    rows = [{"path": "a.mp4", "id": "a", "title": "bad \ud800 title", "license": "CC0"},
            {"path": "b.mp4", "id": "b", "author": "Ann \udc00", "license": "CC0"}]
    manifest = media / "m.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="ascii")
    out = tmp_path / "out"
    summary = run(manifest, out, Config(workers=1))
    assert summary["counts"]["videos"]["done"] == 2
    index = {r["video_id"]: r for r in pq.read_table(out / "index.parquet").to_pylist()}
    assert json.loads(index["a"]["extra"])["title"] == "bad \ufffd title"
    assert index["b"]["attribution"] == "Ann \ufffd"
    card = (out / "README.md").read_text(encoding="utf-8")
    assert "Ann \ufffd" in card
    assert (out / "report.html").is_file()

    # a folder input whose yt-dlp .info.json holds one
    folder = tmp_path / "folder"
    folder.mkdir()
    (media / "c.mp4").rename(folder / "c.mp4")
    (folder / "c.info.json").write_text(json.dumps(
        {"uploader": "Bo \ud83d", "license": "Creative Commons Attribution license (reuse allowed)",
         "webpage_url": "https://videos.example.org/c", "title": "T \udfff"}), encoding="ascii")
    out2 = tmp_path / "out2"
    assert run(folder, out2, Config(workers=1))["counts"]["videos"]["done"] == 1
    [row] = pq.read_table(out2 / "index.parquet").to_pylist()
    assert row["attribution"] == "Bo \ufffd"
    assert "Bo \ufffd" in (out2 / "README.md").read_text(encoding="utf-8")
