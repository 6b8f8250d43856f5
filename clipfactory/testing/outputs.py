"""Reading an output folder back in tests: the clip files its shards hold."""

from __future__ import annotations

import tarfile
from collections.abc import Iterable
from pathlib import Path

__all__ = ["assert_no_clip_bytes", "clip_members"]


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
