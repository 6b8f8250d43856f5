"""Takedown of a dedup keeper: its duplicates from other sources are cut again by the next
run (frame-exact, from their own source), or listed as lost when their source is gone."""

from __future__ import annotations

import json
import shutil

import av
import numpy as np
import pytest

from clipfactory.config import Config
from clipfactory.pipeline import run
from clipfactory.provenance.audit import audit
from clipfactory.provenance.takedown import takedown, takedown_rules
from clipfactory.testing.synth import ShotSpec, write_video

from .conftest import Out

SHOTS = [ShotSpec(66, "texture", 41), ShotSpec(66, "texture", 42)]


@pytest.fixture
def media(tmp_path):
    """The same video in two containers (a re-upload: other bytes, the same frames), and an
    unrelated one."""
    d = tmp_path / "media"
    d.mkdir()
    write_video(d / "a.mp4", SHOTS, width=160, height=90, gop=33)
    write_video(d / "b.mkv", SHOTS, width=160, height=90, gop=33)
    write_video(d / "c.mp4", [ShotSpec(70, "texture", 43)], width=160, height=90, gop=35)
    return d


def _cfg():
    cfg = Config(workers=1)
    cfg.clips.min_s = 1.0
    return cfg


def _frames(path, start=0, stop=None):
    with av.open(str(path)) as c:
        frames = [f.to_ndarray(format="gray").astype(np.int16) for f in c.decode(video=0)]
    return frames[start:stop]


def _first_run(media, out):
    run(media, out.path, _cfg())
    by_source = {}
    for r in out.index():
        by_source.setdefault(r["source"].rsplit("/", 1)[-1], []).append(r)
    assert set(by_source) in ({"a.mp4", "c.mp4"}, {"b.mkv", "c.mp4"})
    keeper = next(s for s in by_source if s != "c.mp4")
    dups = [r for r in out.rejected() if r["reason"] in ("exact_duplicate", "near_duplicate")]
    assert len(dups) == 2 and len(by_source[keeper]) == 2
    other = "b.mkv" if keeper == "a.mp4" else "a.mp4"
    return keeper, other


def test_duplicates_of_a_taken_down_keeper_are_cut_again(media, tmp_path):
    out = Out(tmp_path / "out")
    keeper, other = _first_run(media, out)
    removal = takedown(out.path, takedown_rules([str(media / keeper)]), "creator asked")
    assert len(removal.clips) == 2 and len(removal.orphans) == 2
    assert {r["source"].rsplit("/", 1)[-1] for r in out.index()} == {"c.mp4"}
    waiting = [r for r in out.rejected() if r["reason"] == "keeper_removed"]
    assert len(waiting) == 2 and {r["stage"] for r in waiting} == {"dedup"}

    run(media, out.path, _cfg())  # the next run cuts them again from b's (a's) own file
    rows = [r for r in out.index() if r["source"].endswith(other)]
    assert len(rows) == 2
    members = out.members()
    source_frames = _frames(media / other)
    for r in rows:
        n = r["end_frame"] - r["start_frame"]
        clip_path = tmp_path / f"{r['key']}.mp4"
        clip_path.write_bytes(members[f"{r['key']}.mp4"])
        got = _frames(clip_path)
        assert len(got) == n  # frame-exact: exactly the span's frames
        want = source_frames[r["start_frame"]:r["end_frame"]]
        worst = max(float(np.abs(g - w).mean()) for g, w in zip(got, want, strict=True))
        assert worst < 3.0, worst  # the same pictures (re-encoded), not a neighbour's
    assert not [r for r in out.rejected() if r["reason"] == "keeper_removed"]
    assert not any(r["source"].endswith(keeper) for r in out.index())
    assert all(json.loads(r["extra"])["recut"]["after"] == "dedup/keeper_removed" for r in rows)
    # the re-cut clips never name the removed keeper, whose id holds the removed video's
    published = json.dumps([out.index(), [r for r in out.rejected() if r["kind"] == "clip"
                                          and not r["source"].endswith(keeper)]], default=str)
    published += b"".join(members.values()).decode("latin-1")
    assert not [c for c in removal.clips if c in published]
    assert audit(out.path).ok


def test_a_removed_inputs_own_duplicates_are_not_cut_again(media, tmp_path):
    """Both sources of a duplicate pair removed, in one takedown or in two before a run: the
    duplicate is not an orphan to cut again, nor listed as lost."""
    out = Out(tmp_path / "out")
    keeper, other = _first_run(media, out)
    both = tmp_path / "both"
    shutil.copytree(out.path, both)
    removal = takedown(both, takedown_rules([str(media / keeper), str(media / other)]), "asked")
    assert removal.orphans == []
    takedown(out.path, takedown_rules([str(media / keeper)]), "asked")
    second = takedown(out.path, takedown_rules([str(media / other)]), "asked")
    assert second.orphans == []
    waiting = [r for r in out.rejected() if r["source"].endswith(other) and r["kind"] == "clip"]
    assert {(r["stage"], r["reason"]) for r in waiting} == {("takedown", "taken_down")}
    for o in (out.path, both):
        run(media, o, _cfg())
        clips = [r for r in Out(o).rejected() if r["kind"] == "clip"]
        assert not [r for r in clips if r["stage"] == "recut"], clips
        assert {r["source"].rsplit("/", 1)[-1] for r in Out(o).index()} == {"c.mp4"}
        assert "recut/" not in Out(o).card()


def test_duplicates_whose_source_is_gone_are_listed_as_lost(media, tmp_path):
    out = Out(tmp_path / "out")
    keeper, other = _first_run(media, out)
    takedown(out.path, takedown_rules([str(media / keeper)]), "creator asked")
    (media / other).unlink()
    run(media, out.path, _cfg())
    lost = [r for r in out.rejected() if r["stage"] == "recut"]
    assert len(lost) == 2 and {r["reason"] for r in lost} == {"source_unavailable"}
    assert {r["source"].rsplit("/", 1)[-1] for r in out.index()} == {"c.mp4"}
    assert "recut/source_unavailable" in out.card()
