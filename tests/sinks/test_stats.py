"""The kept clips' statistics merge: the merge of any split into disjoint parts equals the
statistics of the whole (every field, in the same order), and the two capped fields (credit
lines, distinct video ids) stay bounded and say so in the card."""

from __future__ import annotations

import json
import random

import pytest

from clipfactory.policy.report import license_counts, license_sections, unknown_license_clips
from clipfactory.records import ClipRecord
from clipfactory.sinks.card import render_card
from clipfactory.sinks.card_media import layout_lines, loading_lines, media_lines
from clipfactory.sinks.hf_card import front_matter
from clipfactory.sinks.stats import STATS_VERSION, kept_stats, merge_stats

LICENSES = [None, "", "CC-BY-4.0", "CC0-1.0", "unknown", "CC-BY-NC-SA-4.0"]
BUCKETS = ["", "90p_16x9_0-3s/", "120p_4x3_3s+/"]


def _clips(seed: int, n: int = 60) -> list[ClipRecord]:
    """Clips of a few videos spread over several shards (a video's clips in more than one),
    with every field the statistics read, some missing."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        v = rng.randrange(12)
        fps = rng.choice([24.0, 30.0, 29.97])
        start = rng.randrange(0, 500)
        length = rng.randrange(10, 200)
        extra: dict = {"cut": {"codec": rng.choice(["h264", "vp9", None]),
                               "pix_fmt": rng.choice(["yuv420p", None]),
                               "method": rng.choice(["smart", "reencode"]),
                               "audio": rng.random() < 0.3}}
        if v % 3:
            extra["title"] = f"Title {v} | odd"
        if rng.random() < 0.5:
            extra["category"] = rng.choice(["city", "nature"])
        if rng.random() < 0.4:
            extra.update(caption=f"c{i}", caption_model=rng.choice(["m1", None]),
                         **({"caption_status": "ok"} if rng.random() < 0.5 else {}))
        if rng.random() < 0.6:
            extra["camera_motion"] = rng.choice(["static", "pan"])
        scores = {f"s{k}": rng.random() for k in range(rng.randrange(4))}
        shard = f"{rng.choice(BUCKETS)}shard-{rng.randrange(5):06d}.tar"
        out.append(ClipRecord(
            f"clip{seed}-{i:04d}-{rng.randrange(1000)}", f"k{i}", f"item{v}", f"vid{v}",
            f"/data/src {v}.mp4", start, start + length, start / fps, (start + length) / fps,
            fps, rng.choice([192, 160]), rng.choice([108, 120]),
            source_url=f"https://example.org/{v}" if v % 2 else None,
            license=LICENSES[v % len(LICENSES)], attribution=f"Author {v}" if v % 4 else None,
            bytes=rng.randrange(1000, 99999), scores=scores, shard=shard, extra=extra))
    return out


def _dump(stats: dict) -> str:
    return json.dumps(stats)  # order included: the card's lines follow it


@pytest.mark.parametrize("seed", range(6))
def test_merge_of_any_split_is_the_stats_of_the_whole(seed):
    clips = _clips(seed)
    whole = kept_stats(clips)
    assert json.loads(json.dumps(whole)) == whole and whole["version"] == STATS_VERSION
    by_shard: dict[str, list[ClipRecord]] = {}
    for c in clips:
        by_shard.setdefault(c.shard or "", []).append(c)
    parts = [kept_stats(v) for _, v in sorted(by_shard.items())]
    assert _dump(merge_stats(parts)) == _dump(whole)
    rng = random.Random(seed)
    shuffled = rng.sample(clips, len(clips))  # any split, any order of parts and of clips
    cuts = sorted(rng.sample(range(1, len(clips)), 3))
    pieces = [shuffled[a:b] for a, b in zip([0, *cuts], [*cuts, len(clips)], strict=True)]
    stats = [kept_stats(p) for p in pieces]
    assert _dump(merge_stats(reversed(stats))) == _dump(whole)
    assert _dump(merge_stats([merge_stats(stats[:2]), merge_stats(stats[2:])])) == _dump(whole)
    assert _dump(merge_stats([whole, kept_stats([])])) == _dump(whole)


def test_counts_of_the_whole_are_right():
    clips = _clips(7)
    s = kept_stats(clips)
    assert s["clips"] == len(clips) and s["bytes"] == sum(c.bytes for c in clips)
    assert s["duration_us"] == sum(round(c.duration_s * 1e6) for c in clips)
    lic = {c.license or "missing" for c in clips}
    assert license_counts(s) == {k: sum((c.license or "missing") == k for c in clips)
                                 for k in sorted(lic)}
    assert unknown_license_clips(s) == sum(c.license in (None, "", "unknown", "missing")
                                           for c in clips)
    for k, v in s["licenses"].items():
        vids = {c.video_id for c in clips if (c.license or "missing") == k}
        assert v["videos"] == len(vids) and v["video_ids"] == sorted(vids)
        assert sum(e["clips"] for e in v["credits"].values()) == v["clips"]
        for vid, e in v["credits"].items():  # each credit is its video's first clip's
            first = min((c for c in clips if c.video_id == vid), key=lambda c: c.clip_id)
            assert e["first"] == first.clip_id and e["author"] == first.attribution
    assert set(s["buckets"]) == {"90p_16x9_0-3s", "120p_4x3_3s+"}
    assert s["score_names"] == sorted({k for c in clips for k in c.scores})


def _one_license(counts: list[int]) -> list[ClipRecord]:
    """Video ``v{i}`` with ``counts[i]`` clips, all CC BY, one shard per video."""
    return [ClipRecord(f"v{i:03d}-{j:03d}", f"k{i}-{j}", f"i{i}", f"v{i:03d}", f"/s/{i}.mp4",
                       0, 30, 0.0, 1.0, 30.0, 64, 64, license="CC-BY-4.0",
                       attribution=f"A{i}", shard=f"shard-{i:06d}.tar")
            for i, n in enumerate(counts) for j in range(n)]


def _summary(stats: dict) -> dict:
    return {"version": "t", "counts": {"clips": {"kept": stats["clips"]}, "hours_out": 0.0,
                                       "hours_in": 0.0, "videos": {"done": 1, "failed": 0},
                                       "dropped_by_reason": {}, "failed_by_reason": {}}}


def test_credits_are_capped_largest_first_and_the_card_says_how_many_more():
    counts = [1, 5, 2, 9, 3, 7, 1, 4, 6, 8]
    clips = _one_license(counts)
    parts = [kept_stats([c for c in clips if c.shard == s], credit_cap=3)
             for s in sorted({c.shard for c in clips})]
    for s in (kept_stats(clips, credit_cap=3), merge_stats(parts, credit_cap=3)):
        lic = s["licenses"]["CC-BY-4.0"]
        assert list(lic["credits"]) == ["v003", "v009", "v005"]  # 9, 8, 7 clips
        assert [e["clips"] for e in lic["credits"].values()] == [9, 8, 7]
        assert lic["credits_trimmed"] and lic["clips"] == sum(counts)
        assert lic["videos"] == 10 and lic["video_ids"] is not None  # still exact
        text = "\n".join(license_sections(_summary(s), s))
        assert "Video `v003` (9 clips)" in text and "v001" not in text
        assert f"- 7 more sources ({sum(counts) - 24} clips) are not listed here" in text
        assert "| CC-BY-4.0 | 46 | 10 |" in text
    small = kept_stats(clips)  # under the cap: every source, by first clip id, no extra line
    text = "\n".join(license_sections(_summary(small), small))
    assert [line.split("Video ")[1][:6] for line in text.splitlines() if "Video `" in line] \
        == [f"`v{i:03d}`" for i in range(10)]
    assert "not listed here" not in text


def test_a_merged_count_of_too_many_videos_is_marked_an_upper_bound():
    clips = _one_license([2] * 6)
    for c in clips[1::2]:  # each video's second clip in the next video's shard
        c.shard = f"shard-{int(c.video_id[1:]) + 1:06d}.tar"
    parts = [kept_stats([c for c in clips if c.shard == s])
             for s in sorted({c.shard for c in clips})]
    exact = merge_stats(parts, video_id_cap=100)
    assert exact["licenses"]["CC-BY-4.0"]["videos"] == 6
    bound = merge_stats(parts, video_id_cap=3)
    lic = bound["licenses"]["CC-BY-4.0"]
    assert lic["video_ids"] is None and 6 <= lic["videos"] <= sum(len(
        p["licenses"]["CC-BY-4.0"]["video_ids"]) for p in parts)
    assert {k: v for k, v in lic.items() if k not in ("videos", "video_ids")} == {
        k: v for k, v in exact["licenses"]["CC-BY-4.0"].items()
        if k not in ("videos", "video_ids")}
    text = "\n".join(license_sections(_summary(bound), bound))
    assert f"| CC-BY-4.0 | 12 | ≤ {lic['videos']} |" in text and "≤: an upper bound" in text
    assert _dump(merge_stats([bound, kept_stats([])], video_id_cap=3)) == _dump(bound)


def test_stats_of_another_version_are_refused():
    s = kept_stats(_clips(1, 5))
    with pytest.raises(ValueError, match="version"):
        merge_stats([s, {**s, "version": STATS_VERSION + 1}])


def test_no_kept_clips_gives_an_empty_card_header():
    s = kept_stats([])
    assert front_matter(s) == [] and media_lines(s, {}) == []
    assert "`shards/shard-NNNNNN.tar`" in layout_lines(s)[0]
    assert "# one bucket" not in "\n".join(loading_lines(s))
    card = render_card({**_summary(s), "policy": {"name": "none"}}, s, "a: 1\n")
    assert card.startswith("# Dataset card") and "| license | clips |" in card
