"""A clip's metadata members in its shard, and bringing shards up to date with the ledger.

``KEY.json`` is the clip's index row; ``KEY.txt`` its caption when it has one (the WebDataset
convention training loaders read). Annotations that arrive after a clip was sharded mark its
shard stale in the ledger (same transaction as the annotation); :func:`refresh_stale_shards`
rewrites those shards' metadata members atomically and registers the new hashes. A run killed
in between finds the shard still marked and does it again.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from clipfactory.ledger import Ledger
from clipfactory.records import ClipRecord
from clipfactory.sinks.index import clip_row
from clipfactory.sinks.partition import shard_clips
from clipfactory.sinks.shard_update import rewrite_shard_members

__all__ = ["refresh_stale_shards", "sample_metadata"]

log = logging.getLogger("clipfactory")


def sample_metadata(c: ClipRecord) -> dict[str, bytes]:
    """The metadata members of a clip's sample: ``json`` always, ``txt`` with a caption."""
    out = {"json": json.dumps(clip_row(c), sort_keys=True).encode("utf-8")}
    caption = c.extra.get("caption")
    if isinstance(caption, str) and caption:
        out["txt"] = caption.encode("utf-8")
    return out


def refresh_stale_shards(ledger: Ledger, shard_dir: Path) -> int:
    """Rewrite the metadata of every shard marked stale; return how many were rewritten."""
    try:
        names = [r[0] for r in ledger.db.execute("SELECT name FROM stale_shards ORDER BY name")]
    except Exception:  # a ledger from before annotations: nothing can be stale
        return 0
    done = 0
    for name in names:
        path = shard_dir / name
        clips = shard_clips(ledger, name)
        if path.is_file() and clips:
            info = rewrite_shard_members(path, {c.key: sample_metadata(c) for c in clips})
            with ledger.transaction() as db:
                db.execute("UPDATE shards SET sha256 = ?, bytes = ? WHERE name = ?",
                           (info.sha256, info.bytes, name))
                db.execute("DELETE FROM stale_shards WHERE name = ?", (name,))
            done += 1
        else:
            ledger.db.execute("DELETE FROM stale_shards WHERE name = ?", (name,))
    if done:
        log.info("rewrote the metadata of %d shard(s) after late annotations", done)
    return done
