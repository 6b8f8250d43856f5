"""A takedown killed at any step (SIGKILL at chosen points of ``remove_inputs``) is finished
by the next takedown or by the next run: the same dataset as a takedown never killed, not one
byte of a removed clip left, and the audit clean."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from clipfactory.config import Config
from clipfactory.ledger import Ledger
from clipfactory.pipeline import run
from clipfactory.provenance.audit import audit
from clipfactory.provenance.takedown import takedown, takedown_rules
from clipfactory.sinks.parts import read_index, read_rejected
from clipfactory.testing.killpoint import check_every_kill, kill_point_script
from clipfactory.testing.outputs import assert_no_clip_bytes, clip_members
from clipfactory.testing.synth import ShotSpec, write_video

pytestmark = pytest.mark.slow  # a run and two takedowns per kill point: ~5 s each

# the victims taken down, killed on the N-th call of one function (argv: point, N, output,
# victims)
_KILLER = kill_point_script("""
from clipfactory.provenance.takedown import takedown, takedown_rules
takedown(sys.argv[3], takedown_rules(sources=sys.argv[4:]), "a request")
""")

POINTS = [
    ("clipfactory.provenance.removal:_rewrite", 1),  # rules kept, nothing removed yet
    ("clipfactory.provenance.removal:_rewrite", 2),  # one shard rewritten, the other not
    ("clipfactory.provenance.removal:mark_orphans", 1),  # clips dropped, keepers not marked
    ("clipfactory.provenance.removal:append_audit", 1),  # all gone, no audit record yet
    ("clipfactory.ledger:Ledger.set_video_state", 1),  # audit record, inputs not marked
    ("clipfactory.provenance.takedown:refresh_outputs", 1),  # index and card not rewritten
]


def _cfg() -> Config:
    return Config.model_validate({"workers": 1, "shards": {"max_count": 2}})


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, Path, list[str]]:
    """A dataset of 4 videos (8 clips, 4 shards), and the two victims' paths."""
    inp = tmp_path_factory.mktemp("tk-in")
    for v in range(4):
        write_video(inp / f"v{v}.mp4", [ShotSpec(66, "texture", 10 * v + 1),
                                        ShotSpec(72, "texture", 10 * v + 2)], gop=30)
    out = tmp_path_factory.mktemp("tk-built") / "out"
    run(inp, out, _cfg())
    return inp, out, [str(inp / "v1.mp4"), str(inp / "v2.mp4")]


def _state(out: Path) -> dict:
    index = sorted((r["clip_id"], r["start_frame"], r["end_frame"], r["file_sha256"])
                   for r in read_index(out).to_pylist())
    rejected = sorted((r["clip_id"] or r["item_key"], r["stage"], r["reason"])
                      for r in read_rejected(out).to_pylist())
    clips = clip_members(out)
    ledger = Ledger(out / "ledger.sqlite")
    try:
        counts = ledger.counts()
        states = sorted((r["item_key"], r["state"]) for r in ledger.iter_videos())
    finally:
        ledger.close()
    leftovers = sorted(p.name for p in out.rglob("*") if p.is_file()
                       and (p.name.startswith(".") or p.name.endswith(".part")))
    return {"index": index, "rejected": rejected, "members": sorted(n.split(".")[0] for n in clips),
            "blobs": sorted(len(b) for b in clips.values()), "states": states,
            "counts": {k: counts[k] for k in ("videos", "clips", "dropped_by_reason")},
            "audit": [p.kind for p in audit(out).problems], "leftovers": leftovers}


@pytest.fixture(scope="module")
def reference(built, tmp_path_factory) -> tuple[dict, set[bytes], set[str]]:
    """The state after a takedown never killed, the bytes of the victims' clips and their
    ids."""
    _, out0, victims = built
    out = tmp_path_factory.mktemp("tk-ref") / "out"
    shutil.copytree(out0, out)
    before = {r["clip_id"] for r in read_index(out).to_pylist()}
    removal = takedown(out, takedown_rules(sources=victims), "a request")
    state = _state(out)
    gone = before - {c[0] for c in state["index"]}
    assert len(gone) == 4 and set(removal.clips) == gone, "the takedown removed nothing"
    assert len(removal.shards) >= 2, "the victims share one shard: point 2 would prove nothing"
    assert state["audit"] == [] and state["leftovers"] == []
    return state, {b for n, b in clip_members(out0).items() if n.split(".")[0] in gone}, gone


@pytest.mark.parametrize("resume", ["takedown", "run"])
@pytest.mark.parametrize(("point", "call"), POINTS)
def test_a_killed_takedown_is_finished_by_the_next_command(built, reference, tmp_path, point,
                                                           call, resume) -> None:
    inp, out0, victims = built
    want, victim_bytes, gone = reference
    out = tmp_path / "out"
    shutil.copytree(out0, out)
    proc = subprocess.run([sys.executable, "-c", _KILLER, point, str(call), str(out), *victims],
                          capture_output=True, timeout=300)
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]  # it died where we said
    if resume == "takedown":  # the request again, as a user whose command died would
        takedown(out, takedown_rules(sources=victims), "a request")
    else:  # or the next run: the kept rules finish the removal
        run(inp, out, _cfg())
    assert _state(out) == want
    assert_no_clip_bytes(out, victim_bytes)
    # the audit trail names both victims as taken down, with the request's own reason, also
    # where a run finished the takedown (one record per attempt that removed something)
    records = [json.loads(line) for line in (out / "audit.jsonl").read_text().splitlines()]
    assert {r["kind"] for r in records} == {"takedown"}
    assert all(r["reason"].startswith("a request") for r in records)
    assert {v["item_key"] for r in records for v in r["videos"]} == {"file:v1.mp4",
                                                                     "file:v2.mp4"}
    # and every removed clip, also those an attempt killed before its record had dropped
    assert {c for r in records for c in r["clips"]} == gone


# the takedown's durable steps: file renames and deletions, ledger transactions and meta
SWEEP = ["os:replace", "os:unlink", "clipfactory.ledger:Ledger.transaction",
         "clipfactory.ledger:Ledger.set_meta"]


@pytest.mark.parametrize("resume", ["takedown", "run"])
@pytest.mark.parametrize("point", SWEEP)
def test_a_takedown_killed_at_every_step_is_all_or_nothing(built, tmp_path, point, resume):
    """Killed before each of its writes in turn, then finished: the takedown's dataset, or
    (killed before the rules were kept, finished by a run) the dataset without it."""
    inp, out0, victims = built

    def command(out: Path) -> None:
        takedown(out, takedown_rules(sources=victims), "a request")

    def finish(out: Path) -> None:
        if resume == "takedown":
            command(out)
        else:
            run(inp, out, _cfg())

    kills = check_every_kill(_KILLER, point, out0, tmp_path, args=lambda o: [str(o), *victims],
                             command=command, finish=finish, state=_state)
    assert kills, f"the takedown never called {point}"
