"""A clip's metadata members in its shard, and bringing shards up to date with the ledger.

``KEY.json`` is the clip's index row; ``KEY.txt`` its caption when it has one (the WebDataset
convention training loaders read). Annotations that arrive after a clip was sharded mark its
shard stale in the ledger (same transaction as the annotation), and so does a dedup that drops
sharded clips (same transaction as the drops); :func:`refresh_stale_shards` rewrites those
shards atomically to the ledger's clips and registers the new hashes. A run killed in between
finds the shard still marked and does it again.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from pathlib import Path

from clipfactory.ledger import Ledger
from clipfactory.records import ClipRecord
from clipfactory.sinks.index import clip_row
from clipfactory.sinks.partition import shard_clips
from clipfactory.sinks.shard_update import rewrite_shard_members
from clipfactory.sinks.shards import ShardInfo

__all__ = ["OPTIONAL_MEMBERS", "refresh_shards", "refresh_stale_shards", "register_rewritten_shard",
           "sample_metadata"]

log = logging.getLogger("clipfactory")


OPTIONAL_MEMBERS = ("txt",)  # what sample_metadata gives only when the clip has it


def sample_metadata(c: ClipRecord) -> dict[str, bytes]:
    """The metadata members of a clip's sample: ``json`` always, ``txt`` with a caption."""
    out = {"json": json.dumps(clip_row(c), sort_keys=True).encode("utf-8")}
    caption = c.extra.get("caption")
    if isinstance(caption, str) and caption:
        out["txt"] = caption.encode("utf-8")
    return out


def register_rewritten_shard(ledger: Ledger, name: str, info: ShardInfo | None) -> None:
    """Record a shard's new hash, size and count (or that it is gone, ``info`` None) and that
    it is up to date, in one commit."""
    with ledger.transaction() as db:
        if info is None:
            db.execute("DELETE FROM shards WHERE name = ?", (name,))
        else:
            db.execute("UPDATE shards SET sha256 = ?, bytes = ?, count = ? WHERE name = ?",
                       (info.sha256, info.bytes, info.count, name))
        db.execute("DELETE FROM stale_shards WHERE name = ?", (name,))


def refresh_stale_shards(ledger: Ledger, shard_dir: Path) -> int:
    """Bring every shard marked stale in line with the ledger; return how many were rewritten.

    A stale shard ends up holding exactly its kept clips, each with its current metadata:
    samples of clips dropped since it was written (a dedup that stopped before its rewrite)
    go, and a shard left with none is deleted."""
    try:
        names = [r[0] for r in ledger.db.execute("SELECT name FROM stale_shards ORDER BY name")]
    except Exception:  # a ledger from before annotations: nothing can be stale
        return 0
    done = refresh_shards(ledger, shard_dir, names)
    if done:
        log.info("rewrote %d stale shard(s) to the ledger's clips", done)
    return done


def refresh_shards(ledger: Ledger, shard_dir: Path, names: Iterable[str]) -> int:
    """Rewrite the shards ``names`` to the ledger's clips (as :func:`refresh_stale_shards`)
    and clear their stale marks; return how many were rewritten. A shard whose clips were
    dropped (dedup) is rewritten whole, so the metadata of the clips it keeps is brought up
    to date too: a mark another change left on it is not cleared with its samples left
    behind."""
    done = 0
    for name in names:
        path = shard_dir / name
        clips = shard_clips(ledger, name)
        if not clips:
            # every sample in it was dropped (a dedup that stopped before the rewrite), or the
            # file is gone already
            path.unlink(missing_ok=True)
            register_rewritten_shard(ledger, name, None)
            continue
        if not path.is_file():  # lost from disk with clips in it: the audit's to report
            ledger.db.execute("DELETE FROM stale_shards WHERE name = ?", (name,))
            continue
        info = rewrite_shard_members(path, {c.key: sample_metadata(c) for c in clips},
                                     keep={c.key for c in clips}, optional=OPTIONAL_MEMBERS)
        register_rewritten_shard(ledger, name, info)
        done += 1
    return done
