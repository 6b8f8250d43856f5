"""One writer per output folder: a second writer waits or fails clearly, a lock left by a
killed process is taken over, and a takedown racing a run loses nothing."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pyarrow.parquet as pq
import pytest

from clipfactory.cli import main
from clipfactory.config import Config
from clipfactory.lock import LOCK_FILE, OutputLocked, output_lock
from clipfactory.pipeline import run
from clipfactory.provenance.audit import audit
from clipfactory.provenance.takedown import takedown, takedown_rules
from clipfactory.testing.synth import ShotSpec, write_video

_HOLD = """
import sys, time
from clipfactory.lock import output_lock
with output_lock(sys.argv[1], "holder test"):
    print("held", flush=True)
    time.sleep(60)
"""


def _holder(out, tmp_path):
    script = tmp_path / "hold.py"
    script.write_text(_HOLD)
    proc = subprocess.Popen([sys.executable, str(script), str(out)], stdout=subprocess.PIPE,
                            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
                            start_new_session=True)
    assert proc.stdout.readline().strip() == b"held"
    return proc


def test_a_second_writer_fails_clearly_with_no_wait(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    proc = _holder(out, tmp_path)
    try:
        with pytest.raises(OutputLocked, match=rf"holder test.*pid {proc.pid}"), \
                output_lock(out, "me", wait=False):
            pass
        (out / "ledger.sqlite").touch()
        assert main(["takedown", str(out), "--video-id", "x", "--reason", "r",
                     "--no-wait"]) == 2
        assert "is being written by `holder test`" in capsys.readouterr().err
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # dies holding it: no clean-up at all
        proc.wait()
    with output_lock(out, "me", wait=False):  # the kernel released it with the process
        info = json.loads((out / LOCK_FILE).read_text())
        assert info["pid"] == os.getpid() and info["what"] == "me"
    with output_lock(out, "outer"), output_lock(out, "inner", wait=False):
        pass  # re-entrant in one process


def test_a_run_refused_before_any_work_leaves_no_folder_with_no_wait(tmp_path, capsys):
    """With --no-wait the lock (and so the output folder) was taken before the input was
    checked: a typo in --input left a folder holding only clipfactory.lock."""
    for extra in ([], ["--no-wait"]):
        out = tmp_path / f"out{len(extra)}"
        assert main(["run", "--input", str(tmp_path / "nope"), "--output", str(out),
                     *extra]) == 2
        assert "input not found" in capsys.readouterr().err
        assert not out.exists(), extra
    kept = tmp_path / "kept"  # an output folder that was there already stays
    kept.mkdir()
    assert main(["run", "--input", str(tmp_path / "nope"), "--output", str(kept),
                 "--no-wait"]) == 2
    assert kept.is_dir()


def test_a_takedown_racing_a_run_waits_and_loses_nothing(tmp_path, capsys):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for v in range(8):
        write_video(corpus / f"v{v}.mp4", [ShotSpec(66, "texture", 10 * v + 1),
                                           ShotSpec(72, "texture", 10 * v + 2)], gop=30)
    ref = tmp_path / "ref"
    run(corpus, ref, Config(workers=1))
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([sys.executable, "-m", "clipfactory.cli", "run", "--input",
                             str(corpus), "--output", str(out), "--workers", "1", "--quiet"],
                            env=env, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + 60
    while not (out / LOCK_FILE).is_file() or not (out / "ledger.sqlite").is_file():
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.02)
    removal = takedown(out, takedown_rules(sources=[str(corpus / "v3.mp4")]), "request")
    proc.wait(timeout=120)
    assert proc.returncode == 0, proc.stderr.read().decode()
    db = sqlite3.connect(out / "ledger.sqlite")
    recorded = [r[0] for r in db.execute("SELECT updated_at FROM videos WHERE item_key NOT"
                                         " LIKE '%v3.mp4'")]
    db.close()
    assert len(recorded) == 7 and max(recorded) < removal.at  # it waited for the whole run
    assert "is being written by `run`" in capsys.readouterr().err
    assert len(removal.clips) == 2
    got = {(r["source"], r["start_frame"], r["file_sha256"])
           for r in pq.read_table(out / "index.parquet").to_pylist()}
    want = {(r["source"].replace(str(ref), str(out)), r["start_frame"], r["file_sha256"])
            for r in pq.read_table(ref / "index.parquet").to_pylist()
            if not r["source"].endswith("v3.mp4")}
    assert got == want and len(got) == 14
    assert audit(out).ok


def test_a_report_waits_for_the_writer_holding_the_output(tmp_path, capsys):
    """`clipfactory report` holds the lock too: built while a takedown rewrote the output, it
    put the removed source's clips back on the page and its pictures back on disk."""
    import threading

    from clipfactory.report import build_report

    media = tmp_path / "media"
    media.mkdir()
    write_video(media / "a.mp4", [ShotSpec(60, "texture", 31)], width=160, height=96, gop=30)
    out = tmp_path / "out"
    run(media, out, Config(workers=1))
    page = out / "report.html"
    before = page.read_bytes()
    page.write_bytes(b"old")
    proc = _holder(out, tmp_path)
    try:
        assert main(["report", str(out), "--no-wait"]) == 2
        assert "is being written by `holder test`" in capsys.readouterr().err
        assert page.read_bytes() == b"old"
        done = threading.Thread(target=build_report, args=(out,), daemon=True)
        done.start()
        done.join(2.0)
        assert done.is_alive() and page.read_bytes() == b"old"  # waiting for the holder
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    done.join(60)
    assert not done.is_alive() and page.read_bytes()[:15] == before[:15]
    for flag, value in (("--kept", "-1"), ("--per-reason", "x"), ("--max-rows", "0")):
        with pytest.raises(SystemExit) as e:  # a usage error, not all clips but one
            main(["report", str(out), flag, value])
        assert e.value.code == 2


def test_an_audit_waits_for_the_writer_holding_the_output(tmp_path, capsys):
    """An audit taken while a run wrote the output failed it (orphan clips, index and summary
    mismatches) for what was only half-written."""
    import threading

    media = tmp_path / "media"
    media.mkdir()
    write_video(media / "a.mp4", [ShotSpec(60, "texture", 32)], width=160, height=96, gop=30)
    out = tmp_path / "out"
    run(media, out, Config(workers=1))
    proc = _holder(out, tmp_path)
    got = []
    try:
        assert main(["audit", str(out), "--no-wait"]) == 2
        assert "is being written by `holder test`" in capsys.readouterr().err
        t = threading.Thread(target=lambda: got.append(audit(out)), daemon=True)
        t.start()
        t.join(2.0)
        assert t.is_alive() and not got  # waiting for the holder
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    t.join(60)
    assert got and got[0].ok
