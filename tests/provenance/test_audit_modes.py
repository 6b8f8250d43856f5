"""Audit modes: ``--shard`` checks one partition and nothing else, ``--sample`` draws shards by
seed and adds the dataset-wide checks, the default switches from full to a sample above 64
shards, and a partitioned index (``index/<shard>.parquet``) is read part by part."""

from __future__ import annotations

import json
import shutil
import tarfile
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from clipfactory.cli import main
from clipfactory.config import Config
from clipfactory.pipeline import run
from clipfactory.provenance.audit import DEFAULT_SAMPLE, FULL_UP_TO, audit
from clipfactory.sinks.parts import index_part, write_part
from clipfactory.testing.synth import ShotSpec, write_video

SHOTS = FULL_UP_TO + 6  # one clip per shot, one clip per shard: more shards than FULL_UP_TO


@pytest.fixture(scope="module")
def many_shards(tmp_path_factory) -> Path:
    """A real output of SHOTS one-clip shards (read-only: copy it before changing it)."""
    d = tmp_path_factory.mktemp("many_shards")
    video = d / "many.mp4"
    write_video(video, [ShotSpec(66, "texture", 900 + 7 * i) for i in range(SHOTS)],
                width=160, height=90, gop=33)
    manifest = d / "m.jsonl"
    manifest.write_text(json.dumps({"path": str(video), "id": "many", "license": "CC0",
                                    "url": "https://videos.example.org/v/many"}) + "\n")
    run(manifest, d / "out", Config.model_validate({"shards": {"max_count": 1}}))
    assert len(list((d / "out" / "shards").glob("*.tar"))) == SHOTS
    return d / "out"


@pytest.fixture
def out(many_shards, tmp_path) -> Path:
    dst = tmp_path / "out"
    shutil.copytree(many_shards, dst)
    return dst


def _corrupt(shard: Path) -> str:
    """Flip bytes inside the shard's clip; returns the clip's key."""
    with tarfile.open(shard) as t:
        m = next(m for m in t if m.name.endswith(".mp4"))
    data = bytearray(shard.read_bytes())
    data[m.offset_data + m.size // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    return m.name.split(".")[0]


def _partition(out: Path, *, keep_compacted: bool) -> None:
    """Split index.parquet into one part per shard, the layout of large datasets."""
    table = pq.read_table(out / "index.parquet")
    for name in pc.unique(table["shard"]).to_pylist():
        write_part(table.filter(pc.equal(table["shard"], name)), index_part(out, name))
    if not keep_compacted:
        (out / "index.parquet").unlink()


def _found(report) -> set[tuple[str, str | None]]:
    return {(p.kind, p.shard) for p in report.problems}


def test_default_switches_to_a_sample_above_the_full_limit(out, capsys):
    report = audit(out)
    c = report.checked
    assert report.ok, report.render()
    assert (c["mode"], c["default"], c["shards"], c["shards_total"]) == (
        "sample", True, DEFAULT_SAMPLE, SHOTS)
    assert c["clips"] == DEFAULT_SAMPLE and c["clips_total"] == SHOTS
    assert len(c["shard_names"]) == DEFAULT_SAMPLE and isinstance(c["seed"], int)
    full = audit(out, full=True)
    assert full.ok and full.checked["mode"] == "full" and full.checked["shards"] == SHOTS
    assert full.checked["clips"] == SHOTS and full.checked["videos"] == 1
    assert main(["audit", str(out)]) == 0
    text = capsys.readouterr().out
    assert f"sample of {DEFAULT_SAMPLE} shards" in text and "--full" in text
    assert f"{DEFAULT_SAMPLE} of {SHOTS} shards" in text


def test_shard_mode_finds_its_corrupt_shard_and_only_its_own(out, capsys):
    bad, good = "shard-000003.tar", "shard-000004.tar"
    key = _corrupt(out / "shards" / bad)
    report = audit(out, shards=["shard-000003"])  # ".tar" optional
    assert {("shard_hash_mismatch", bad), ("clip_hash_mismatch", bad)} <= _found(report)
    assert key in {p.clip for p in report.problems}
    assert report.checked["shard_names"] == [bad] and report.checked["clips"] == 1
    other = audit(out, shards=[good])
    assert other.ok and other.checked["shards"] == 1 and other.checked["mode"] == "shards"
    assert main(["audit", str(out), "--shard", bad, "--shard", good]) == 1
    text = capsys.readouterr().out
    assert "audit (shards): 2 of" in text and bad in text
    assert main(["audit", str(out), "--shard", "shard-999999.tar"]) == 2
    with pytest.raises(SystemExit):  # one mode at a time
        main(["audit", str(out), "--shard", good, "--full"])


def test_sample_with_a_seed_is_repeatable_and_checks_the_whole_inventory(out, capsys):
    first = audit(out, sample=4, seed=7)
    names = first.checked["shard_names"]
    assert first.ok and len(names) == 4 and first.checked["seed"] == 7
    assert audit(out, sample=4, seed=7).checked["shard_names"] == names
    _corrupt(out / "shards" / names[0])
    assert ("clip_hash_mismatch", names[0]) in _found(audit(out, sample=4, seed=7))
    assert main(["audit", str(out), "--sample", "4", "--seed", "7"]) == 1
    text = capsys.readouterr().out
    assert "seed 7" in text and ", ".join(names) in text
    # the dataset-wide checks cover shards outside the sample too
    spare = next(n for n in (f"shard-{i:06d}.tar" for i in range(SHOTS)) if n not in names)
    (out / "shards" / spare).unlink()
    shutil.copy(out / "shards" / names[1], out / "shards" / "shard-999999.tar")
    found = _found(audit(out, sample=4, seed=7))
    assert {("shard_missing", spare), ("orphan_shard", "shard-999999.tar")} <= found


def test_partitioned_index_is_read_part_by_part(out):
    _partition(out, keep_compacted=False)
    assert audit(out, full=True).ok and audit(out).ok
    name = "shard-000005.tar"
    part = index_part(out, name)
    rows = pq.read_table(part).to_pylist()
    rows[0]["license"] = "CC-BY-4.0"
    pq.write_table(pa.Table.from_pylist(rows, schema=pq.read_schema(part)), part)
    report = audit(out, shards=[name])
    assert _found(report) == {("clip_metadata_mismatch", name)}
    part.unlink()  # the part gone: its sample is an orphan, its ledger clip unindexed
    assert {("orphan_clip", name), ("index_mismatch", name)} <= _found(
        audit(out, shards=[name]))
    assert audit(out, shards=["shard-000006.tar"]).ok


@pytest.mark.parametrize("mode", [{"full": True}, {"sample": 2, "seed": 0}])
def test_orphan_index_part_is_reported(out, mode):
    _partition(out, keep_compacted=True)
    shutil.copy(index_part(out, "shard-000001.tar"), index_part(out, "shard-999999.tar"))
    report = audit(out, **mode)
    assert ("orphan_index_part", "shard-999999.tar") in _found(report)
    assert "index/shard-999999.parquet" in report.render()


def test_compacted_copy_that_disagrees_with_the_parts_is_checked_too(out):
    _partition(out, keep_compacted=True)
    assert audit(out, full=True).ok
    table = pq.read_table(out / "index.parquet")
    rows = table.to_pylist()
    name, key = rows[3]["shard"], rows[3]["key"]
    rows[3]["license"] = "CC-BY-4.0"  # the copy users read no longer says what KEY.json says
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), out / "index.parquet")
    for report in (audit(out, full=True), audit(out, shards=[name])):
        assert {("stale_compacted_index", name), ("clip_metadata_mismatch", name)} == _found(
            report)
        assert key in {p.clip for p in report.problems}
        assert "1 rows differ; e.g." in report.render() and "license" in report.render()
    assert audit(out, shards=["shard-000000.tar" if name != "shard-000000.tar"
                              else "shard-000001.tar"]).ok
