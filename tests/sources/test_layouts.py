"""Manifest layouts of published datasets, written here in their published formats."""

from __future__ import annotations

import csv
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from clipfactory.config import IngestConfig
from clipfactory.records import Rejection, SourceItem
from clipfactory.sources import read_input
from clipfactory.sources.layouts import detect_layout, parse_seconds, parse_spans


def _split(rows):
    return ([r for r in rows if isinstance(r, SourceItem)],
            [r for r in rows if isinstance(r, Rejection)])


def test_hdvila_jsonl(tmp_path):
    rows = [
        {"video_id": "QMi8x8o55Ns", "url": "https://www.youtube.com/watch?v=QMi8x8o55Ns",
         "clip": [{"clip_id": "QMi8x8o55Ns.1.mp4", "span": ["00:00:17.759", "00:00:23.279"]},
                  {"clip_id": "QMi8x8o55Ns.2.mp4", "span": ["00:04:52.140", "00:05:03.350"]}]},
        {"video_id": "bad", "url": "https://www.youtube.com/watch?v=bad",
         "clip": [{"clip_id": "bad.1.mp4", "span": ["00:00:09.000", "00:00:02.000"]}]},
    ]
    m = tmp_path / "hdvila_part0.jsonl"
    m.write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    items, rej = _split(list(read_input(m)))
    (item,) = items
    assert item.item_key == "id:QMi8x8o55Ns" and item.id == "QMi8x8o55Ns"
    assert item.source == "https://www.youtube.com/watch?v=QMi8x8o55Ns"
    assert item.spans == ((17.759, 23.279, None), (292.14, 303.35, None))
    assert (item.start_s, item.end_s) == (17.759, 303.35)
    assert item.extra["layout"] == "hdvila"
    assert [r.reason for r in rej] == ["invalid_manifest_row"] and "not after" in rej[0].detail


def test_panda70m_csv(tmp_path):
    m = tmp_path / "panda70m_training_2m.csv"
    with m.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["videoID", "url", "timestamp", "caption", "matching_score"])
        w.writerow(["--2m4NVN3TU", "https://www.youtube.com/watch?v=--2m4NVN3TU",
                    "[['0:00:00.000', '0:00:05.005'], ['0:00:05.005', '0:00:09.843']]",
                    "['A man is talking in a kitchen.', \"A dog's nose, close up.\"]",
                    "[0.4563, 0.4412]"])
        w.writerow(["x1", "https://www.youtube.com/watch?v=x1", "[['0:00:01.000', '0:00:02.000']]",
                    "['one', 'two']", "[0.5]"])
    items, rej = _split(list(read_input(m)))
    (item,) = items
    assert item.spans == ((0.0, 5.005, "A man is talking in a kitchen."),
                          (5.005, 9.843, "A dog's nose, close up."))
    assert item.extra["matching_score"] == "[0.4563, 0.4412]"
    assert "caption" not in item.extra and "timestamp" not in item.extra
    assert "1 spans but 2 captions" in rej[0].detail


def test_internvid_rows_of_one_video_become_one_item(tmp_path):
    rows = [
        {"YoutubeID": "aaa", "Start_timestamp": "00:00:01.000", "End_timestamp": "00:00:03.500",
         "Caption": "a red car", "Aesthetic_Score": 4.1, "UMT_Score": 0.41},
        {"YoutubeID": "aaa", "Start_timestamp": "00:00:07.000", "End_timestamp": "00:00:09.000",
         "Caption": "a blue car", "Aesthetic_Score": 4.5, "UMT_Score": 0.41},
        {"YoutubeID": "bbb", "Start_timestamp": "00:01:00.000", "End_timestamp": "00:01:02.000",
         "Caption": "a cat"},
        {"YoutubeID": "aaa", "Start_timestamp": "00:02:00.000", "End_timestamp": "00:02:04.000",
         "Caption": "later"},
    ]
    m = tmp_path / "InternVid-10M-flt.jsonl"
    m.write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    items, rej = _split(list(read_input(m)))
    assert not rej
    assert [i.item_key for i in items] == ["id:aaa", "id:bbb", "id:aaa#2"]
    a = items[0]
    assert a.source == "https://www.youtube.com/watch?v=aaa"
    assert a.spans == ((1.0, 3.5, "a red car"), (7.0, 9.0, "a blue car"))
    assert (a.start_s, a.end_s) == (1.0, 9.0)
    assert a.extra == {"UMT_Score": 0.41, "layout": "internvid"}  # only what all rows share
    assert items[2].spans == ((120.0, 124.0, "later"),)


def test_webvid_csv_caption_of_the_whole_video(tmp_path):
    m = tmp_path / "results_2M_val.csv"
    m.write_text("videoid,contentUrl,duration,page_dir,name\n"
                 "31353427,https://ak.picdn.net/shutterstock/videos/31353427/preview/stock-footage"
                 "-merida.mp4,PT00H00M15S,006001_006050,\"Merida, mexico - may 23, 2017\"\n",
                 encoding="utf-8")
    (item,) = list(read_input(m))
    assert item.id == "31353427" and item.source.endswith("stock-footage-merida.mp4")
    assert item.spans == () and item.start_s is None
    assert item.extra["caption"] == "Merida, mexico - may 23, 2017"
    assert item.extra["page_dir"] == "006001_006050" and item.extra["duration"] == "PT00H00M15S"


def test_url_rows_column_mapping_and_forced_layout(tmp_path):
    m = tmp_path / "mine.parquet"
    pq.write_table(pa.table({"vid": ["v1", "v2"], "media": ["https://e.org/1.mp4", "file:///x/2.mp4"],
                             "lic": ["CC-BY-4.0", None],
                             "segs": [[[0.0, 2.0], [4.0, 6.0]], None]}), m)
    cfg = IngestConfig(columns={"id": "vid", "url": "media", "license": "lic", "spans": "segs"})
    items, rej = _split(list(read_input(m, cfg)))
    assert not rej
    assert items[0].source == "https://e.org/1.mp4" and items[0].license == "CC-BY-4.0"
    assert items[0].spans == ((0.0, 2.0, None), (4.0, 6.0, None))
    assert items[1].source == "/x/2.mp4" and items[1].spans == ()
    plain = tmp_path / "plain.jsonl"
    plain.write_text(json.dumps({"url": "https://e.org/3.mp4"}) + "\n", encoding="utf-8")
    (item,) = list(read_input(plain))
    assert item.source == item.source_url == "https://e.org/3.mp4"
    with pytest.raises(ValueError):
        list(read_input(plain, IngestConfig(columns={"nonsense": "x"})))
    forced = list(read_input(plain, IngestConfig(layout="webvid")))
    assert [r.reason for r in forced] == ["invalid_manifest_row"]


def test_detect_and_parse_helpers():
    assert detect_layout(["videoID", "url", "timestamp", "caption"]) == "panda70m"
    assert detect_layout(["video_id", "url", "clip"]) == "hdvila"
    assert detect_layout(["YoutubeID", "Start_timestamp", "End_timestamp"]) == "internvid"
    assert detect_layout(["videoid", "contentUrl", "name"]) == "webvid"
    assert detect_layout(["path", "id"]) == "generic"
    assert parse_seconds("1:02:03.5", "t") == 3723.5
    assert parse_seconds("02:03", "t") == 123.0 and parse_seconds(4, "t") == 4.0
    assert parse_seconds("", "t") is None
    with pytest.raises(ValueError):
        parse_seconds("-1", "t")
    with pytest.raises(ValueError):
        parse_spans("__import__('os')")  # literals only


@pytest.mark.parametrize("empty", ["", None, "   "])
def test_an_internvid_row_with_an_empty_caption_is_a_clip_of_its_group(tmp_path, empty):
    """Its span was dropped with its caption: the row ended its video's group, was rejected
    as the id seen twice, and the rows after it became a second input of the same video."""
    rows = [{"YoutubeID": "X", "Start_timestamp": s, "End_timestamp": e, "Caption": c}
            for s, e, c in [("00:00:01.000", "00:00:03.000", "a dog"),
                            ("00:00:04.000", "00:00:06.000", empty),
                            ("00:00:07.000", "00:00:09.000", "a cat")]]
    m = tmp_path / "InternVid-10M-flt.jsonl"
    m.write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    items, rej = _split(list(read_input(m)))
    assert not rej and [i.item_key for i in items] == ["id:X"]
    assert items[0].spans == ((1.0, 3.0, "a dog"), (4.0, 6.0, None), (7.0, 9.0, "a cat"))


def test_generic_rows_an_empty_captions_cell_ids_with_spaces_and_file_urls(tmp_path):
    """A CSV's empty `captions` cell is no captions (it was `1 spans but 0 captions`, the row
    rejected); an id written `a.mp4, v1` is `v1` (kept as ' v1 ', no takedown naming v1
    reached it); `file://localhost/...` and `FILE:///...` are the local paths they name
    (they became folders under the manifest's)."""
    video = tmp_path / "media" / "a b.mp4"
    video.parent.mkdir()
    video.write_bytes(b"")
    m = tmp_path / "m.csv"
    m.write_text("id,path,spans,captions\n"
                 f'v1,file://localhost{video.parent}/a%20b.mp4,"[[0,2],[3,5]]","[\'x\',\'y\']"\n'
                 f'  v2 ,FILE://{video.parent}/a%20b.mp4,"[[0,2]]",\n', encoding="utf-8")
    items, rej = _split(list(read_input(m)))
    assert not rej, rej
    assert [(i.item_key, i.id, i.source) for i in items] == [
        ("id:v1", "v1", str(video)), ("id:v2", "v2", str(video))]
    assert items[0].spans == ((0.0, 2.0, "x"), (3.0, 5.0, "y"))
    assert items[1].spans == ((0.0, 2.0, None),)
    assert parse_spans("[[0, 1]]", float("nan")) == ((0.0, 1.0, None),)


def test_a_row_whose_url_cannot_be_split_is_rejected_with_its_reason(tmp_path):
    """It stopped the whole run with a traceback (in the opt-out check, or in the fetcher's
    router), leaving every input pending."""
    m = tmp_path / "m.jsonl"
    m.write_text("\n".join(json.dumps({"id": i, "url": u}) for i, u in [
        ("port", "https://a.org:99999/x.mp4"), ("v6", "https://[::1/x.mp4"),
        ("nohost", "https:///x.mp4"), ("ok", "https://a.org/x.mp4")]), encoding="utf-8")
    items, rej = _split(list(read_input(m)))
    assert [i.item_key for i in items] == ["id:ok"]
    assert [(r.reason, r.detail.split(": ", 1)[1].split(" '")[0]) for r in rej] == [
        ("invalid_manifest_row", "not a usable URL")] * 3
    assert ["Port out of range" in rej[0].detail, "Invalid IPv6" in rej[1].detail,
            rej[2].detail.endswith("no host")] == [True] * 3
