"""Bucket maths, bucket config validation, and the bucketed writer's bound on open shards."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest
from pydantic import ValidationError

from clipfactory.config import Config, ConfigError, ShardConfig, load_config
from clipfactory.sinks.bucket_writer import BucketedShardWriter
from clipfactory.sinks.buckets import (
    Bucketing,
    aspect_class,
    duration_class,
    next_indices,
    parse_shard_name,
    resolution_class,
    shard_name,
)

RES = {"360p": 360, "480p": 480, "720p": 720, "1080p": 1080, "2160p": 2160}
ASPECTS = ["9:16", "3:4", "1:1", "4:3", "16:9", "21:9"]


@pytest.mark.parametrize(("w", "h", "want"), [
    (1920, 1080, "1080p"), (1080, 1920, "1080p"),  # the short side, portrait or not
    (1280, 720, "720p"), (1279, 719, "480p"),  # at or below: 719 has not reached 720
    (3840, 2160, "2160p"), (7680, 4320, "2160p"),  # above the largest: the largest
    (1920, 800, "720p"),  # scope: short side 800
    (640, 360, "360p"), (640, 358, "lt360p"), (16, 16, "lt360p"),
])
def test_resolution_is_the_short_side_class_at_or_below(w, h, want):
    assert resolution_class(w, h, RES) == want


def test_resolution_bins_in_any_order():
    assert resolution_class(1280, 720, {"hd": 720, "sd": 480, "fhd": 1080}) == "hd"
    assert resolution_class(100, 100, {"hd": 720, "sd": 480}) == "ltsd"


@pytest.mark.parametrize(("w", "h", "want"), [
    (1920, 1080, "16x9"), (1080, 1920, "9x16"), (1440, 1080, "4x3"), (1080, 1440, "3x4"),
    (1000, 1000, "1x1"), (2560, 1080, "21x9"), (5000, 1000, "21x9"),  # nearest, even far off
    (1000, 5000, "9x16"), (1280, 800, "16x9"),  # 16:10 is nearer 16:9 than 4:3 in log ratio
    (1100, 1000, "1x1"),
])
def test_aspect_is_nearest_by_log_ratio(w, h, want):
    assert aspect_class(w, h, ASPECTS) == want


def test_aspect_tie_goes_to_the_first_listed():
    # 2:1 lies exactly halfway (in log ratio) between 1:1 and 4:1
    assert aspect_class(200, 100, ["1:1", "4:1"]) == "1x1"
    assert aspect_class(200, 100, ["4:1", "1:1"]) == "4x1"
    assert aspect_class(239, 100, ["2.39:1", "16:9"]) == "2.39x1"


@pytest.mark.parametrize(("s", "want"), [
    (0.0, "0-5s"), (4.999, "0-5s"), (5.0, "5-10s"), (9.99, "5-10s"), (10.0, "10-30s"),
    (29.9, "10-30s"), (30.0, "30s+"), (3600.0, "30s+"),
])
def test_duration_edges_are_half_open(s, want):
    assert duration_class(s, [0, 5, 10, 30]) == want


def test_duration_below_the_first_edge_and_fractional_edges():
    assert duration_class(1.0, [2, 5]) == "lt2s"
    assert duration_class(2.6, [0, 2.5, 5]) == "2.5-5s"


def test_bucket_joins_classes_in_the_order_given():
    b = Bucketing(("resolution", "aspect", "duration"), RES, tuple(ASPECTS), (0, 5, 10, 30))
    assert b.bucket(1280, 720, 7.0) == "720p_16x9_5-10s"
    assert b.bucket(1080, 1920, 45.0) == "1080p_9x16_30s+"
    d = Bucketing(("duration", "resolution"), RES, tuple(ASPECTS), (0, 5, 10, 30))
    assert d.bucket(1280, 720, 7.0) == "5-10s_720p"
    assert Bucketing().bucket(1280, 720, 7.0) is None and not Bucketing().enabled


def test_cosmos_style_bins():
    """Cosmos-curate's {720p, 1080p} x {9:16, 3:4, 1:1, 4:3, 16:9} x {5-10, 10-30, 30+ s}."""
    cfg = load_config(None, shards={
        "bucket_by": ["resolution", "aspect", "duration"],
        "resolution_bins": {"720p": 720, "1080p": 1080},
        "aspect_bins": ["9:16", "3:4", "1:1", "4:3", "16:9"], "duration_bins": [5, 10, 30]})
    b = cfg.shards.bucketing()
    assert b.bucket(1920, 1080, 12.0) == "1080p_16x9_10-30s"
    assert b.bucket(720, 960, 6.0) == "720p_3x4_5-10s"
    assert b.bucket(640, 360, 2.0) == "lt720p_16x9_lt5s"


def test_default_config_is_flat():
    cfg = Config()
    assert cfg.shards.bucket_by == [] and cfg.shards.bucketing().bucket(1920, 1080, 6.0) is None


@pytest.mark.parametrize(("shards", "message"), [
    ({"bucket_by": ["fps"]}, "'resolution', 'aspect' or 'duration'"),
    ({"bucket_by": ["aspect", "aspect"]}, "lists a dimension twice"),
    ({"bucket": ["aspect"]}, "Extra inputs are not permitted"),
    ({"duration_bins": [0, 10, 5]}, "strictly increasing"),
    ({"duration_bins": [0, 5, 5]}, "strictly increasing"),
    ({"duration_bins": [-1, 5]}, "finite seconds >= 0"),
    ({"duration_bins": []}, "duration_bins is empty"),
    ({"aspect_bins": ["16/9"]}, "not a ratio like '16:9'"),
    ({"aspect_bins": ["0:1"]}, "not a ratio"),
    ({"aspect_bins": ["16:9", "16:9"]}, "listed twice"),
    ({"resolution_bins": {"7 20p": 720}}, "becomes a folder name"),
    ({"resolution_bins": {"../x": 720}}, "becomes a folder name"),
    ({"resolution_bins": {"hd": 0}}, "positive short side"),
    ({"resolution_bins": {"a": 720, "b": 720}}, "same short side"),
    ({"max_open_buckets": 0}, "greater than or equal to 1"),
])
def test_bad_bucket_config_says_what_is_wrong(shards, message):
    with pytest.raises(ValidationError) as e:
        Config.model_validate({"shards": shards})
    assert message in str(e.value)


def test_unquoted_yaml_ratios_are_explained(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("shards:\n  bucket_by: [aspect]\n  aspect_bins: [9:16, 16:9]\n")
    with pytest.raises(ConfigError, match="quote ratios in YAML") as bad:
        load_config(p)
    assert str(bad.value).count("shards.aspect_bins") == 1  # named once
    p.write_text("shards:\n  bucket_by: [aspect]\n  aspect_bins: ['9:16', '16:9']\n")
    assert load_config(p).shards.bucketing().bucket(100, 200, 1.0) == "9x16"


def test_config_round_trips_through_yaml(tmp_path):
    cfg = Config(shards=ShardConfig(bucket_by=["duration", "aspect"], duration_bins=[0, 2.5]))
    p = tmp_path / "c.yaml"
    p.write_text(cfg.to_yaml())
    again = load_config(p)
    assert again.shards == cfg.shards
    assert again.shards.bucketing().bucket(160, 90, 3.0) == "2.5s+_16x9"


def test_shard_names_parse_back():
    assert shard_name(None, 3) == "shard-000003.tar"
    assert shard_name("720p_16x9_5-10s", 12) == "720p_16x9_5-10s/shard-000012.tar"
    assert parse_shard_name("720p_16x9_5-10s/shard-000012.tar") == ("720p_16x9_5-10s", 12)
    assert parse_shard_name("shard-000003.tar") == (None, 3)
    for bad in ("a/b/shard-000001.tar", "shard-x.tar", "other.tar"):
        with pytest.raises(ValueError):
            parse_shard_name(bad)
    assert next_indices(["shard-000004.tar", "a/shard-000000.tar", "a/shard-000002.tar"]) == {
        None: 5, "a": 3}


# -- the streaming bucketed writer -----------------------------------------------------------


def _read(root: Path) -> dict[str, list[str]]:
    """shard name under root -> sample keys, from the tars on disk."""
    out = {}
    for p in sorted(root.rglob("*.tar")):
        with tarfile.open(p) as t:
            names = [m.name for m in t]
        out[p.relative_to(root).as_posix()] = list(dict.fromkeys(n.split(".")[0] for n in names))
    return out


def test_bucketed_writer_rolls_each_bucket_and_bounds_open_shards(tmp_path):
    root = tmp_path / "shards"
    buckets = [f"b{i}" for i in range(6)]
    most_open = 0
    placed: dict[str, str] = {}
    with BucketedShardWriter(root, max_count=2, max_open=2) as w:
        for n in range(30):  # round robin over 6 buckets: every add evicts someone
            key = f"k{n:02d}"
            placed[key] = w.add(buckets[n % 6], key, {"json": json.dumps({"n": n}).encode(),
                                                        "mp4": bytes([n]) * 100})
            temps = [p for p in root.rglob(".*.tmp")]
            most_open = max(most_open, len(temps))
            assert w.open_buckets <= 2 and len(temps) <= 2
        infos = w.close()
    assert most_open == 2 and w.evictions > 0
    on_disk = _read(root)
    assert {i.name for i in infos} == set(on_disk)
    assert sorted(k for keys in on_disk.values() for k in keys) == sorted(placed)  # once each
    for key, name in placed.items():
        assert key in on_disk[name]
        assert name.split("/")[0] == buckets[int(key[1:]) % 6]
    for b in buckets:  # an evicted bucket carries on with its next number, never overwrites
        names = sorted(n for n in on_disk if n.startswith(b + "/"))
        assert [parse_shard_name(n)[1] for n in names] == list(range(len(names)))
    assert not list(root.rglob(".*"))


def test_bucketed_writer_sorted_input_gives_full_shards(tmp_path):
    root = tmp_path / "shards"
    with BucketedShardWriter(root, max_count=3, max_open=1,
                             start_indices={"a": 5, None: 2}) as w:
        for b in ("a", "b", None):
            for n in range(4):
                w.add(b, f"{b}{n}", {"json": b"{}"})
        infos = w.close()
    assert w.evictions == 2
    assert [(i.name, i.count) for i in infos] == [
        ("a/shard-000005.tar", 3), ("a/shard-000006.tar", 1), ("b/shard-000000.tar", 3),
        ("b/shard-000001.tar", 1), ("shard-000002.tar", 3), ("shard-000003.tar", 1)]


def test_bucketed_writer_refuses_repeats_and_bad_names(tmp_path):
    with BucketedShardWriter(tmp_path) as w:
        w.add("a", "k", {"json": b"{}"})
        with pytest.raises(ValueError, match="duplicate sample key"):
            w.add("b", "k", {"json": b"{}"})  # unique across buckets, not only within one
        for bad in ("..", "../x", "a/b", ".hidden", ""):
            with pytest.raises(ValueError, match="invalid bucket name"):
                w.add(bad, "k2", {"json": b"{}"})
    assert _read(tmp_path) == {"a/shard-000000.tar": ["k"]}


def test_bucketed_writer_discards_shards_in_progress_on_error(tmp_path):
    with pytest.raises(RuntimeError), BucketedShardWriter(tmp_path, max_count=1) as w:
        w.add("a", "k0", {"json": b"{}"})
        w.add("a", "k1", {"json": b"{}"})  # publishes a/shard-000000.tar
        raise RuntimeError("boom")
    assert _read(tmp_path) == {"a/shard-000000.tar": ["k0"]}
    assert not list(tmp_path.rglob(".*"))
