"""Model stages inside a run: streaming, what lands where, resume after a kill, takedown,
audit, and a run refused before any work when the model does not match."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from clipfactory.config import Config
from clipfactory.exec.local import LocalExecutor
from clipfactory.pipeline import run
from clipfactory.provenance.audit import audit
from clipfactory.provenance.takedown import takedown, takedown_rules
from clipfactory.stages import StageError
from clipfactory.testing.stages import MeanColourStage


def _parts(out: Path) -> dict[str, np.ndarray]:
    """clip_id -> vector over every embeddings part; fails on a clip found twice."""
    got: dict[str, np.ndarray] = {}
    for f in sorted((out / "embeddings").glob("*.parquet")):
        for r in pq.read_table(f).to_pylist():
            assert r["clip_id"] not in got, f"{r['clip_id']} in two parts"
            got[r["clip_id"]] = np.asarray(r["embedding"], dtype=np.float32)
    return got


def _index(out: Path) -> dict[str, dict]:
    return {r["clip_id"]: r for r in pq.read_table(out / "index.parquet").to_pylist()}


class _SlowExecutor(LocalExecutor):
    """Hands each result over a second after the previous one: videos still being cut."""

    def map(self, items, cfg, staging):
        for r in super().map(items, cfg, staging):
            time.sleep(1.0)
            yield r


@pytest.fixture(scope="module")
def annotated(stage_corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("annotated")
    summary = run(stage_corpus, out, Config(workers=1), executor=_SlowExecutor(1),
                  stages=[MeanColourStage(batch_size=1)])
    return out, summary


def test_every_kept_clip_has_its_vector_and_scores(annotated):
    out, summary = annotated
    index = _index(out)
    vecs = _parts(out)
    assert len(index) == 8 and set(vecs) == set(index)
    for cid, row in index.items():
        assert abs(float(np.linalg.norm(vecs[cid])) - 1.0) < 1e-5
        assert "colour.luma" in dict(row["scores"])
    t = pq.read_table(next((out / "embeddings").glob("*.parquet")))
    assert set(t.column("model").to_pylist()) == {"mean-colour"}
    assert set(t.column("revision").to_pylist()) == {"v1"}
    assert summary["annotations"]["embeddings"] == 8
    assert "Embeddings: 8 clips, model `mean-colour`" in (out / "README.md").read_text()
    assert audit(out).ok


def test_clips_stream_into_the_stage_while_videos_are_cut(annotated):
    out, _ = annotated
    db = sqlite3.connect(out / "ledger.sqlite")
    last_video = db.execute("SELECT MAX(updated_at) FROM videos").fetchone()[0]
    db.close()
    import json

    first_clip = min(json.loads(r["extra"])["colour_at"] for r in _index(out).values())
    # the slow executor spaces the 4 videos a second apart: the stage had started before
    assert first_clip < last_video


def test_a_rerun_annotates_nothing_again(annotated, stage_corpus):
    out, _ = annotated
    before = {f.name: f.stat().st_mtime_ns for f in (out / "embeddings").iterdir()}
    s = run(stage_corpus, out, Config(workers=1), stages=[MeanColourStage(batch_size=1)])
    assert {f.name: f.stat().st_mtime_ns for f in (out / "embeddings").iterdir()} == before
    assert s["annotations"]["embeddings"] == 8


def test_a_different_model_revision_is_refused_before_any_work(annotated, stage_corpus):
    out, _ = annotated
    with pytest.raises(StageError, match="revision v1"):
        run(stage_corpus, out, Config(workers=1), stages=[MeanColourStage(revision="v2")])
    assert len(_parts(out)) == 8


def test_a_failing_stage_keeps_the_clips_with_the_reason(stage_corpus, tmp_path):
    out = tmp_path / "out"
    s = run(stage_corpus, out, Config(workers=1),
            stages=[MeanColourStage(batch_size=8, fail_setup=True)])
    index = _index(out)
    assert len(index) == 8  # annotation failures drop nothing
    import json

    assert all(json.loads(r["extra"])["annotate_errors"] == {"colour": "colour_setup_failed"}
               for r in index.values())
    assert s["annotations"]["failed_by_reason"] == {"colour/colour_setup_failed": 8}
    assert not (out / "embeddings").exists() or not list((out / "embeddings").iterdir())
    # the next run retries them (the model is fixed now), from the shards
    s = run(stage_corpus, out, Config(workers=1), stages=[MeanColourStage(batch_size=8)])
    assert set(_parts(out)) == set(index)
    assert s["annotations"]["failed_by_reason"] == {}
    assert all("annotate_errors" not in r["extra"] for r in _index(out).values())


def test_takedown_purges_the_vectors_and_audit_checks_it(stage_corpus, tmp_path):
    out = tmp_path / "out"
    run(stage_corpus, out, Config(workers=1), stages=[MeanColourStage(batch_size=3)])
    index = _index(out)
    gone = {cid for cid, r in index.items() if r["source"].endswith("v1.mp4")}
    assert len(gone) == 2
    part = next((out / "embeddings").glob("*.parquet"))
    leaked = pq.read_table(part)  # a copy of a part holding the vectors, kept aside
    removal = takedown(out, takedown_rules(sources=[str(stage_corpus / "v1.mp4")]), "request")
    assert removal.embeddings == 2
    vecs = _parts(out)
    assert set(vecs) == set(index) - gone
    db = sqlite3.connect(out / "ledger.sqlite")
    assert db.execute("SELECT COUNT(*) FROM embeddings").fetchone()[0] == 6
    db.close()
    assert audit(out).ok
    pq.write_table(leaked, out / "embeddings" / part.name)  # a purge that did not happen
    report = audit(out)
    kinds = {p.kind for p in report.problems}
    assert "embedding_of_removed_clip" in kinds and "embedding_part_hash_mismatch" in kinds
    assert {p.clip for p in report.problems if p.kind == "embedding_of_removed_clip"} == gone


_SCRIPT = """
import sys
from clipfactory.config import Config
from clipfactory.pipeline import run
from clipfactory.testing.stages import MeanColourStage
if __name__ == "__main__":
    cfg = Config.model_validate({"workers": 1, "annotate": {"part_rows": 1}})
    run(sys.argv[1], sys.argv[2], cfg, stages=[MeanColourStage(batch_size=1, sleep_s=0.4)])
"""


def _annotations(out: Path) -> int:
    try:
        db = sqlite3.connect(out / "ledger.sqlite", timeout=5)
        try:
            return db.execute("SELECT COUNT(*) FROM annotations").fetchone()[0]
        finally:
            db.close()
    except sqlite3.Error:
        return 0


def test_killed_during_the_model_stage_resumes_with_nothing_lost_or_doubled(stage_corpus,
                                                                           tmp_path):
    script = tmp_path / "run_stage.py"
    script.write_text(_SCRIPT)
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([sys.executable, str(script), str(stage_corpus), str(out)],
                            start_new_session=True, env=env, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while _annotations(out) < 3 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, proc.stderr.read().decode()
    done_before = _annotations(out)
    os.killpg(proc.pid, signal.SIGKILL)  # driver and stage worker, no clean-up
    proc.wait()
    assert 3 <= done_before < 8
    proc = subprocess.run([sys.executable, str(script), str(stage_corpus), str(out)], env=env,
                          capture_output=True, timeout=240)
    assert proc.returncode == 0, proc.stderr.decode()
    index = _index(out)
    vecs = _parts(out)  # no clip twice across parts
    assert set(vecs) == set(index) and len(index) == 8
    db = sqlite3.connect(out / "ledger.sqlite")
    assert db.execute("SELECT COUNT(*) FROM embeddings").fetchone()[0] == 8
    assert db.execute("SELECT COUNT(*) FROM annotations WHERE status = 'ok'").fetchone()[0] == 8
    db.close()
    assert audit(out).ok  # no part left unregistered, none missing
    # the vectors are those of the clips' own frames (same as an uninterrupted run)
    ref = tmp_path / "ref"
    run(stage_corpus, ref, Config(workers=1), stages=[MeanColourStage(batch_size=4)])
    ref_vecs = _parts(ref)
    by_key = {r["key"]: cid for cid, r in _index(ref).items()}
    for cid, r in index.items():
        assert np.allclose(vecs[cid], ref_vecs[by_key[r["key"]]], atol=1e-6)


# a stage whose filter drops every other clip (by clip id), run with the ledger's commit inside
# the store's flush replaced by SIGKILL when argv[3] is "kill"
_DROP_SCRIPT = """
import hashlib, os, signal, sys
from clipfactory.config import Config
from clipfactory.ledger import Ledger
from clipfactory.pipeline import run
from clipfactory.testing.stages import MeanColourStage

class DropStage(MeanColourStage):
    def process_batch(self, clips):
        outs = super().process_batch(clips)
        for o in outs:
            if o.ok and int(hashlib.sha256(o.clip_id.encode()).hexdigest(), 16) % 2:
                o.drop = "scripted_filter"
        return outs

if __name__ == "__main__":
    if sys.argv[3] == "kill":
        orig = Ledger.transaction
        def transaction(self):
            if sys._getframe(1).f_code.co_name == "flush":  # the store's commit
                os.kill(os.getpid(), signal.SIGKILL)
            return orig(self)
        Ledger.transaction = transaction
    run(sys.argv[1], sys.argv[2], Config(workers=1), stages=[DropStage(batch_size=2)])
"""


def _outcome(out: Path) -> dict:
    db = sqlite3.connect(out / "ledger.sqlite")
    try:
        clips = sorted(db.execute("SELECT json_extract(record, '$.key'), state, stage, reason"
                                  " FROM clips").fetchall())
    finally:
        db.close()
    files = sorted(p.name for p in (out / "staging").rglob("*.mp4"))
    return {"clips": clips, "staging": files}


def test_a_stage_drop_killed_before_its_commit_keeps_the_clip_file(stage_corpus, tmp_path):
    """A clip a stage drops keeps its staged file until the drop is committed: a run killed at
    the commit redoes the stage on resume and drops the same clips for the same reason."""
    script = tmp_path / "drop_stage.py"
    script.write_text(_DROP_SCRIPT)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}

    def go(out: Path, how: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(script), str(stage_corpus), str(out), how],
                              env=env, capture_output=True, timeout=240)

    ref, out = tmp_path / "ref", tmp_path / "out"
    assert go(ref, "plain").returncode == 0
    want = _outcome(ref)
    reasons = {(s, r) for _, state, s, r in want["clips"] if state == "dropped"}
    assert reasons == {("filter", "scripted_filter")}  # some dropped, all by the stage
    assert go(out, "kill").returncode == -9  # killed at the store's first commit
    assert len(list((out / "staging").rglob("*.mp4"))) == 8  # no clip lost its file
    proc = go(out, "plain")
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    assert _outcome(out) == want
    assert audit(out).ok
