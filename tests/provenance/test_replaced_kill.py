"""A run that finds an input file replaced, killed at any step of removing its old clips, is
finished by the next run: the same dataset as a run never killed, not one byte of the old
clips left, and the audit clean."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from clipfactory.config import Config
from clipfactory.ledger import Ledger
from clipfactory.pipeline import run
from clipfactory.provenance.audit import audit
from clipfactory.sinks.parts import read_index
from clipfactory.testing.killpoint import kill_point_script
from clipfactory.testing.outputs import assert_no_clip_bytes, clip_members
from clipfactory.testing.synth import ShotSpec, write_video

pytestmark = pytest.mark.slow  # two runs per kill point: ~6 s each

# a run over the input folder, killed on the N-th call of one function (argv: point, N,
# input, output)
_KILLER = kill_point_script("""
from clipfactory.config import Config
from clipfactory.pipeline import run
run(sys.argv[3], sys.argv[4], Config.model_validate({"workers": 1, "shards": {"max_count": 2}}))
""")

POINTS = [
    ("clipfactory.provenance.removal:_rewrite", 1),  # nothing removed yet
    ("clipfactory.provenance.removal:_rewrite", 2),  # one shard rewritten, the other not
    ("clipfactory.provenance.removal:mark_orphans", 1),  # clips dropped, the rest not
    ("clipfactory.provenance.removal:append_audit", 1),  # all gone, no audit record yet
    ("clipfactory.ledger:Ledger.set_video_state", 1),  # audit record, input not requeued
    ("clipfactory.pipeline:_process", 1),  # requeued, not cut again
]


def _cfg() -> Config:
    return Config.model_validate({"workers": 1, "shards": {"max_count": 2}})


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, Path, set[bytes]]:
    """A dataset of 3 videos (7 clips, 4 shards) cut before ``a.mp4`` was replaced; the
    folder holds the new ``a.mp4``. Also the bytes of the old ``a.mp4``'s clips."""
    inp = tmp_path_factory.mktemp("rp-in")
    write_video(inp / "a.mp4", [ShotSpec(60, "texture", 1), ShotSpec(66, "texture", 2),
                                ShotSpec(60, "texture", 3)], gop=30)
    for v, name in ((1, "b.mp4"), (2, "c.mp4")):
        write_video(inp / name, [ShotSpec(66, "texture", 10 * v + 1),
                                 ShotSpec(72, "texture", 10 * v + 2)], gop=30)
    out = tmp_path_factory.mktemp("rp-built") / "out"
    run(inp, out, _cfg())
    old = {r["clip_id"] for r in read_index(out).to_pylist() if r["source"].endswith("a.mp4")}
    assert len(old) == 3
    old_bytes = {b for n, b in clip_members(out).items() if n.split(".")[0] in old}
    shards = {r["shard"] for r in read_index(out).to_pylist() if r["clip_id"] in old}
    assert len(shards) == 2, "a.mp4's clips share one shard: point 2 would prove nothing"
    new = tmp_path_factory.mktemp("rp-new") / "a.mp4"
    write_video(new, [ShotSpec(80, "texture", 4), ShotSpec(70, "texture", 5)], gop=30)
    os.replace(new, inp / "a.mp4")
    return inp, out, old_bytes


def _state(out: Path) -> dict:
    index = sorted((Path(r["source"]).name, r["start_frame"], r["end_frame"],
                    r["file_sha256"]) for r in read_index(out).to_pylist())
    clips = clip_members(out)
    ledger = Ledger(out / "ledger.sqlite")
    try:
        counts = ledger.counts()
        states = sorted((r["item_key"], r["state"], r["attempts"]) for r in ledger.iter_videos())
    finally:
        ledger.close()
    leftovers = sorted(p.name for p in out.rglob("*") if p.is_file()
                       and (p.name.startswith(".") or p.name.endswith(".part")))
    return {"index": index, "blobs": sorted(len(b) for b in clips.values()), "states": states,
            "counts": {k: counts[k] for k in ("videos", "clips", "dropped_by_reason")},
            "audit": [p.kind for p in audit(out).problems], "leftovers": leftovers}


@pytest.fixture(scope="module")
def reference(built, tmp_path_factory) -> dict:
    """The state after a run never killed."""
    inp, out0, old_bytes = built
    out = tmp_path_factory.mktemp("rp-ref") / "out"
    shutil.copytree(out0, out)
    run(inp, out, _cfg())
    state = _state(out)
    assert [i[1:3] for i in state["index"] if i[0] == "a.mp4"] == [(0, 80), (80, 150)]
    assert state["audit"] == [] and state["leftovers"] == []
    assert_no_clip_bytes(out, old_bytes)
    return state


@pytest.mark.parametrize(("point", "call"), POINTS)
def test_a_run_killed_while_removing_a_replaced_files_clips(built, reference, tmp_path, point,
                                                            call) -> None:
    inp, out0, old_bytes = built
    out = tmp_path / "out"
    shutil.copytree(out0, out)
    proc = subprocess.run([sys.executable, "-c", _KILLER, point, str(call), str(inp), str(out)],
                          capture_output=True, timeout=300)
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]  # it died where we said
    run(inp, out, _cfg())
    assert _state(out) == reference
    assert_no_clip_bytes(out, old_bytes)
    # one record per attempt that removed something, each naming a.mp4 and only it
    records = [json.loads(line) for line in (out / "audit.jsonl").read_text().splitlines()]
    assert records and {r["kind"] for r in records} == {"replaced"}
    assert {v["item_key"] for r in records for v in r["videos"]} == {"file:a.mp4"}
    assert len({c for r in records for c in r["clips"]}) == 3
