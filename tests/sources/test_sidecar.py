"""A folder of ``yt-dlp --write-info-json`` downloads carries each video's license evidence in
``NAME.info.json``: the run reads it, the policy decides on it, the card credits it and
opt-outs by channel reach it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clipfactory.config import Config
from clipfactory.pipeline import run
from clipfactory.records import SourceItem
from clipfactory.sinks.parts import read_index, read_rejected
from clipfactory.sources import read_input
from clipfactory.testing.synth import ShotSpec, write_video

_INFO = {
    "id": "abc123XYZ_0", "title": "Sunset over the bay", "uploader": "Jane Doe",
    "uploader_id": "@janedoe", "channel": "Jane Doe Films",
    "channel_url": "https://www.youtube.com/@janedoe",
    "webpage_url": "https://www.youtube.com/watch?v=abc123XYZ_0",
    "license": "Creative Commons Attribution license (reuse allowed)",
    "upload_date": "20200101", "extractor": "youtube", "duration": 2.2,
    # what is never kept: the formats' signed URLs, the request headers
    "formats": [{"url": "https://rr1.googlevideo.com/videoplayback?sig=SECRET"}],
    "http_headers": {"Cookie": "SID=SECRET"},
}


@pytest.fixture
def downloads(tmp_path: Path) -> Path:
    """What `yt-dlp --write-info-json -o "%(title)s [%(id)s].%(ext)s"` leaves, plus a video
    with no sidecar, one whose sidecar is cut short, and one whose fields are not text."""
    d = tmp_path / "downloads"
    d.mkdir()
    for i, name in enumerate(["Sunset over the bay [abc123XYZ_0]", "home movie",
                              "broken [b1]", "odd [o1]"]):
        write_video(d / f"{name}.mp4", [ShotSpec(66, "texture", 300 + 11 * i)], width=160,
                    height=90, gop=33)
    (d / "Sunset over the bay [abc123XYZ_0].info.json").write_text(json.dumps(_INFO))
    (d / "broken [b1].info.json").write_text(json.dumps(_INFO)[:40])
    (d / "odd [o1].info.json").write_text(json.dumps(
        {"license": ["CC0"], "uploader": {"name": "x"}, "title": "t" * 10_000,
         "webpage_url": None, "channel": 7}))
    return d


def _items(d: Path) -> dict[str, SourceItem]:
    return {Path(i.source).stem: i for i in read_input(d) if isinstance(i, SourceItem)}


def test_a_sidecar_gives_the_license_author_page_and_title(downloads: Path) -> None:
    items = _items(downloads)
    assert len(items) == 4  # the .info.json files are no inputs
    sunset = items["Sunset over the bay [abc123XYZ_0]"]
    assert sunset.license == _INFO["license"] and sunset.attribution == "Jane Doe"
    assert sunset.source_url == _INFO["webpage_url"]
    assert sunset.extra["title"] == "Sunset over the bay"
    assert sunset.extra["channel_url"] == "https://www.youtube.com/@janedoe"
    kept = sunset.extra["info_json"]
    assert kept["file"] == "Sunset over the bay [abc123XYZ_0].info.json"
    assert kept["id"] == "abc123XYZ_0" and kept["upload_date"] == "20200101"
    assert "SECRET" not in json.dumps(sunset.extra)
    plain = items["home movie"]
    assert (plain.license, plain.attribution, plain.source_url, plain.extra) == \
        (None, None, None, {})
    broken = items["broken [b1]"]
    assert broken.license is None and broken.extra["info_json"]["error"].startswith("not JSON")
    odd = items["odd [o1]"]  # nothing that is not text is taken, and text is cut to a length
    assert (odd.license, odd.attribution, odd.source_url) == (None, None, None)
    assert len(odd.extra["title"]) == 2000 and "channel" not in odd.extra


def test_the_policy_the_card_and_opt_outs_use_it(downloads: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    run(downloads, out, Config.model_validate(
        {"policy": {"name": "commercial"}, "skip": ["dedup", "filters"]}))
    rows = read_index(out).to_pylist()
    assert {Path(r["source"]).stem for r in rows} == {"Sunset over the bay [abc123XYZ_0]"}
    r = rows[0]
    assert (r["license"], r["attribution"], r["source_url"], r["policy_decision"]) == \
        ("CC-BY-3.0", "Jane Doe", _INFO["webpage_url"], "allowed")
    assert json.loads(r["extra"])["info_json"]["extractor"] == "youtube"
    quarantined = {Path(x["source"]).stem for x in read_rejected(out).to_pylist()
                   if x["reason"] == "license_missing"}
    assert quarantined == {"home movie", "broken [b1]", "odd [o1]"}
    card = (out / "README.md").read_text()
    assert f"“Sunset over the bay” by Jane Doe, {_INFO['webpage_url']}" in card
    # the creator opts out by channel: the video leaves the dataset on the next run
    optout = tmp_path / "optout.txt"
    optout.write_text("channel:@janedoe\n")
    run(downloads, out, Config.model_validate(
        {"policy": {"name": "commercial", "opt_out_file": str(optout)},
         "skip": ["dedup", "filters"]}))
    assert read_index(out).num_rows == 0
