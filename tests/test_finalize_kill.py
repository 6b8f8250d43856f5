"""A run killed inside finalize (SIGKILL at chosen points of the global steps, and, slow, before
every write of the run in turn) resumes with nothing lost or doubled: the same clips, shards,
index parts and counts as a run never killed."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from clipfactory.config import Config
from clipfactory.ledger import Ledger
from clipfactory.pipeline import run
from clipfactory.provenance.audit import audit
from clipfactory.sinks.parts import read_index, read_rejected
from clipfactory.testing.killpoint import check_every_kill, kill_point_script
from clipfactory.testing.outputs import clip_members
from clipfactory.testing.synth import ShotSpec, write_video

# clipfactory run, killed on the N-th call of one function (argv: point, N, input, output)
_KILLER = kill_point_script("""
from clipfactory.config import Config
from clipfactory.pipeline import run
run(sys.argv[3], sys.argv[4], Config.model_validate({"workers": 1, "shards": {"max_count": 2}}))
""")

POINTS = [
    ("clipfactory.finalize:remove_staged_files", 1),  # duplicates dropped, files not deleted
    ("clipfactory.finalize:remove_staged_files", 2),  # a shard registered, its clips' files not
    ("clipfactory.dedup.store:DedupStore.add", 1),  # duplicates dropped, new clips not indexed
    ("clipfactory.finalize:refresh_stale_shards", 1),  # shards written, no part yet
    ("clipfactory.sinks.partition:write_part", 2),  # between two parts
    ("clipfactory.finalize:compact", 1),  # parts written, compacted file not
    ("clipfactory.finalize:write_card", 1),  # everything but summary's card and report
]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, Path]:
    first, more = tmp_path_factory.mktemp("fk-first"), tmp_path_factory.mktemp("fk-more")
    for v in range(3):
        write_video(first / f"v{v}.mp4", [ShotSpec(66, "texture", 10 * v + 1),
                                          ShotSpec(72, "texture", 10 * v + 2)], gop=30)
    write_video(more / "v3.mp4", [ShotSpec(70, "texture", 41), ShotSpec(75, "texture", 42)],
                gop=30)
    # a re-encode of v1 at another quality: near duplicates of clips already sharded
    write_video(more / "v1-copy.mp4", [ShotSpec(66, "texture", 11), ShotSpec(72, "texture", 12)],
                gop=30, crf=30)
    return first, more


def _cfg() -> Config:
    return Config.model_validate({"workers": 1, "shards": {"max_count": 2}})


def _state(out: Path) -> dict:
    index = sorted((r["clip_id"], r["start_frame"], r["end_frame"], r["file_sha256"], r["shard"])
                   for r in read_index(out).to_pylist())
    rejected = sorted((r["clip_id"] or r["item_key"], r["reason"], r["duplicate_of"])
                      for r in read_rejected(out).to_pylist())
    ledger = Ledger(out / "ledger.sqlite")
    try:
        counts = ledger.counts()
        indexed = ledger.db.execute("SELECT COUNT(*) FROM dedup_items").fetchone()[0]
    finally:
        ledger.close()
    compacted = sorted(r["clip_id"] for r in pq.read_table(out / "index.parquet").to_pylist())
    staging = sorted(p.relative_to(out).as_posix() for p in (out / "staging").rglob("*"))
    return {"staging": staging, "audit": audit(out).ok, "index": index, "rejected": rejected,
            "members": sorted(clip_members(out)),
            "counts": {k: counts[k] for k in ("videos", "clips", "dropped_by_reason")},
            "indexed": indexed, "compacted": compacted}


def _first_run(corpus: tuple[Path, Path], inp: Path, out: Path) -> None:
    """Run the first three videos from ``inp`` into ``out``, then add the new video and the
    near duplicate to ``inp`` for the next run."""
    first, more = corpus
    for f in first.iterdir():
        shutil.copy(f, inp / f.name)
    run(inp, out, _cfg())
    for f in more.iterdir():
        shutil.copy(f, inp / f.name)


@pytest.fixture(scope="module")
def reference(corpus, tmp_path_factory) -> dict:
    inp, out = tmp_path_factory.mktemp("fk-ref-in"), tmp_path_factory.mktemp("fk-ref") / "out"
    _first_run(corpus, inp, out)
    run(inp, out, _cfg())
    state = _state(out)
    assert state["counts"]["dropped_by_reason"].get("dedup/near_duplicate"), \
        "the copy was not found as a near duplicate: the test would prove nothing"
    assert state["audit"] and not state["staging"]
    return state


@pytest.mark.parametrize(("point", "call"), POINTS)
def test_killed_inside_finalize_then_resumed(corpus, reference, tmp_path, point, call) -> None:
    inp, out = tmp_path / "in", tmp_path / "out"
    inp.mkdir()
    _first_run(corpus, inp, out)
    proc = subprocess.run([sys.executable, "-c", _KILLER, point, str(call), str(inp), str(out)],
                          capture_output=True, timeout=300)
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]  # it died where we said
    if point.endswith(":remove_staged_files"):  # the kill left clip files no clip owns
        assert "orphan_file" in {p.kind for p in audit(out).problems}
    run(inp, out, _cfg())
    assert _state(out) == reference


# `dedup --full` killed on the N-th call of one function (argv: point, N, output)
_DEDUP_KILLER = kill_point_script("""
from clipfactory.cli import main
sys.exit(main(["dedup", "--full", sys.argv[3]]))
""")

DEDUP_POINTS = [
    ("clipfactory.finalize:refresh_shards", 1),  # drops recorded, no shard rewritten
    ("clipfactory.sinks.refresh:register_rewritten_shard", 1),  # a shard rewritten, not registered
    ("clipfactory.finalize:finalize", 1),  # shards rewritten, index and card not
]


@pytest.fixture(scope="module")
def undeduped(corpus, tmp_path_factory) -> tuple[Path, Path, dict]:
    """The corpus (the copy of v1 included) run without dedup, and the state a `dedup --full`
    never killed leaves it in."""
    first, more = corpus
    inp, out = tmp_path_factory.mktemp("fk-dd-in"), tmp_path_factory.mktemp("fk-dd") / "out"
    for f in [*first.iterdir(), *more.iterdir()]:
        shutil.copy(f, inp / f.name)
    run(inp, out, Config.model_validate({"workers": 1, "shards": {"max_count": 2},
                                         "skip": ["dedup"]}))
    ref = tmp_path_factory.mktemp("fk-dd-ref") / "out"
    shutil.copytree(out, ref)
    proc = subprocess.run([sys.executable, "-m", "clipfactory.cli", "dedup", "--full", str(ref)],
                          capture_output=True, timeout=300)
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    state = _state(ref)
    assert state["counts"]["dropped_by_reason"].get("dedup/near_duplicate"), \
        "dedup --full dropped nothing: the test would prove nothing"
    assert state["audit"]
    return inp, out, state


@pytest.mark.slow  # ~4 s each; .ci/run runs them after the default suite
@pytest.mark.parametrize("resume", ["dedup", "run"])
@pytest.mark.parametrize(("point", "call"), DEDUP_POINTS)
def test_killed_full_dedup_then_finished(undeduped, tmp_path, point, call, resume) -> None:
    inp, built, want = undeduped
    out = tmp_path / "out"
    shutil.copytree(built, out)
    proc = subprocess.run([sys.executable, "-c", _DEDUP_KILLER, point, str(call), str(out)],
                          capture_output=True, timeout=300)
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]  # it died where we said
    if resume == "dedup":
        proc = subprocess.run([sys.executable, "-m", "clipfactory.cli", "dedup", "--full",
                               str(out)], capture_output=True, timeout=300)
        assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    else:  # the next run finishes what the dedup recorded
        run(inp, out, _cfg())
    assert _state(out) == want


def _full_dedup(out: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "clipfactory.cli", "dedup", "--full", str(out)],
                          capture_output=True, timeout=300)
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]


@pytest.mark.slow  # every write of a `dedup --full` killed in turn: ~1 min each
@pytest.mark.parametrize("resume", ["dedup", "run"])
@pytest.mark.parametrize("point", ["os:replace", "clipfactory.ledger:Ledger.transaction",
                                   "clipfactory.ledger:Ledger.set_meta"])
def test_full_dedup_killed_at_every_step_is_all_or_nothing(undeduped, tmp_path, point, resume):
    """Killed before each of its writes in turn, then finished: the dedup's dataset, or
    (killed before the drops were recorded, finished by a run) the dataset without it."""
    inp, built, _ = undeduped
    finish = _full_dedup if resume == "dedup" else (lambda out: run(inp, out, _cfg()))
    kills = check_every_kill(_DEDUP_KILLER, point, built, tmp_path, args=lambda o: [str(o)],
                             command=_full_dedup, finish=finish, state=_state)
    assert kills, f"dedup --full never called {point}"


@pytest.fixture(scope="module")
def first_run(corpus, tmp_path_factory) -> tuple[Path, Path]:
    """An output after a run of the first three videos, and an input folder that now also
    holds the new video and the near duplicate."""
    inp, out = tmp_path_factory.mktemp("fk-sweep-in"), tmp_path_factory.mktemp("fk-sweep") / "out"
    _first_run(corpus, inp, out)
    return inp, out


@pytest.mark.slow  # every write of a run's second pass killed in turn: ~25 s per point
@pytest.mark.parametrize("point", ["os:replace", "os:fsync", "os:unlink",
                                   "clipfactory.ledger:Ledger.transaction",
                                   "clipfactory.ledger:Ledger.set_meta"])
def test_a_run_killed_at_every_write_resumes_to_the_same_dataset(first_run, reference, tmp_path,
                                                                 point) -> None:
    """A run that adds videos, killed before each of its file renames (clips, shards, parts,
    compacted files, summary, card, report), syncs, deletions, ledger transactions and meta
    writes in turn, then run again: the dataset of a run never killed, every time."""
    inp, base = first_run

    def again(out: Path) -> None:
        run(inp, out, _cfg())

    kills = check_every_kill(_KILLER, point, base, tmp_path, args=lambda o: [str(inp), str(o)],
                             command=again, finish=again, state=_state)
    assert kills, f"a run never called {point}"
    assert _state(base) != reference  # the first run alone is not the result: kills matter


def test_an_output_inside_the_input_folder_resumes_without_taking_its_clips_as_inputs(
        corpus, tmp_path) -> None:
    """``--output videos/out`` with ``--input videos``: a run killed with clips staged under
    the output leaves .mp4 files inside the input folder; the resumed run must not register
    them as new videos (clips of clips), and ends as a run never killed."""
    first, _ = corpus
    ref_in, inp = tmp_path / "ref", tmp_path / "in"
    for folder in (ref_in, inp):
        folder.mkdir()
        for f in first.iterdir():
            shutil.copy(f, folder / f.name)
    run(ref_in, ref_in / "out", _cfg())
    reference = _state(ref_in / "out")
    assert reference["counts"]["videos"]["total"] == 3

    out = inp / "out"
    proc = subprocess.run([sys.executable, "-c", _KILLER, "clipfactory.finalize:finalize", "1",
                           str(inp), str(out)], capture_output=True, timeout=300)
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]
    staged = list((out / "staging").rglob("*.mp4"))
    assert staged  # the killed run left its clips inside the input folder
    run(inp, out, _cfg())
    assert _state(out) == reference
