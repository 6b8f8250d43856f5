"""A run killed with SIGKILL at arbitrary moments finishes with nothing lost and nothing doubled."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tarfile
import time

import pyarrow.parquet as pq
import pytest

from clipfactory.config import Config
from clipfactory.pipeline import run
from clipfactory.testing.synth import ShotSpec, write_video


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    d = tmp_path_factory.mktemp("resume_corpus")
    for v in range(10):
        write_video(d / f"v{v}.mp4", [ShotSpec(66, "texture", 10 * v + 1),
                                      ShotSpec(72, "texture", 10 * v + 2)], gop=30)
    return d


def _cli(corpus, out) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "clipfactory.cli", "run", "--input", str(corpus), "--output",
         str(out), "--workers", "1", "--quiet"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)


def _clips(out):
    rows = pq.read_table(out / "index.parquet").to_pylist()
    return sorted((r["clip_id"], r["start_frame"], r["end_frame"], r["num_frames"]) for r in rows)


def test_sigkill_at_any_moment_then_resume(corpus, tmp_path):
    reference = tmp_path / "ref"
    run(corpus, reference, Config(workers=1))
    out = tmp_path / "killed"
    kills = 0
    for delay in (0.8, 1.4, 2.0, 2.6, 3.2, 4.0):
        proc = _cli(corpus, out)
        time.sleep(delay)
        if proc.poll() is not None:
            break
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and its workers, no clean-up at all
        proc.wait()
        kills += 1
    proc = _cli(corpus, out)
    _, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, err.decode()
    assert kills >= 2, "the runs finished too fast to be killed; the test proved nothing"

    assert _clips(out) == _clips(reference)
    keys = []
    for shard in sorted((out / "shards").iterdir()):
        with tarfile.open(shard) as t:
            keys += [m.name.split(".")[0] for m in t.getmembers() if m.name.endswith(".mp4")]
    assert sorted(keys) == [c[0] for c in _clips(out)]  # every clip exactly once in the shards
    leftovers = [p for p in out.rglob("*") if p.is_file() and (p.name.startswith(".")
                                                               or "tmp" in p.name)]
    assert leftovers == []
    staging = out / "staging"
    assert not staging.exists() or not any(p.is_file() for p in staging.rglob("*"))
