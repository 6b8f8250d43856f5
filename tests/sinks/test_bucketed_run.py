"""A dataset written with ``shards.bucket_by``: one folder of shards per bucket, the index's
``bucket`` column, and takedown, audit, dedup and resume working on it unchanged."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from fractions import Fraction
from pathlib import Path

import av
import pyarrow.parquet as pq

from clipfactory.annotate.mix import write_mix
from clipfactory.config import Config
from clipfactory.ledger import Ledger
from clipfactory.pipeline import run
from clipfactory.provenance.audit import audit
from clipfactory.provenance.takedown import takedown, takedown_rules
from clipfactory.stages.base import ClipInput, ModelStage, Resources, StageOutput
from clipfactory.testing.synth import ShotSpec, write_video

from .conftest import EXPECTED, bucketed_config


def _index(out: Path) -> dict[tuple[str, int], dict]:
    return {(r["video_id"], r["start_frame"]): r
            for r in pq.read_table(out / "index.parquet").to_pylist()}


def _files(out: Path) -> dict[str, str]:
    """Every shard under shards/ (relative name) -> sha256 of its bytes."""
    root = out / "shards"
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*.tar"))}


def _samples(shard: Path) -> dict[str, dict[str, bytes]]:
    out: dict[str, dict[str, bytes]] = {}
    with tarfile.open(shard) as t:
        for m in t:
            key, _, ext = m.name.partition(".")
            out.setdefault(key, {})[ext] = t.extractfile(m).read()
    return out


def _ledger_shards(out: Path) -> dict[str, str]:
    ledger = Ledger(out / "ledger.sqlite")
    try:
        return {s["name"]: s["sha256"] for s in ledger.shards()}
    finally:
        ledger.close()


def test_bucketed_layout_index_and_metadata(bucketed_out):
    index = _index(bucketed_out)
    assert set(index) == set(EXPECTED)
    for k, (frames, bucket, codec) in EXPECTED.items():
        r = index[k]
        assert (r["num_frames"], r["bucket"], r["video_codec"]) == (frames, bucket, codec), k
        assert r["shard"].startswith(f"{bucket}/shard-") and r["shard"].endswith(".tar")
    # land's short clip and vp9 share a bucket and its shard (clip ids sorted: land first)
    shared = index[("land", 0)]["shard"]
    assert shared == index[("vp9", 0)]["shard"] == "90p_16x9_0-3s/shard-000000.tar"
    files = _files(bucketed_out)
    assert set(files) == {r["shard"] for r in index.values()} == set(
        _ledger_shards(bucketed_out))
    assert files == _ledger_shards(bucketed_out)  # hashes registered as written
    assert not [p for p in (bucketed_out / "shards").iterdir() if p.is_file()]  # nothing flat
    for name in files:
        for key, members in _samples(bucketed_out / "shards" / name).items():
            meta = json.loads(members["json"])
            row = next(r for r in index.values() if r["key"] == key)
            assert meta["shard"] == name == row["shard"]
            assert meta["bucket"] == name.split("/")[0] == row["bucket"]
            assert hashlib.sha256(members["mp4"]).hexdigest() == row["file_sha256"]
    summary = json.loads((bucketed_out / "summary.json").read_text())
    assert {s["name"] for s in summary["shards"]} == set(files)
    assert audit(bucketed_out).ok


def test_flat_layout_is_unchanged(flat_out):
    index = _index(flat_out)
    assert set(index) == set(EXPECTED)
    assert all(r["bucket"] is None for r in index.values())
    names = sorted(_files(flat_out))
    assert names == ["shard-000000.tar", "shard-000001.tar", "shard-000002.tar"]  # 2 a shard
    assert all(p.is_file() for p in (flat_out / "shards").iterdir())  # no folders
    for name in names:
        for members in _samples(flat_out / "shards" / name).values():
            meta = json.loads(members["json"])
            assert meta["bucket"] is None and meta["shard"] == name
    assert audit(flat_out).ok


def test_takedown_rewrites_only_the_right_buckets_shard(bucketed_copy):
    out = bucketed_copy
    before = _files(out)
    shared = "90p_16x9_0-3s/shard-000000.tar"
    land_key = _index(out)[("land", 0)]["key"]
    removal = takedown(out, takedown_rules(video_ids=["vp9"]), "creator request")
    [change] = removal.shards
    assert change.name == shared and change.removed == 1
    assert change.sha256_before == before[shared] and change.sha256_after not in (None,
                                                                                 before[shared])
    after = _files(out)
    assert after[shared] == change.sha256_after == _ledger_shards(out)[shared]
    assert {k: v for k, v in after.items() if k != shared} == {
        k: v for k, v in before.items() if k != shared}  # every other shard byte-identical
    assert list(_samples(out / "shards" / shared)) == [land_key]
    assert ("vp9", 0) not in _index(out)
    assert audit(out).ok

    # the only clip of a bucket: its shard is deleted and the empty bucket folder goes too
    takedown(out, takedown_rules(video_ids=["m4"]), "creator request")
    assert "120p_4x3_3s+/shard-000000.tar" not in _files(out)
    assert not (out / "shards" / "120p_4x3_3s+").exists()
    assert {k[0] for k in _index(out)} == {"land", "port"}
    assert audit(out).ok


class LateStage(ModelStage):
    """A stage turned on after the clips were sharded: reads them from their bucketed shards."""

    name = "late"
    batch_size = 8
    resources = Resources(cpus=0.5)

    def setup(self) -> None:
        pass

    def process_batch(self, clips: list[ClipInput]) -> list[StageOutput]:
        return [StageOutput(c.clip_id, scores={"late.frames": float(c.num_frames)})
                for c in clips]


def test_late_annotation_rewrites_bucketed_shards(bucketed_copy):
    out = bucketed_copy
    before = _files(out)
    run(None, out, bucketed_config(), stages=[LateStage()])
    after = _files(out)
    assert set(after) == set(before) and all(after[n] != before[n] for n in before)
    assert after == _ledger_shards(out)  # rewritten in place, registered under bucket names
    index = _index(out)
    for name in after:
        for key, members in _samples(out / "shards" / name).items():
            meta = json.loads(members["json"])
            row = next(r for r in index.values() if r["key"] == key)
            assert meta["scores"]["late.frames"] == row["num_frames"] == dict(
                row["scores"])["late.frames"]
    assert audit(out).ok


def test_audit_catches_a_tampered_bucketed_shard(bucketed_copy):
    out = bucketed_copy
    name = "120p_4x3_3s+/shard-000000.tar"
    shard = out / "shards" / name
    with tarfile.open(shard) as t:
        m = next(m for m in t if m.name.endswith(".mp4"))
    data = bytearray(shard.read_bytes())
    data[m.offset_data + m.size // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    report = audit(out)
    found = {(p.kind, p.shard) for p in report.problems}
    assert {("shard_hash_mismatch", name), ("clip_hash_mismatch", name)} <= found
    # a tar nobody registered, inside a bucket folder, is an orphan under its bucket's name
    (out / "shards" / "90p_9x16_0-3s" / "shard-000007.tar").write_bytes(data)
    assert ("orphan_shard", "90p_9x16_0-3s/shard-000007.tar") in {
        (p.kind, p.shard) for p in audit(out).problems}
    (out / "shards" / "90p_16x9_3s+" / "shard-000000.tar").unlink()
    assert ("shard_missing", "90p_16x9_3s+/shard-000000.tar") in {
        (p.kind, p.shard) for p in audit(out).problems}


def test_mix_of_a_bucketed_dataset_is_bucketed(bucketed_out, tmp_path):
    """``clipfactory mix`` writes through the bucketed writer: every clip lands in its bucket's
    folder, registered under that name, byte for byte the source's clip."""
    dst = tmp_path / "mixed"
    write_mix(bucketed_out, dst, {"wide": 0.75, "tall": 0.25}, seed=0)
    src, got = _index(bucketed_out), _index(dst)
    assert len(got) == 4 and {k[0] for k in got} >= {"port"}  # 3 wide + the 1 tall
    for k, r in got.items():
        assert r["bucket"] == src[k]["bucket"] and r["shard"].startswith(r["bucket"] + "/")
        assert r["file_sha256"] == src[k]["file_sha256"]
    assert set(_files(dst)) == {r["shard"] for r in got.values()} == set(_ledger_shards(dst))
    assert _files(dst) == _ledger_shards(dst)
    assert audit(dst).ok


def _rescale(src: Path, dst: Path, w: int, h: int) -> None:
    """Re-encode ``src`` at ``w`` x ``h``: a near duplicate at another resolution."""
    with av.open(str(src)) as i, av.open(str(dst), "w") as o:
        s = o.add_stream("libx264", rate=30)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        s.options = {"crf": "24", "preset": "ultrafast"}
        for k, f in enumerate(i.decode(video=0)):
            g = f.reformat(width=w, height=h, format="yuv420p")
            g.pts, g.time_base = k, Fraction(1, 30)
            o.mux(s.encode(g))
        o.mux(s.encode(None))


def test_duplicates_across_buckets_are_found(tmp_path):
    """A small copy sharded in one bucket goes when its original arrives in another; the
    shard it shared with an unrelated clip is rewritten under its bucketed name."""
    d = tmp_path / "media"
    d.mkdir()
    write_video(d / "big.mp4", [ShotSpec(66, "texture", 61)], width=256, height=144, gop=33)
    _rescale(d / "big.mp4", d / "small.mp4", 128, 72)
    write_video(d / "other.mp4", [ShotSpec(66, "texture", 62)], width=128, height=72, gop=33)
    cfg = Config.model_validate({"workers": 1, "shards": {
        "bucket_by": ["resolution"], "resolution_bins": {"72p": 72, "144p": 144}}})
    first, second = tmp_path / "first.jsonl", tmp_path / "second.jsonl"
    first.write_text("".join(json.dumps({"path": str(d / f"{v}.mp4"), "id": v}) + "\n"
                             for v in ("small", "other")))
    second.write_text(json.dumps({"path": str(d / "big.mp4"), "id": "big"}) + "\n")
    out = tmp_path / "out"
    run(first, out, cfg)
    assert {k[0]: r["shard"] for k, r in _index(out).items()} == {
        "small": "72p/shard-000000.tar", "other": "72p/shard-000000.tar"}
    run(second, out, cfg)
    index = _index(out)
    assert {k[0]: r["shard"] for k, r in index.items()} == {
        "big": "144p/shard-000000.tar", "other": "72p/shard-000000.tar"}
    rejected = pq.read_table(out / "rejected.parquet").to_pylist()
    [dup] = [r for r in rejected if r["video_id"] == "small"]
    assert (dup["stage"], dup["reason"]) == ("dedup", "near_duplicate")
    assert dup["duplicate_of"] == index[("big", 0)]["clip_id"]
    assert list(_samples(out / "shards" / "72p" / "shard-000000.tar")) == [
        index[("other", 0)]["key"]]
    assert set(_ledger_shards(out)) == {"72p/shard-000000.tar", "144p/shard-000000.tar"}
    assert audit(out).ok


def _cli(manifest: Path, out: Path, config: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "clipfactory.cli", "run", "--input", str(manifest), "--output",
         str(out), "--config", str(config), "--workers", "1", "--quiet"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)


def _exists(folder, wanted) -> bool:
    """Whether a file under ``folder`` is ``wanted``; the run creates and removes folders
    while this looks, and a folder that vanishes mid-walk means "not yet", not an error."""
    try:
        return any(wanted(p) for p in folder.rglob("*"))
    except FileNotFoundError:
        return False


def _kill_when(proc: subprocess.Popen, ready, timeout: float = 120.0) -> bool:
    """SIGKILL the run (driver and workers) as soon as ``ready()``; False if it ended first."""
    t0 = time.monotonic()
    while proc.poll() is None and time.monotonic() - t0 < timeout:
        if ready():
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return True
        time.sleep(0.002)
    proc.wait()
    return False


def test_killed_bucketed_run_resumes_to_the_same_index(shapes_manifest, tmp_path):
    """Killed while cutting, then while writing bucketed shards: the finished dataset equals
    one made without interruption, row for row and shard for shard."""
    cfg = bucketed_config(max_count=1)  # one clip a shard: more moments to be killed in
    reference = tmp_path / "ref"
    run(shapes_manifest, reference, cfg)
    config = tmp_path / "cfg.yaml"
    config.write_text(cfg.to_yaml())
    out = tmp_path / "killed"

    def staged() -> bool:
        return _exists(out / "staging", lambda p: p.suffix == ".mp4")

    def sharded() -> bool:
        return _exists(out / "shards", lambda p: p.name.startswith("shard-") and
                       p.suffix == ".tar")

    kills = [_kill_when(_cli(shapes_manifest, out, config), staged),
             _kill_when(_cli(shapes_manifest, out, config), sharded)]
    assert kills[0], "the run finished before a clip was staged; the test proved nothing"
    shards_at_kill = len(list((out / "shards").rglob("*.tar")))
    proc = _cli(shapes_manifest, out, config)
    _, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, err.decode()

    want = pq.read_table(reference / "index.parquet").to_pylist()
    got = pq.read_table(out / "index.parquet").to_pylist()
    assert [{k: v for k, v in r.items() if k != "source"} for r in got] == [
        {k: v for k, v in r.items() if k != "source"} for r in want]
    assert _files(out) == _files(reference)  # the same shards, byte for byte
    assert _index(out)[("vp9", 0)]["shard"] == "90p_16x9_0-3s/shard-000001.tar"  # own counter
    assert audit(out).ok
    assert not [p for p in out.rglob("*") if p.name.startswith(".") or "tmp" in p.name]
    # killed mid-way through the shards, or (on a very fast machine) after the last one
    assert kills[1] or shards_at_kill == len(_files(reference))
