"""A ``revalidate --purge`` killed at any step is finished by the next ``revalidate --purge``
or by the next run: the same dataset as a purge never killed, not one byte of a purged clip
left, the audit clean, and an audit record for every purged input.

The dataset has three sources on a loopback server: one stays, one is gone (404: purged as a
takedown, its URL kept as a rule) and one whose site now reserves it (``tdm-reservation``:
purged on the consent evidence the command recorded first)."""

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
from clipfactory.provenance.revalidate import revalidate
from clipfactory.sinks.parts import read_index, read_rejected
from clipfactory.testing.killpoint import check_every_kill, kill_point_script
from clipfactory.testing.loopback import LoopbackServer
from clipfactory.testing.outputs import assert_no_clip_bytes, clip_members
from clipfactory.testing.synth import ShotSpec, write_video

pytestmark = pytest.mark.slow  # a subprocess and a resume per kill point: ~1 s each

# argv: point, N, output
_KILLER = kill_point_script("""
from clipfactory.provenance.revalidate import revalidate
revalidate(sys.argv[3], purge=True, rate=0, allow_private_network=True)
""")

# the gone source is purged first, then the refused one
POINTS = [
    ("clipfactory.provenance.removal:_rewrite", 1),  # decisions recorded, nothing removed
    ("clipfactory.provenance.removal:append_audit", 1),  # gone source's clips out, no record
    ("clipfactory.ledger:Ledger.update_clips", 2),  # refused source's shard rewritten only
    ("clipfactory.provenance.removal:append_audit", 2),  # refused source's clips out
    ("clipfactory.ledger:Ledger.set_video_state", 2),  # its audit record, input not marked
    ("clipfactory.provenance.revalidate:refresh_outputs", 1),  # index and card not rewritten
]
# the kill points after which the audit must find the output inconsistent (else the point
# missed the window it is named for)
BROKEN = {("clipfactory.ledger:Ledger.update_clips", 2)}
NAMES = ("keep", "dead", "later")


def _cfg() -> Config:
    return Config.model_validate({"workers": 1, "shards": {"max_count": 2},
                                  "fetch": {"allow_private_network": True}})


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The three sources served, a manifest of them, and a dataset made from it (2 clips,
    one shard per source); then the site changes: one source gone, one reserved. Yields
    (manifest, dataset, server)."""
    media = tmp_path_factory.mktemp("pk-media")
    with LoopbackServer() as srv:
        rows = []
        for i, name in enumerate(NAMES):
            path = media / f"{name}.mp4"
            write_video(path, [ShotSpec(66, "texture", 40 + 2 * i),
                               ShotSpec(72, "texture", 41 + 2 * i)], width=160, height=90,
                        gop=30)
            rows.append({"id": name, "license": "CC-BY-4.0",
                         "url": srv.add(f"/v/{name}.mp4", path.read_bytes())})
        manifest = media / "m.jsonl"
        manifest.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        out = tmp_path_factory.mktemp("pk-built") / "out"
        run(manifest, out, _cfg())
        srv.routes["/v/dead.mp4"].fault, srv.routes["/v/dead.mp4"].times = "status", -1
        srv.routes["/v/dead.mp4"].status = 404
        srv.routes["/v/later.mp4"].headers["tdm-reservation"] = "1"
        yield manifest, out, srv


def _state(out: Path) -> dict:
    index = sorted((r["clip_id"], r["video_id"], r["file_sha256"], r["shard"])
                   for r in read_index(out).to_pylist())
    rejected = sorted((r["clip_id"] or r["item_key"], r["stage"], r["reason"])
                      for r in read_rejected(out).to_pylist())
    ledger = Ledger(out / "ledger.sqlite")
    try:
        counts = ledger.counts()
        videos = sorted((r["manifest_id"], r["state"], r["stage"], r["reason"])
                        for r in ledger.iter_videos())
        consent = sorted(ledger.db.execute("SELECT item_key, signal, enforced FROM consent"))
    finally:
        ledger.close()
    return {"index": index, "rejected": rejected, "members": sorted(clip_members(out)), "videos": videos,
            "consent": consent,
            "counts": {k: counts[k] for k in ("videos", "clips", "dropped_by_reason")},
            "audit": [p.kind for p in audit(out).problems]}


def _clip_bytes(out: Path, video_ids: set[str]) -> set[bytes]:
    keys = {r["clip_id"] for r in read_index(out).to_pylist() if r["video_id"] in video_ids}
    return {b for name, b in clip_members(out).items() if name.split(".")[0] in keys}


@pytest.fixture(scope="module")
def reference(site, tmp_path_factory) -> tuple[dict, set[bytes]]:
    """The state after a purge never killed, and the bytes of the purged clips."""
    out0 = site[1]
    out = tmp_path_factory.mktemp("pk-ref") / "out"
    shutil.copytree(out0, out)
    report = revalidate(out, purge=True, rate=0, allow_private_network=True)
    assert report.counts() == {"ok": 1, "gone": 1, "refused": 1}, report.render()
    state = _state(out)
    assert {r[1] for r in state["index"]} == {"keep"}, "the purge removed nothing"
    assert ("later", "removed", "consent", "tdm_reservation") in state["videos"]
    assert state["audit"] == []
    return state, _clip_bytes(out0, {"dead", "later"})


@pytest.mark.parametrize("resume", ["revalidate", "run"])
@pytest.mark.parametrize(("point", "call"), POINTS)
def test_a_killed_purge_is_finished_by_the_next_command(site, reference, tmp_path, point, call,
                                                        resume) -> None:
    manifest, out0, _ = site
    want, purged_bytes = reference
    out = tmp_path / "out"
    shutil.copytree(out0, out)
    proc = subprocess.run([sys.executable, "-c", _KILLER, point, str(call), str(out)],
                          capture_output=True, timeout=300)
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]  # it died where we said
    if (point, call) in BROKEN:
        assert audit(out).problems, "the kill left a consistent output: wrong window"
    if resume == "revalidate":  # the command again, as a user whose command died would
        revalidate(out, purge=True, rate=0, allow_private_network=True)
    else:  # or the next run: the kept rules and the recorded refusals finish the purge
        run(manifest, out, _cfg())
    assert _state(out) == want
    assert_no_clip_bytes(out, purged_bytes)
    # the audit trail names both purged sources, each with its own reason
    records = [json.loads(line) for line in (out / "audit.jsonl").read_text().splitlines()]
    named = {v["source_url"].rsplit("/", 1)[-1]: r["reason"] for r in records
             for v in r["videos"]}
    assert set(named) == {"dead.mp4", "later.mp4"}
    assert named["dead.mp4"].startswith("source no longer available upstream")
    assert named["later.mp4"].startswith("the source's site reserves it from AI training")


@pytest.mark.parametrize("resume", ["revalidate", "run"])
@pytest.mark.parametrize("point", ["os:replace", "os:unlink",
                                   "clipfactory.ledger:Ledger.transaction",
                                   "clipfactory.ledger:Ledger.set_meta"])
def test_a_purge_killed_at_every_step_is_all_or_nothing(site, tmp_path, point, resume):
    """Killed before each of its writes in turn, then finished: the purge's dataset, or
    (killed before it recorded its decisions, finished by a run) the dataset without it."""
    manifest, out0, _ = site

    def command(out: Path) -> None:
        revalidate(out, purge=True, rate=0, allow_private_network=True)

    def finish(out: Path) -> None:
        if resume == "revalidate":
            command(out)
        else:
            run(manifest, out, _cfg())

    kills = check_every_kill(_KILLER, point, out0, tmp_path, args=lambda o: [str(o)],
                             command=command, finish=finish, state=_state)
    assert kills, f"revalidate --purge never called {point}"


def test_a_killed_purge_is_finished_when_the_gone_source_is_back(site, reference, tmp_path):
    """Killed after the gone source's clips left their shard, the purge is finished by the
    next `revalidate --purge` even though the source answers again by then: its rule was
    kept, and a rule kept is a removal decided."""
    _, out0, srv = site
    want, _ = reference
    out = tmp_path / "out"
    shutil.copytree(out0, out)
    point = "clipfactory.provenance.removal:append_audit"
    proc = subprocess.run([sys.executable, "-c", _KILLER, point, "1", str(out)],
                          capture_output=True, timeout=300)
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]
    assert audit(out).problems, "the kill left a consistent output: wrong window"
    route = srv.routes["/v/dead.mp4"]
    route.fault = None  # the site has the video again
    try:
        report = revalidate(out, purge=True, rate=0, allow_private_network=True)
    finally:
        route.fault = "status"
    # both decided removals were finished first; only the source that stays was checked
    assert report.counts() == {"ok": 1}, report.render()
    assert _state(out) == want
