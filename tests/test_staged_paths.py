"""Staged clips survive a resume from another working directory, of a moved output folder, and
of a ledger whose staged paths were recorded relative to the working directory (as runs before
paths were made absolute did): nothing is dropped as ``staged_file_missing``."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from clipfactory.config import Config
from clipfactory.pipeline import run
from clipfactory.provenance.audit import audit
from clipfactory.testing.synth import ShotSpec, write_video

# run clipfactory until finalize starts, then SIGKILL: every kept clip is staged, none sharded
_KILL_AT_FINALIZE = """
import os, signal, sys
import clipfactory.finalize as f
from clipfactory.config import Config
from clipfactory.pipeline import run
f.remove_orphan_shards = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)
if __name__ == "__main__":
    run(sys.argv[1], sys.argv[2], Config(workers=1))
"""


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("staged-paths-in")
    for v in range(2):
        write_video(d / f"v{v}.mp4", [ShotSpec(66, "texture", 10 * v + 1),
                                      ShotSpec(72, "texture", 10 * v + 2)], gop=30)
    return d


def _staged_paths(out: Path) -> list[str]:
    db = sqlite3.connect(out / "ledger.sqlite")
    try:
        return [r[0] for r in db.execute("SELECT json_extract(record, '$.staged_path') FROM clips"
                                         " WHERE state = 'staged' ORDER BY clip_id")]
    finally:
        db.close()


def _killed_in(cwd: Path, videos: Path, output: str) -> None:
    script = cwd / "kill.py"
    script.write_text(_KILL_AT_FINALIZE)
    proc = subprocess.run([sys.executable, str(script), str(videos), output], cwd=cwd,
                          capture_output=True, timeout=240)
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]


def _kept(out: Path) -> tuple[dict, list[str]]:
    summary = json.loads((out / "summary.json").read_text())
    db = sqlite3.connect(out / "ledger.sqlite")
    try:
        keys = sorted(r[0] for r in db.execute("SELECT json_extract(record, '$.key') FROM clips"
                                               " WHERE state = 'sharded'"))
    finally:
        db.close()
    return summary["counts"]["clips"], keys


def test_a_relative_output_moved_then_resumed_elsewhere_keeps_its_clips(videos, tmp_path):
    ref = tmp_path / "ref"
    run(videos, ref, Config(workers=1))
    first, other = tmp_path / "first", tmp_path / "other"
    first.mkdir()
    other.mkdir()
    _killed_in(first, videos, "out")  # a relative --output
    paths = _staged_paths(first / "out")
    assert len(paths) == 4 and all(Path(p).is_absolute() for p in paths)
    moved = other / "moved"
    shutil.move(first / "out", moved)  # the output folder moves before the resume
    run(videos, moved, Config(workers=1))
    assert _kept(moved) == _kept(ref)  # 4 kept, nothing staged_file_missing
    assert _kept(moved)[0]["kept"] == 4
    assert audit(moved).ok


def test_staged_paths_recorded_relative_by_an_older_run_are_found(videos, tmp_path,
                                                                  monkeypatch):
    ref = tmp_path / "ref"
    run(videos, ref, Config(workers=1))
    _killed_in(tmp_path, videos, str(tmp_path / "out"))
    out = tmp_path / "out"
    db = sqlite3.connect(out / "ledger.sqlite")
    rows = db.execute("SELECT clip_id, record FROM clips WHERE state = 'staged'").fetchall()
    assert len(rows) == 4
    for cid, record in rows:  # what a run before absolute paths recorded: relative to its cwd
        rec = json.loads(record)
        rec["staged_path"] = str(Path("out") / Path(rec["staged_path"]).relative_to(out))
        db.execute("UPDATE clips SET record = ? WHERE clip_id = ?", (json.dumps(rec), cid))
    db.commit()
    db.close()
    monkeypatch.chdir(tmp_path / "ref")  # resumed from another directory
    run(videos, out, Config(workers=1))
    assert _kept(out) == _kept(ref)
    assert audit(out).ok
