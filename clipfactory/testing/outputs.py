"""Reading an output folder back in tests: the clip files its shards hold, and what its index
and rejected rows say."""

from __future__ import annotations

import tarfile
from collections.abc import Iterable
from pathlib import Path

from clipfactory.sinks.parts import read_index, read_rejected

__all__ = ["assert_no_clip_bytes", "clip_members", "dataset_rows"]


def dataset_rows(out: Path) -> dict[str, list[tuple]]:
    """What two runs that made the same dataset agree on, to compare with ``==``: every kept
    clip (id, frame span, file hash) and every drop or failure (clip id or input key, stage,
    reason), sorted."""
    index = sorted((r["clip_id"], r["start_frame"], r["end_frame"], r["file_sha256"])
                   for r in read_index(out).to_pylist())
    rejected = sorted((r["clip_id"] or r["item_key"], r["stage"], r["reason"])
                      for r in read_rejected(out).to_pylist())
    return {"index": index, "rejected": rejected}


def clip_members(out: Path) -> dict[str, bytes]:
    """Every clip file (``KEY.mp4``) in ``out``'s shards, flat or bucketed: member name to
    bytes."""
    found: dict[str, bytes] = {}
    for shard in sorted((Path(out) / "shards").rglob("*.tar")):
        with tarfile.open(shard) as t:
            for m in t.getmembers():
                fh = t.extractfile(m) if m.name.endswith(".mp4") else None
                if fh is not None:
                    found[m.name] = fh.read()
    return found


def assert_no_clip_bytes(out: Path, blobs: Iterable[bytes]) -> None:
    """Not one of ``blobs`` (clip files that were removed) is anywhere in ``out``'s shards."""
    blobs = list(blobs)
    for shard in (Path(out) / "shards").rglob("*.tar"):
        data = shard.read_bytes()
        assert not any(b in data for b in blobs), f"{shard.name} still holds a removed clip"
