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
