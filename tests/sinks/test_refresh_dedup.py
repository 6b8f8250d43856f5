"""A dedup that drops sharded clips rewrites their shards whole, to the ledger: the samples it
keeps get their current metadata too, and a shard lost from disk does not stop the run."""

from __future__ import annotations

import json
import shutil
import tarfile

import pyarrow.parquet as pq
import pytest

from clipfactory.config import Config
from clipfactory.ledger import Ledger
from clipfactory.pipeline import run
from clipfactory.provenance.audit import audit
from clipfactory.testing.synth import ShotSpec, _reencode_small, write_video


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    d = tmp_path_factory.mktemp("refresh-dedup")
    write_video(d / "big.mp4", [ShotSpec(70, "texture", 1)], width=320, height=180)
    _reencode_small(str(d / "big.mp4"), str(d / "small.mp4"), 30, 28)  # a worse copy
    write_video(d / "other.mp4", [ShotSpec(70, "texture", 7)], width=160, height=90)
    return d


def _samples(out):
    got = {}
    for tar in sorted((out / "shards").rglob("*.tar")):
        with tarfile.open(tar) as t:
            for m in t:
                if m.name.endswith(".json"):
                    j = json.loads(t.extractfile(m).read())
                    got[j["video_id"]] = (tar.name, j["attribution"])
    return got


def test_a_corrected_attribution_survives_a_dedup_of_the_same_shard(media, tmp_path):
    """Run 2 corrects B's attribution (its shard is marked stale) and adds a better copy of
    A, which sits in the same shard. The dedup's rewrite of that shard cleared its stale
    mark with only A's sample removed: B's KEY.json kept "bob" while the index said
    "Bob Smith", and the audit saw nothing."""
    inp = tmp_path / "in"
    inp.mkdir()
    for name in ("small.mp4", "other.mp4", "big.mp4"):
        shutil.copy(media / name, inp / name)
    a = {"id": "A", "path": "small.mp4", "license": "CC-BY-4.0", "attribution": "alice"}
    b = {"id": "B", "path": "other.mp4", "license": "CC-BY-4.0", "attribution": "bob"}
    c = {"id": "C", "path": "big.mp4", "license": "CC-BY-4.0", "attribution": "carol"}
    manifest = inp / "m.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in (a, b)))
    out = tmp_path / "out"
    run(manifest, out, Config(workers=1))
    assert _samples(out) == {"A": ("shard-000000.tar", "alice"),
                             "B": ("shard-000000.tar", "bob")}
    manifest.write_text("".join(json.dumps(r) + "\n"
                                for r in (a, dict(b, attribution="Bob Smith"), c)))
    run(manifest, out, Config(workers=1))
    samples = _samples(out)
    assert samples == {"B": ("shard-000000.tar", "Bob Smith"),
                       "C": ("shard-000001.tar", "carol")}
    index = {r["video_id"]: (r["shard"], r["attribution"])
             for r in pq.read_table(out / "index.parquet").to_pylist()}
    assert index == samples
    ledger = Ledger(out / "ledger.sqlite")
    stale = ledger.db.execute("SELECT count(*) FROM stale_shards").fetchone()[0]
    dropped = [(x.video_id, x.reason) for x in ledger.clips() if x.state == "dropped"]
    ledger.close()
    assert stale == 0 and dropped == [("A", "near_duplicate")]
    assert audit(out).ok


def test_a_better_copy_of_a_clip_in_a_lost_shard_does_not_stop_the_run(media, tmp_path):
    """The shard that held A is gone from disk (the audit's `shard_missing`); a better copy
    of A comes: the drop's rewrite of the missing shard raised FileNotFoundError and the run
    stopped (the next one went through)."""
    inp = tmp_path / "in"
    inp.mkdir()
    shutil.copy(media / "small.mp4", inp / "small.mp4")
    out = tmp_path / "out"
    run(inp, out, Config(workers=1))
    (out / "shards" / "shard-000000.tar").unlink()
    shutil.copy(media / "big.mp4", inp / "big.mp4")
    summary = run(inp, out, Config(workers=1))
    assert summary["counts"]["clips"]["kept"] == 1
    ledger = Ledger(out / "ledger.sqlite")
    clips = {x.source.rsplit("/", 1)[-1]: (x.state, x.reason) for x in ledger.clips()}
    ledger.close()
    assert clips == {"small.mp4": ("dropped", "near_duplicate"), "big.mp4": ("sharded", None)}
    assert [r["source"].rsplit("/", 1)[-1]
            for r in pq.read_table(out / "index.parquet").to_pylist()] == ["big.mp4"]
