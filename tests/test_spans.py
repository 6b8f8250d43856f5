"""Many spans of one video (Panda-70M, HD-VILA-100M): one decode, clips only inside the spans,
each clip with its span's caption."""

from __future__ import annotations

from clipfactory.config import Config
from clipfactory.records import SourceItem
from clipfactory.testing.synth import ShotSpec, write_video
from clipfactory.worker import process_video


def test_clips_lie_inside_the_manifest_spans_and_carry_their_captions(tmp_path):
    video = tmp_path / "v.mp4"  # a hard cut at frame 66 (2.2 s)
    write_video(video, [ShotSpec(66, "texture", 7), ShotSpec(72, "texture", 8)], width=160,
                height=90)
    cfg = Config(skip=["filters"])
    cfg.clips.min_s = 1.0
    item = SourceItem(item_key="id:v", source="https://example.invalid/v", id="v",
                      local_path=str(video), start_s=0.3, end_s=3.9,
                      spans=((0.3, 1.9, "first"), (1.5, 3.9, "second")),
                      provenance={"fetcher": "http", "sha256": "ab", "info": {"big": 1}})
    r = process_video(item, cfg, tmp_path / "staging")
    assert r.rejection is None, r.rejection
    assert r.decoded_frames == 117  # decoded once, up to the last span's end
    got = sorted((c.start_frame, c.end_frame, c.extra.get("caption"), c.state) for c in r.clips)
    assert got == [(9, 57, "first", "staged"), (45, 66, "second", "dropped"),
                   (66, 117, "second", "staged")]
    kept = [c for c in r.clips if c.state == "staged"]
    assert all(c.source == "https://example.invalid/v" for c in kept)
    assert kept[0].extra["span"] == [0.3, 1.9] and kept[0].extra["span_index"] == 0
    assert kept[0].extra["fetch"] == {"fetcher": "http", "sha256": "ab"}  # not the info dict


def test_a_single_span_without_spans_keeps_the_old_behaviour(tmp_path):
    video = tmp_path / "v.mp4"
    write_video(video, [ShotSpec(66, "texture", 7), ShotSpec(72, "texture", 8)], width=160,
                height=90)
    cfg = Config(skip=["filters"])
    cfg.clips.min_s = 1.0
    r = process_video(SourceItem(item_key="k", source=str(video), start_s=0.3, end_s=3.9), cfg,
                      tmp_path / "staging")
    assert sorted((c.start_frame, c.end_frame) for c in r.clips) == [(9, 66), (66, 117)]
    assert all("caption" not in c.extra for c in r.clips)


def test_an_id_whose_rows_come_back_later_does_not_take_over_its_first_clips(tmp_path):
    """A manifest of a row per clip (InternVid) lists video `aaa` again after `bbb`: its
    second group is the input `id:aaa#2`. Its clip of a span already cut got the first
    group's clip id, replaced that sharded clip's row, and was sharded again: the index held
    the clip twice, under one key, and the ledger knew one copy."""
    import json

    import pyarrow.parquet as pq

    from clipfactory.ledger import Ledger
    from clipfactory.pipeline import run
    from clipfactory.provenance.audit import audit

    src = tmp_path / "in"
    src.mkdir()
    write_video(src / "a.mp4", [ShotSpec(90, "texture", 1), ShotSpec(90, "texture", 2)],
                width=160, height=90)
    write_video(src / "b.mp4", [ShotSpec(90, "texture", 5)], width=160, height=90)

    def rows(*spec):
        return "".join(json.dumps({"YoutubeID": i, "path": p, "Start_timestamp": 0.0,
                                   "End_timestamp": 3.0, "Caption": c}) + "\n"
                       for i, p, c in spec)

    manifest = src / "InternVid.jsonl"
    manifest.write_text(rows(("aaa", "a.mp4", "first"), ("bbb", "b.mp4", "a cat")))
    cfg = Config.model_validate({"workers": 1, "ingest": {"columns": {"path": "path"}}})
    out = tmp_path / "out"
    run(manifest, out, cfg)
    with manifest.open("a") as f:
        f.write(rows(("aaa", "a.mp4", "first again")))
    run(manifest, out, cfg)
    ledger = Ledger(out / "ledger.sqlite")
    clips = {c.clip_id: c for c in ledger.clips()}
    ledger.close()
    assert {c.item_key for c in clips.values()} == {"id:aaa", "id:bbb", "id:aaa#2"}
    first = [c for c in clips.values() if c.item_key == "id:aaa"]
    again = [c for c in clips.values() if c.item_key == "id:aaa#2"]
    assert len(first) == len(again) == 1 and first[0].state == "sharded"
    assert (again[0].state, again[0].reason) == ("dropped", "exact_duplicate")
    keys = [r["key"] for r in pq.read_table(out / "index.parquet").to_pylist()]
    assert sorted(keys) == sorted(c.key for c in clips.values() if c.state == "sharded")
    assert len(keys) == len(set(keys)) == 2
    assert audit(out).ok
