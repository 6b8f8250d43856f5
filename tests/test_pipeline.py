"""End to end: a folder of generated videos in, the output contract out."""

from __future__ import annotations

import io
import itertools
import json
import shutil
import sqlite3
import tarfile
from fractions import Fraction

import av
import pyarrow.parquet as pq
import pytest
import webdataset as wds

from clipfactory.config import Config
from clipfactory.pipeline import run
from clipfactory.testing.compare import psnr, remux
from clipfactory.testing.synth import ShotSpec, render_frame, write_video

W, H = 320, 180
SHOTS = [
    ShotSpec(75, "texture", 1),
    ShotSpec(90, "texture", 2),
    ShotSpec(60, "dark", 3),
    ShotSpec(60, "static", 4),
    ShotSpec(60, "blurry", 5),
    ShotSpec(45, "texture", 6),
]
# frame ranges of the shots above
SPANS = {
    "a": (0, 75),
    "b": (75, 165),
    "dark": (165, 225),
    "static": (225, 285),
    "blurry": (285, 345),
    "short": (345, 390),
}


def _half(src: str, dst: str) -> None:
    with av.open(src) as i, av.open(dst, "w") as o:
        s = o.add_stream("libx264", rate=30)
        s.width, s.height, s.pix_fmt = W // 2, H // 2, "yuv420p"
        s.options = {"crf": "26", "preset": "ultrafast"}
        for k, f in enumerate(i.decode(video=0)):
            g = f.reformat(width=W // 2, height=H // 2, format="yuv420p")
            g.pts, g.time_base = k, Fraction(1, 30)
            o.mux(s.encode(g))
        o.mux(s.encode(None))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    d = tmp_path_factory.mktemp("corpus")
    main = write_video(d / "main.mp4", SHOTS, width=W, height=H, gop=50)
    remux(main.path, str(d / "remuxed.mkv"))  # same decoded frames, other bytes
    _half(main.path, str(d / "small copy.mp4"))  # a re-encoded, lower-resolution duplicate
    shutil.copy(main.path, d / "zz_byte_copy.mp4")  # the very same bytes
    (d / "broken.mp4").write_text("not a video")
    return d


@pytest.fixture(scope="module")
def curated(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    summary = run(corpus, out, Config(workers=2))
    return out, summary


def _index(out):
    return {r["clip_id"]: r for r in pq.read_table(out / "index.parquet").to_pylist()}


def _rejected(out):
    return pq.read_table(out / "rejected.parquet").to_pylist()


def test_output_layout(curated):
    out, summary = curated
    names = {p.name for p in out.iterdir()}
    assert {
        "shards",
        "index.parquet",
        "rejected.parquet",
        "summary.json",
        "ledger.sqlite",
        "README.md",
        "run.log",
    } <= names
    assert not [p for p in out.rglob("*") if p.name.startswith(".") or "tmp" in p.name]
    assert json.loads((out / "summary.json").read_text()) == summary


def test_kept_clips_are_the_good_shots_of_one_copy(curated, corpus):
    out, _ = curated
    rows = sorted(_index(out).values(), key=lambda r: r["start_frame"])
    assert [(r["start_frame"], r["end_frame"]) for r in rows] == [SPANS["a"], SPANS["b"]]
    # main.mp4 and remuxed.mkv decode to the same frames: one of them is kept (the tie between
    # equal resolutions is broken by clip id), and the byte copy never gets that far
    assert len({r["source"] for r in rows}) == 1
    assert rows[0]["source"] in (str(corpus / "main.mp4"), str(corpus / "remuxed.mkv"))
    for r in rows:
        assert r["num_frames"] == r["end_frame"] - r["start_frame"]
        assert r["start_s"] == pytest.approx(r["start_frame"] / 30)
        assert r["end_s"] == pytest.approx(r["end_frame"] / 30)
        assert (r["width"], r["height"], r["fps"]) == (W, H, 30.0)
        assert len(r["source_sha256"]) == 64 and r["video_id"] == r["source_sha256"][:16]
        assert r["key"] == r["clip_id"] and r["shard"] == "shard-000000.tar"


def test_drop_reasons(curated, corpus):
    out, _ = curated
    rej = _rejected(out)
    for name in ("main.mp4", "remuxed.mkv", "small copy.mp4"):
        clips = {
            (r["start_frame"], r["end_frame"]): (r["stage"], r["reason"])
            for r in rej
            if r["kind"] == "clip" and r["source"] == str(corpus / name) and r["stage"] != "dedup"
        }
        assert clips == {
            SPANS["dark"]: ("filter", "too_dark"),
            SPANS["static"]: ("filter", "static"),
            SPANS["blurry"]: ("filter", "blurry"),
            SPANS["short"]: ("plan", "too_short"),
        }, name
    videos = {
        r["source"].rsplit("/", 1)[1]: (r["stage"], r["reason"])
        for r in rej
        if r["kind"] == "video"
    }
    assert videos == {
        "broken.mp4": ("probe", "not_a_media_file"),
        "zz_byte_copy.mp4": ("ingest", "duplicate_source"),
    }


def test_dedup_groups_keep_the_best_member(curated, corpus):
    out, _ = curated
    kept = {(r["start_frame"], r["end_frame"]): r["clip_id"] for r in _index(out).values()}
    dedup = [r for r in _rejected(out) if r["stage"] == "dedup"]
    by_source = {}
    for r in dedup:
        by_source.setdefault(r["source"].rsplit("/", 1)[1], []).append(r)
    twin = "remuxed.mkv" if "remuxed.mkv" in by_source else "main.mp4"
    assert sorted(by_source) == sorted([twin, "small copy.mp4"])
    for r in by_source[twin]:
        assert r["reason"] == "exact_duplicate"
        assert r["duplicate_of"] == kept[(r["start_frame"], r["end_frame"])]
    for r in by_source["small copy.mp4"]:
        assert r["reason"] == "near_duplicate"  # half resolution loses to the original
        assert r["duplicate_of"] == kept[(r["start_frame"], r["end_frame"])]
    assert len(by_source[twin]) == len(by_source["small copy.mp4"]) == 2


def test_shards_load_with_webdataset_and_hold_exact_frames(curated):
    out, _ = curated
    index = _index(out)
    samples = list(
        wds.WebDataset(
            str(out / "shards" / "shard-000000.tar"), shardshuffle=False, empty_check=False
        )
    )
    assert sorted(s["__key__"] for s in samples) == sorted(index)
    for s in samples:
        row = index[s["__key__"]]
        meta = json.loads(s["json"])
        row = {**row, "scores": dict(row["scores"])}  # parquet maps read back as pairs
        assert meta == {k: row[k] for k in meta} and set(row) <= set(meta)
        with av.open(io.BytesIO(s["mp4"])) as c:
            frames = list(c.decode(video=0))
        assert len(frames) == row["num_frames"]
        assert frames[0].pts == 0 and all(b.pts > a.pts for a, b in itertools.pairwise(frames))
        first = frames[0].to_ndarray(format="rgb24")
        last = frames[-1].to_ndarray(format="rgb24")
        assert psnr(first, render_frame(SHOTS, row["start_frame"], W, H)) >= 35
        assert psnr(last, render_frame(SHOTS, row["end_frame"] - 1, W, H)) >= 35
        # and not the neighbours across the cut
        if row["start_frame"] > 0:
            assert psnr(first, render_frame(SHOTS, row["start_frame"] - 1, W, H)) < 25


def test_summary_and_card_agree_with_the_tables(curated):
    out, summary = curated
    c = summary["counts"]
    assert c["clips"]["kept"] == len(_index(out)) == 2
    rej = _rejected(out)
    assert c["clips"]["dropped"] == sum(r["kind"] == "clip" for r in rej)
    assert c["videos"] == {"total": 5, "done": 3, "failed": 2, "pending": 0, "removed": 0}
    assert c["hours_out"] == pytest.approx(165 / 30 / 3600)
    assert summary["shards"][0]["count"] == 2
    card = (out / "README.md").read_text()
    assert "2 clips" in card and "unknown" in card and "too_dark" in card


def test_rerun_redoes_nothing(curated, corpus):
    out, summary = curated
    shard = out / "shards" / "shard-000000.tar"
    before = shard.read_bytes()
    again = run(corpus, out, Config(workers=1))
    assert again["counts"] == summary["counts"]
    assert shard.read_bytes() == before
    with sqlite3.connect(out / "ledger.sqlite") as db:
        assert db.execute("SELECT MAX(attempts) FROM videos").fetchone()[0] == 1


def test_skip_filters_and_dedup(corpus, tmp_path):
    cfg = Config(workers=1, skip=["filters", "dedup"])
    summary = run(corpus, tmp_path / "o", cfg)
    rows = pq.read_table(tmp_path / "o" / "index.parquet").to_pylist()
    main = [r for r in rows if r["source"].endswith("main.mp4")]
    assert {r["source"].rsplit("/", 1)[1] for r in rows} == {
        "main.mp4",
        "remuxed.mkv",
        "small copy.mp4",
    }
    assert sorted((r["start_frame"], r["end_frame"]) for r in main) == sorted(
        v for k, v in SPANS.items() if k != "short"
    )
    assert summary["counts"]["clips"]["kept"] == 5 * 3  # main, remux and small copy, unfiltered
    with tarfile.open(tmp_path / "o" / "shards" / "shard-000000.tar") as t:
        names = t.getnames()
    assert len(names) == 2 * len(rows) and len(set(names)) == len(names)


def test_a_resampled_clip_records_the_rate_and_frames_of_its_file(tmp_path):
    """``cut.mode: transcode`` with ``fps``: the index's ``fps`` and ``num_frames`` are the
    clip file's (a loader and the model stages read the file by them), while ``start_frame``
    and ``end_frame`` stay the source span. The records said 30 fps and the span's frame count
    for a 15 fps file with half as many frames."""
    media = tmp_path / "media"
    media.mkdir()
    write_video(media / "a.mp4", [ShotSpec(90, "texture", 81), ShotSpec(75, "texture", 82)])
    cfg = Config.model_validate({"skip": ["dedup"], "cut": {"mode": "transcode", "fps": 15}})
    run(media, tmp_path / "out", cfg)
    rows = sorted(pq.read_table(tmp_path / "out" / "index.parquet").to_pylist(),
                  key=lambda r: r["start_frame"])
    assert [(r["start_frame"], r["end_frame"]) for r in rows] == [(0, 90), (90, 165)]
    shards = sorted((tmp_path / "out" / "shards").glob("*.tar"))
    files = {}
    for shard in shards:
        with tarfile.open(shard) as t:
            files.update({m.name[:-4]: t.extractfile(m).read() for m in t.getmembers()
                          if m.name.endswith(".mp4")})
    for r in rows:
        with av.open(io.BytesIO(files[r["key"]])) as c:
            frames = sum(1 for _ in c.decode(video=0))
        assert (r["fps"], r["num_frames"]) == (15.0, frames)
        assert frames == round(r["duration_s"] * 15)  # 45 and 38: half the span's frames
