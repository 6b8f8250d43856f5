"""The card states the codecs, pixel formats, frame sizes, buckets and models of the clips
actually kept: smart-cut clips keep their source's codec (here MPEG-4 Part 2 and VP9), so the
card must not call every clip H.264."""

from __future__ import annotations

import io
import re
import tarfile
from collections import Counter
from pathlib import Path

import av
import pyarrow.parquet as pq

from clipfactory.sinks.card_media import CODEC_NAMES, media_lines
from clipfactory.sinks.stats import kept_stats

from .conftest import EXPECTED


def _rows(out: Path) -> list[dict]:
    return pq.read_table(out / "index.parquet").to_pylist()


def _table(card: str, header: str) -> dict[tuple[str, ...], int]:
    """A Markdown table of the card, by its header line: cells -> the last cell as a count."""
    lines = card.splitlines()
    i = lines.index(header)
    out = {}
    for line in lines[i + 2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        out[tuple(cells[:-1])] = int(cells[-1])
    return out


def _decoded(out: Path, row: dict) -> tuple[str, str, int, int, int]:
    """codec, pixel format, size and frame count of the clip's bytes in its shard."""
    with tarfile.open(out / "shards" / row["shard"]) as t:
        data = t.extractfile(f"{row['key']}.mp4").read()
    with av.open(io.BytesIO(data)) as c:
        s = c.streams.video[0]
        frames = sum(1 for _ in c.decode(video=0))
        return s.codec_context.name, s.codec_context.pix_fmt, s.width, s.height, frames


def test_card_lists_the_codecs_the_clips_have(bucketed_out):
    rows = _rows(bucketed_out)
    for r in rows:  # the index tells the truth about each clip's bytes ...
        want = EXPECTED[(r["video_id"], r["start_frame"])]
        assert _decoded(bucketed_out, r) == (r["video_codec"], r["pix_fmt"], r["width"],
                                             r["height"], r["num_frames"])
        assert r["video_codec"] == want[2] and r["cut_method"] == "smart"
    card = (bucketed_out / "README.md").read_text()
    codecs = _table(card, "| video codec | pixel format | clips |")
    assert codecs == {("H.264/AVC (`h264`)", "yuv420p"): 3,
                      ("MPEG-4 Part 2 (`mpeg4`)", "yuv420p"): 1,
                      ("VP9 (`vp9`)", "yuv420p"): 1}  # ... and the card counts the index
    by_index = Counter((f"{CODEC_NAMES[r['video_codec']]} (`{r['video_codec']}`)", r["pix_fmt"])
                       for r in rows)
    assert codecs == by_index
    assert "H.264, yuv420p" not in card and "(H.264" not in card  # no blanket claim
    sizes = _table(card, "| frame size | clips |")
    assert sizes == {("192x108",): 2, ("108x192",): 1, ("160x120",): 1, ("160x90",): 1}
    assert "Cut: 5 smart" in card


def test_card_lists_buckets_and_models(bucketed_out):
    card = (bucketed_out / "README.md").read_text()
    assert "`shards/<bucket>/shard-NNNNNN.tar`" in card
    buckets = _table(card, "| bucket | clips | shards |")
    assert buckets == {("`120p_4x3_3s+`", "1"): 1, ("`90p_16x9_0-3s`", "2"): 1,
                       ("`90p_16x9_3s+`", "1"): 1, ("`90p_9x16_0-3s`", "1"): 1}
    models = _table(card, "| model | for | clips |")
    assert models == {("`shape-captioner`", "captions"): 4,
                      ("`source` (the manifest’s own captions)", "captions"): 1,
                      ("`shape-tagger` @ `r1`", "embeddings (3 dims)"): 5}
    rows = _rows(bucketed_out)
    assert Counter(r["caption_model"] for r in rows) == {"shape-captioner": 4, "source": 1}


def test_flat_card_names_the_flat_layout(flat_out):
    card = (flat_out / "README.md").read_text()
    assert "`shards/shard-NNNNNN.tar`: WebDataset shards" in card
    assert "| bucket |" not in card and "<bucket>" not in card
    assert re.search(r"\| MPEG-4 Part 2 \(`mpeg4`\) \| yuv420p \| 1 \|", card)
    assert "| model | for | clips |" in card  # the manifest's caption of `port`, no stage


def test_clips_section_with_unknown_codec_and_many_sizes():
    """Clips from a ledger older than the pixel-format record, and a long tail of sizes."""
    from clipfactory.records import ClipRecord

    kept = [ClipRecord(f"c{i}", f"c{i}", "k", "v", "s", 0, 10, 0.0, 1.0, 10.0, 100 + 2 * i,
                       100, extra={"cut": {"codec": "hevc", "method": "reencode"}})
            for i in range(15)]
    kept[0].extra = {}
    text = "\n".join(media_lines(kept_stats(kept), {}))
    assert _table(text, "| video codec | pixel format | clips |") == {
        ("H.265/HEVC (`hevc`)", "unknown"): 14, ("`unknown`", "unknown"): 1}
    sizes = _table(text, "| frame size | clips |")
    assert len(sizes) == 13 and sizes[("3 other sizes",)] == 3
    assert media_lines(kept_stats([]), {}) == []
