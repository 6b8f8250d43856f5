"""WebDataset shard writer: round trip, rolling, atomicity, rewrite, determinism."""

from __future__ import annotations

import hashlib
import json
import tarfile
from pathlib import Path

import pytest
import webdataset as wds

from clipfactory.sinks import shards
from clipfactory.sinks.shards import (
    ShardWriter,
    read_shard_keys,
    rewrite_shard_without,
    shard_info,
)


def payload(key: str, size: int = 3000) -> bytes:
    marker = f"MARKER<{key}>".encode()
    return (marker * (size // len(marker) + 1))[:size]


def write_samples(directory: Path, keys, **kw):
    """Write each key as an mp4 file on disk (streamed) plus json bytes."""
    directory.mkdir(parents=True, exist_ok=True)
    with ShardWriter(directory, **kw) as w:
        for key in keys:
            mp4 = directory / f"{key}.src"
            mp4.write_bytes(payload(key))
            w.add(key, {"mp4": mp4, "json": json.dumps({"key": key}).encode()})
            mp4.unlink()
    return w.close()


def visible(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def test_round_trip_through_webdataset(tmp_path):
    keys = [f"clip{i:03d}" for i in range(7)]
    infos = write_samples(tmp_path / "out", keys, max_count=3)
    assert [i.name for i in infos] == ["shard-000000.tar", "shard-000001.tar", "shard-000002.tar"]
    assert [i.count for i in infos] == [3, 3, 1]
    assert [k for i in infos for k in i.keys] == keys
    ds = wds.WebDataset([i.path for i in infos], shardshuffle=False, empty_check=False)
    seen = []
    for sample in ds:
        key = sample["__key__"]
        assert sample["mp4"] == payload(key)
        assert json.loads(sample["json"]) == {"key": key}
        seen.append(key)
    assert seen == keys
    for info in infos:
        p = Path(info.path)
        assert info.bytes == p.stat().st_size
        assert info.sha256 == hashlib.sha256(p.read_bytes()).hexdigest()
        assert shard_info(p) == info
        assert read_shard_keys(p) == list(info.keys)
    assert not [n for n in visible(tmp_path / "out") if n.startswith(".")]


def test_tar_headers_are_normalised_and_samples_adjacent(tmp_path):
    (info,) = write_samples(tmp_path, ["b", "a"], start_index=5, prefix="x-")
    assert info.name == "x-000005.tar"
    with tarfile.open(info.path) as tar:
        members = tar.getmembers()
    assert [m.name for m in members] == ["b.json", "b.mp4", "a.json", "a.mp4"]
    for m in members:
        assert (m.mtime, m.uid, m.gid, m.uname, m.gname, m.mode) == (0, 0, 0, "", "", 0o644)


def test_rolls_by_size(tmp_path):
    # each sample: 2 headers + 3000 B mp4 (6 blocks) + small json (1 block) = 9 blocks = 4.5 KiB
    infos = write_samples(tmp_path, [f"k{i}" for i in range(10)], max_bytes=20 * 1024)
    assert all(i.bytes <= 20 * 1024 for i in infos)
    assert sum(i.count for i in infos) == 10 and len(infos) > 1
    assert [i.count for i in infos][:-1] == [infos[0].count] * (len(infos) - 1)


def test_oversized_sample_goes_alone(tmp_path):
    with ShardWriter(tmp_path, max_bytes=10 * 1024) as w:
        names = [
            w.add("small1", {"bin": b"x"}),
            w.add("big", {"bin": b"y" * 50_000}),
            w.add("small2", {"bin": b"z"}),
        ]
    infos = w.close()
    assert names == ["shard-000000.tar", "shard-000001.tar", "shard-000002.tar"]
    assert [i.keys for i in infos] == [("small1",), ("big",), ("small2",)]


def test_exception_leaves_no_partial_or_temp_file(tmp_path):
    with pytest.raises(RuntimeError, match="boom"), ShardWriter(tmp_path, max_count=2) as w:
        w.add("a", {"bin": b"1"})
        w.add("b", {"bin": b"2"})
        w.add("c", {"bin": b"3"})  # rolls: shard 0 completed, shard 1 in progress
        assert visible(tmp_path) == [".shard-000001.tar.tmp", "shard-000000.tar"]
        raise RuntimeError("boom")
    assert visible(tmp_path) == ["shard-000000.tar"]
    assert read_shard_keys(tmp_path / "shard-000000.tar") == ["a", "b"]


def test_failed_member_is_rolled_back(tmp_path, monkeypatch):
    src = tmp_path / "src.bin"
    src.write_bytes(b"abc" * 1000)
    w = ShardWriter(tmp_path / "out")
    w.add("a", {"bin": b"keep"})
    with pytest.raises(FileNotFoundError):  # checked before anything is written
        w.add("b", {"bin": tmp_path / "missing.bin"})
    w.add("c", {"bin": src})
    real = shards._source_members

    def shrunk(key, members):  # the file is shorter than its stat said: fails mid-copy
        return [(name, size + 5000, opener) for name, size, opener in real(key, members)]

    monkeypatch.setattr(shards, "_source_members", shrunk)
    with pytest.raises(OSError):
        w.add("d", {"bin": src, "json": b"{}"})
    monkeypatch.undo()
    w.add("e", {"bin": b"after"})
    (info,) = w.close()
    assert info.keys == ("a", "c", "e")
    assert read_shard_keys(info.path) == ["a", "c", "e"]
    assert shard_info(info.path) == info
    with ShardWriter(tmp_path / "fresh") as clean:
        for key, value in (("a", b"keep"), ("c", src), ("e", b"after")):
            clean.add(key, {"bin": value})
    assert clean.close()[0].sha256 == info.sha256  # no trace of the failed sample


def test_invalid_keys(tmp_path):
    with ShardWriter(tmp_path) as w:
        for bad in ("a.b", "a/b", ""):
            with pytest.raises(ValueError):
                w.add(bad, {"bin": b"x"})
        w.add("ok", {"bin": b"x"})
        with pytest.raises(ValueError):
            w.add("ok", {"bin": b"y"})


def test_deterministic_sha256(tmp_path):
    keys = [f"s{i}" for i in range(5)]
    a = write_samples(tmp_path / "a", keys)
    b = write_samples(tmp_path / "b", keys)
    assert [i.sha256 for i in a] == [i.sha256 for i in b]
    assert Path(a[0].path).read_bytes() == Path(b[0].path).read_bytes()


def test_rewrite_without_removes_every_byte(tmp_path):
    keys = ["k0", "k1", "k2", "k3"]
    (info,) = write_samples(tmp_path / "s", keys)
    shard = Path(info.path)
    assert b"MARKER<k1>" in shard.read_bytes()
    new = rewrite_shard_without(shard, ["k1", "nope"])
    assert new is not None and new.keys == ("k0", "k2", "k3") and new.count == 3
    data = shard.read_bytes()
    assert b"MARKER<k1>" not in data and b"k1." not in data
    assert new == shard_info(shard)
    samples = {s["__key__"]: s for s in wds.WebDataset(str(shard), shardshuffle=False)}
    assert sorted(samples) == ["k0", "k2", "k3"]
    assert all(samples[k]["mp4"] == payload(k) for k in samples)
    # byte-identical to writing the kept samples from scratch
    (fresh,) = write_samples(tmp_path / "f", ["k0", "k2", "k3"])
    assert fresh.sha256 == new.sha256
    assert visible(tmp_path / "s") == ["shard-000000.tar"]


def test_rewrite_noop_and_empty(tmp_path):
    (info,) = write_samples(tmp_path, ["a", "b"])
    before = Path(info.path).read_bytes()
    assert rewrite_shard_without(info.path, ["zzz"]) == info
    assert Path(info.path).read_bytes() == before
    assert rewrite_shard_without(info.path, ["a", "b"]) is None
    assert visible(tmp_path) == []


def test_rewritten_members_drop_an_optional_member_the_update_lacks(tmp_path):
    """A caption that is now empty: the sample's metadata comes without ``txt``, and the
    old ``KEY.txt`` goes (it stayed, still holding the old caption, beside a ``KEY.json``
    that said none). Samples not listed keep theirs."""
    from clipfactory.sinks.shard_update import rewrite_shard_members

    d = tmp_path / "s"
    d.mkdir()
    with ShardWriter(d) as w:
        for key in ("a", "b"):
            w.add(key, {"mp4": payload(key).replace(b"MARKER", b"M"), "txt": b"old " + key.encode(),
                        "json": b"{}"})
    (info,) = w.close()
    rewrite_shard_members(info.path, {"a": {"json": b'{"caption": ""}'}}, optional=("txt",))
    samples = {s["__key__"]: s for s in wds.WebDataset(info.path, shardshuffle=False)}
    assert "txt" not in samples["a"] and samples["a"]["json"] == b'{"caption": ""}'
    assert samples["b"]["txt"] == b"old b"
    assert samples["a"]["mp4"] == payload("a").replace(b"MARKER", b"M")
