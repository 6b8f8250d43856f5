"""Audit: a clean dataset passes; a hand-edited shard, a smuggled sample, an edited index and
a clip whose source was opted out are each caught, with a readable report and exit code 1."""

from __future__ import annotations

import io
import json
import tarfile

import pyarrow as pa
import pyarrow.parquet as pq

from clipfactory.cli import main
from clipfactory.config import Config
from clipfactory.pipeline import run
from clipfactory.provenance.audit import audit

from .conftest import COMMERCIAL, Out, row, write_manifest


def _kinds(out: Out, **kw) -> set[str]:
    return {p.kind for p in audit(out.path, **kw).problems}


def test_clean_dataset_passes(ungated, capsys):
    assert main(["audit", str(ungated.path)]) == 0
    text = capsys.readouterr().out
    assert "OK" in text and "11 clips" in text
    assert "warning: 2 clips have an unknown or missing license" in text


def test_hand_edited_shard_is_caught(ungated_copy, capsys):
    out = ungated_copy
    shard = out.shards()[0]
    with tarfile.open(shard) as t:
        m = next(m for m in t if m.name.endswith(".mp4"))
    data = bytearray(shard.read_bytes())
    data[m.offset_data + m.size // 2] ^= 0xFF  # one flipped bit pattern inside one clip
    shard.write_bytes(bytes(data))
    assert main(["audit", str(out.path)]) == 1
    text = capsys.readouterr().out
    assert "FAILED" in text and "shard_hash_mismatch" in text and "clip_hash_mismatch" in text
    assert m.name.split(".")[0] in text


def test_smuggled_sample_and_edited_index_are_caught(ungated_copy):
    out = ungated_copy
    shard = out.shards()[0]
    with tarfile.open(shard, "a") as t:
        for ext, payload in (("mp4", b"\x00" * 100), ("json", b"{}")):
            info = tarfile.TarInfo(f"intruder_0000000_0000066.{ext}")
            info.size = len(payload)
            t.addfile(info, io.BytesIO(payload))
    assert {"orphan_clip", "shard_hash_mismatch"} <= _kinds(out)
    # an index row whose license was rewritten no longer matches its KEY.json
    rows = out.index()
    rows[0]["license"] = "CC0-1.0" if rows[0]["license"] != "CC0-1.0" else "CC-BY-4.0"
    table = pq.read_table(out.path / "index.parquet")
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), out.path / "index.parquet")
    assert "clip_metadata_mismatch" in _kinds(out)
    # a dropped index row leaves its sample orphaned and the ledger disagreeing
    pq.write_table(pa.Table.from_pylist(rows[1:], schema=table.schema),
                   out.path / "index.parquet")
    assert {"orphan_clip", "index_mismatch"} <= _kinds(out)


def test_opted_out_source_is_caught(ungated_copy, tmp_path, capsys):
    out = ungated_copy
    later = tmp_path / "later.txt"
    later.write_text("https://videos.example.org/v/pd\n")
    assert main(["audit", str(out.path), "--opt-out-file", str(later)]) == 1
    text = capsys.readouterr().out
    assert "opted_out: 1" in text and "videos.example.org/v/pd" in text


def test_opt_out_list_growing_after_the_run_is_caught(licensed_media, tmp_path):
    optout = tmp_path / "optout.txt"
    optout.write_text("# none yet\n")
    m = write_manifest(tmp_path / "m.jsonl", [row(v, licensed_media) for v in ("cc0", "pd")])
    out = Out(tmp_path / "out")
    run(m, out.path, Config.model_validate({"policy": {"name": "commercial",
                                                       "opt_out_file": str(optout)}}))
    assert out.ids() == {"cc0", "pd"} and audit(out.path).ok
    with optout.open("a") as fh:
        fh.write("channel:chan-cc0\n")
    report = audit(out.path)
    assert [(p.kind, p.clip.split("_")[0]) for p in report.problems] == [("opted_out", "cc0")]
    optout.unlink()
    assert "opt_out_file_missing" in _kinds(out)


def test_clip_not_allowed_under_the_dataset_policy_is_caught(ungated_copy):
    out = ungated_copy
    # pretend the dataset was declared commercial without re-running: every non-commercial
    # clip present is now a violation
    import sqlite3

    db = sqlite3.connect(out.path / "ledger.sqlite")
    cfg = json.loads(db.execute("SELECT value FROM meta WHERE key='config'").fetchone()[0])
    cfg["policy"]["name"] = "commercial"
    db.execute("UPDATE meta SET value=? WHERE key='config'", (json.dumps(cfg),))
    db.commit()
    db.close()
    report = audit(out.path)
    bad = {p.clip.split("_")[0] for p in report.problems}
    assert {p.kind for p in report.problems} == {"not_allowed"}
    assert bad == {"nc", "ncsa", "nd", "unk", "arr", "missing"}
    assert bad.isdisjoint(COMMERCIAL)


def test_restored_backup_of_a_taken_down_source_is_caught(ungated_copy, tmp_path):
    from clipfactory.provenance.takedown import takedown, takedown_rules

    out = ungated_copy
    backup = tmp_path / "backup"
    backup.mkdir()
    for name in ("shards/shard-000000.tar", "index.parquet", "summary.json"):
        (backup / name.replace("/", "_")).write_bytes((out.path / name).read_bytes())
    takedown(out.path, takedown_rules(video_ids=["ccby"]), "creator request")
    assert audit(out.path).ok
    # someone restores yesterday's shard and index: the removed source is back
    for name in ("shards/shard-000000.tar", "index.parquet", "summary.json"):
        (out.path / name).write_bytes((backup / name.replace("/", "_")).read_bytes())
    report = audit(out.path)
    assert ("removed_source", "ccby") in {(p.kind, (p.clip or "").split("_")[0])
                                          for p in report.problems}
    assert "shard_hash_mismatch" in {p.kind for p in report.problems}


def test_unreadable_index_files_and_summary_are_findings_with_their_mend(ungated_copy,
                                                                         manifest, capsys):
    """A corrupt index part, index.parquet or summary.json stopped the audit with a one-line
    error (exit 2) naming a Parquet or JSON failure and not what to do: now each is a problem
    that says which command writes the file again, and doing so makes the audit pass."""
    out = ungated_copy
    part = sorted((out.path / "index").glob("*.parquet"))[0]
    for path in (part, out.path / "index.parquet", out.path / "summary.json"):
        path.write_bytes(path.read_bytes()[:40])
    assert main(["audit", str(out.path)]) == 1
    text = capsys.readouterr().out
    for kind in ("unreadable_index_part", "unreadable_compacted_index", "unreadable_summary"):
        assert kind in text
    assert part.name in text and "delete it and run `clipfactory run`" in text
    part.unlink()  # as the audit says
    run(manifest, out.path, Config())
    assert main(["compact", str(out.path)]) == 0
    assert audit(out.path).ok
