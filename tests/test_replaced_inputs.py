"""A file replaced under the same name after it was cut: its old clips leave the dataset (with
an audit record) and its new content is cut. A file only touched, or gone, changes nothing."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from clipfactory.config import Config
from clipfactory.ledger import Ledger
from clipfactory.pipeline import run
from clipfactory.provenance.audit import audit
from clipfactory.provenance.replaced import requeue_replaced_files
from clipfactory.sinks.parts import read_index
from clipfactory.sinks.shards import shard_info
from clipfactory.testing.synth import ShotSpec, write_video
from clipfactory.worker import file_sha256

FIRST = [ShotSpec(70, "texture", 81), ShotSpec(80, "texture", 82)]
OTHER = [ShotSpec(75, "texture", 83), ShotSpec(65, "texture", 84)]
NEW = [ShotSpec(60, "texture", 85), ShotSpec(90, "texture", 86)]


def _rows(out: Path) -> dict[str, list[tuple[int, int, str, str]]]:
    """Index rows by source file name: (start, end, clip id, source sha256), sorted."""
    by: dict[str, list[tuple[int, int, str, str]]] = {}
    for r in read_index(out).to_pylist():
        by.setdefault(Path(r["source"]).name, []).append(
            (r["start_frame"], r["end_frame"], r["clip_id"], r["source_sha256"]))
    return {k: sorted(v) for k, v in by.items()}


def _sharded(out: Path) -> set[str]:
    """Every sample key in every shard on disk."""
    return {k for p in (out / "shards").rglob("*.tar") for k in shard_info(p).keys}


def _videos(out: Path) -> dict[str, tuple[str, str | None, int]]:
    ledger = Ledger(out / "ledger.sqlite")
    try:
        return {Path(r["source"]).name: (r["state"], r["reason"], r["attempts"])
                for r in ledger.videos()}
    finally:
        ledger.close()


def _audit_records(out: Path) -> list[dict]:
    path = out / "audit.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_a_replaced_file_is_cut_again_and_its_old_clips_leave(tmp_path: Path) -> None:
    # one worker: a.mp4 is recorded before its copy c.mp4, so the copy is the duplicate
    media, out = tmp_path / "media", tmp_path / "out"
    cfg = Config(workers=1, skip=["dedup"])
    media.mkdir()
    a = Path(write_video(media / "a.mp4", FIRST).path)
    b = Path(write_video(media / "b.mp4", OTHER).path)
    shutil.copy(a, media / "c.mp4")  # the same bytes as a.mp4 under another name
    run(media, out, cfg)
    before = _rows(out)
    assert [s[:2] for s in before["a.mp4"]] == [(0, 70), (70, 150)]
    assert [s[:2] for s in before["b.mp4"]] == [(0, 75), (75, 140)]
    assert "c.mp4" not in before
    assert _videos(out)["c.mp4"][:2] == ("failed", "duplicate_source")
    old_ids = {s[2] for s in before["a.mp4"]}
    assert old_ids <= _sharded(out)

    # a.mp4 is swapped for another video; b.mp4 is touched (same bytes, a new mtime)
    new = Path(write_video(tmp_path / "new.mp4", NEW).path)
    os.replace(new, a)
    st = os.stat(b)
    os.utime(b, ns=(st.st_atime_ns, st.st_mtime_ns + 5 * 10**9))
    run(media, out, cfg)
    after = _rows(out)
    assert [s[:2] for s in after["a.mp4"]] == [(0, 60), (60, 150)]  # the new content's shots
    assert {s[3] for s in after["a.mp4"]} == {file_sha256(str(a))}
    assert not old_ids & {s[2] for s in after["a.mp4"]}
    assert after["b.mp4"] == before["b.mp4"]  # touched, not cut again
    # c.mp4 holds what a.mp4 held: it is the one that brings those clips now
    assert [s[:2] for s in after["c.mp4"]] == [(0, 70), (70, 150)]
    assert {s[3] for s in after["c.mp4"]} == {s[3] for s in before["a.mp4"]}
    videos = _videos(out)
    assert videos["a.mp4"] == ("done", None, 2)
    assert videos["b.mp4"] == ("done", None, 1)
    assert videos["c.mp4"][:2] == ("done", None)
    # counted once: c.mp4's clips took the ids of a.mp4's old ones (the same bytes)
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary["counts"]["clips"] == {"kept": 6, "staged": 0, "dropped": 0}
    # the sharded samples are exactly the index's: no byte of a.mp4's old clips under a.mp4
    assert _sharded(out) == {s[2] for rows in after.values() for s in rows}
    records = _audit_records(out)
    assert [r["kind"] for r in records] == ["replaced"]
    assert sorted(records[0]["clips"]) == sorted(old_ids)
    assert [v["item_key"] for v in records[0]["videos"]] == ["file:a.mp4"]
    assert records[0]["videos"][0]["source_sha256"] == before["a.mp4"][0][3]
    assert audit(out).ok

    # nothing changed, then b.mp4 is gone: nothing is cut again or removed
    run(media, out, cfg)
    b.unlink()
    run(media, out, cfg)
    assert _rows(out) == after
    assert len(_audit_records(out)) == 1
    assert _videos(out)["a.mp4"][2] == 2


def test_a_removal_cut_short_is_finished_by_the_next_run(tmp_path: Path) -> None:
    """The input's recorded file state changes only when it is cut again: a run that
    removed the old clips but died before cutting finds the input pending and cuts it once."""
    media, out, cfg = tmp_path / "media", tmp_path / "out", Config(skip=["dedup"])
    media.mkdir()
    a = Path(write_video(media / "a.mp4", FIRST).path)
    run(media, out, cfg)
    old_ids = {s[2] for s in _rows(out)["a.mp4"]}
    os.replace(write_video(tmp_path / "new.mp4", NEW).path, a)

    ledger = Ledger(out / "ledger.sqlite")
    try:  # what a run does first; it is killed right after
        found = requeue_replaced_files(ledger, out)
        assert found.inputs == ["file:a.mp4"] and sorted(found.clips) == sorted(old_ids)
        assert [r["state"] for r in ledger.videos()] == ["pending"]
        assert not requeue_replaced_files(ledger, out)  # pending now: not found twice
    finally:
        ledger.close()
    assert not old_ids & _sharded(out)

    run(media, out, cfg)
    assert [s[:2] for s in _rows(out)["a.mp4"]] == [(0, 60), (60, 150)]
    assert _videos(out)["a.mp4"] == ("done", None, 2)
    assert [r["kind"] for r in _audit_records(out)] == ["replaced"]
    assert audit(out).ok
