"""Staged clip files no clip owns (left by a run killed between registering a shard and
deleting its clips' files) are removed by the next run's finalize; files a clip still owns stay.
The kill itself is exercised in ``tests/test_finalize_kill.py``."""

from __future__ import annotations

import shutil
from pathlib import Path

from clipfactory.config import Config
from clipfactory.ledger import Ledger
from clipfactory.pipeline import run
from clipfactory.provenance.audit import audit
from clipfactory.sinks.layout import unowned_staged_files


def _staged_files(out: Path) -> dict[str, bytes]:
    return {p.relative_to(out).as_posix(): p.read_bytes()
            for p in sorted((out / "staging").rglob("*.mp4"))}


def _unowned(out: Path) -> list[str]:
    ledger = Ledger(out / "ledger.sqlite")
    try:
        return [p.relative_to(out).as_posix()
                for p in unowned_staged_files(out / "staging", ledger)]
    finally:
        ledger.close()


def test_files_no_clip_owns_are_removed_and_kept_ones_stay(shapes_manifest, tmp_path):
    out = tmp_path / "out"
    cfg = Config.model_validate({"workers": 1, "shards": {"keep_staging": True}})
    run(shapes_manifest, out, cfg)
    kept = _staged_files(out)
    assert len(kept) == 5 and audit(out).ok and _unowned(out) == []  # sharded clips own them
    # what a kill between a shard's commit and its files' deletion leaves: a clip's file that
    # the ledger no longer points to, in its own folder and in one of a video with clips
    first = out / next(iter(kept))
    stray = [first.with_name("land_9999999_9999999.mp4"),
             out / "staging" / "gone_0123456789" / "gone_0000000_0000066.mp4"]
    stray[1].parent.mkdir()
    for p in stray:
        shutil.copy(first, p)
    assert sorted(_unowned(out)) == sorted(p.relative_to(out).as_posix() for p in stray)
    assert {p.kind for p in audit(out).problems} == {"orphan_file"}
    run(shapes_manifest, out, cfg)  # nothing new to do: finalize alone
    assert _staged_files(out) == kept  # the strays are gone, every owned file is untouched
    assert not stray[1].parent.exists()  # and the folder left empty
    assert audit(out).ok
