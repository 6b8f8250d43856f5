"""bench-scale builds a valid output folder, and its steps change it as the commands should."""

from __future__ import annotations

import io
import json
import tarfile

import pyarrow.parquet as pq

from clipfactory.bench.scale import measure
from clipfactory.bench.scale_data import _header, _Spec, make_shard, tiny_clip
from clipfactory.cli import main
from clipfactory.ledger import Ledger
from clipfactory.provenance.audit import audit
from clipfactory.sinks.parts import read_index
from clipfactory.sinks.shards import ShardWriter, _tarinfo


def test_shards_are_the_bytes_the_shard_writer_writes(tmp_path):
    for name, size in [("k.json", 0), ("v000000001_0000000_0000240.mp4", 934),
                       ("x" * 99 + ".txt", 10**9), ("café.json", 3)]:  # long, non-ASCII
        assert _header(name, size) == _tarinfo(name, size).tobuf(
            tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
    clip = tiny_clip()
    (tmp_path / "shards").mkdir()
    spec = _Spec(25, str(tmp_path / "shards"), clip, ("CC-BY-4.0", "ungated", "ungated"), True, 0)
    (name, sha, size, count), videos, clips, (stats, dedup) = make_shard(spec, 0)
    assert (name, count, len(videos), len(clips)) == ("shard-000000.tar", 25, 3, 25)
    # the index part and statistics the first finalize would have written from the shard
    part = pq.read_table(tmp_path / "index" / "shard-000000.parquet").to_pylist()
    assert [r["clip_id"] for r in part] == sorted(c[0] for c in clips)
    assert json.loads(stats)["clips"] == 25 and len(dedup) == 25
    data = (tmp_path / "shards" / name).read_bytes()
    samples: dict[str, dict[str, bytes]] = {}
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for m in tar:
            key, ext = m.name.split(".", 1)
            samples.setdefault(key, {})[ext] = tar.extractfile(m).read()
    assert {s["mp4"] for s in samples.values()} == {clip}
    with ShardWriter(tmp_path / "again") as w:
        for key, members in samples.items():
            w.add(key, members)
        info = w.close()[0]
    assert (info.sha256, info.bytes) == (sha, size) == (info.sha256, len(data))
    record = json.loads(clips[7][-1])  # the ledger record and KEY.json tell the same clip
    meta = json.loads(samples[record["key"]]["json"])
    assert meta["file_sha256"] == record["file_sha256"] and meta["bytes"] == len(clip)


def test_a_missing_command_is_told_apart_from_a_failure():
    step = measure("clipfactory.cli", "no-such-command")
    assert step.missing and step.rc == 2 and step.peak_mib > 0
    step = measure("clipfactory.cli", "status", "/nonexistent/output")
    assert not step.missing and step.rc == 2


def test_bench_scale_keeps_a_dataset_the_commands_accept(tmp_path, capsys):
    keep, report = tmp_path / "keep", tmp_path / "rows.json"
    assert main(["bench-scale", "--clips", "2e3", "--keep", str(keep), "--json", str(report),
                 "--add", "5", "--rededup"]) == 0
    assert "clips-2000" in capsys.readouterr().out
    (row,) = json.loads(report.read_text())
    assert row["problems"] == []
    assert row["build"]["clips"] == 2000 and row["build"]["shards"] == 2
    assert row["run"]["added"] == 5
    assert row["status"]["kept"] == 2005  # counted after the run, before the takedown
    assert row["audit"]["ok"] and row["takedown"]["removed"] == 10
    assert row["rededup"]["rc"] == 0 and row["rededup"]["removed"] == 0  # random hashes
    out = keep / "clips-2000"
    assert audit(out, full=True).ok
    victim = row["takedown"]["video_id"]
    ledger = Ledger(out / "ledger.sqlite")
    try:
        assert ledger.counts()["clips"]["kept"] == 2005 - 10
        gone = ledger.clips_of([f"id:{victim}"])
        assert len(gone) == 10 and {(c.state, c.stage) for c in gone} == {("dropped",
                                                                            "takedown")}
    finally:
        ledger.close()
    index = read_index(out, columns=["video_id"]).column("video_id").to_pylist()
    assert len(index) == 1995 and victim not in index
    if (out / "index.parquet").is_file():
        assert victim not in pq.read_table(out / "index.parquet").column("video_id").to_pylist()
