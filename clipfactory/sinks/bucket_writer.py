"""Writing samples that arrive in any order into per-bucket shards, with few files open.

``finalize`` sorts the clips it shards by bucket and writes one bucket after the other, so it
never has more than one shard open. A stream that cannot be sorted first (``clipfactory mix``
copies samples in the order of its source shards) uses :class:`BucketedShardWriter`: one
:class:`~clipfactory.sinks.shards.ShardWriter` per bucket, at most ``max_open`` of them open.
Opening one more closes the least recently used: its shard in progress is published as it is
(complete and valid, only shorter than ``max_count``), and that bucket's next sample starts its
next shard. A run over hundreds of buckets so holds at most ``max_open`` temporary tars and
file descriptors, at the price of some short shards when buckets interleave.
"""

from __future__ import annotations

import dataclasses
import re
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path

from clipfactory.sinks.shards import ShardInfo, ShardWriter

__all__ = ["BucketedShardWriter"]

_BUCKET = re.compile(r"^[A-Za-z0-9_+-][A-Za-z0-9._+-]*$")


class BucketedShardWriter:
    """Samples into ``ROOT/<bucket>/shard-NNNNNN.tar`` (``ROOT/shard-NNNNNN.tar`` for bucket
    ``None``), each bucket numbering and rolling its own shards by count and size.

    ``start_indices`` gives each bucket's first shard number (the next free one of an existing
    dataset). Names returned by :meth:`add` and in the :class:`ShardInfo` list of
    :meth:`close` are relative to ``ROOT`` (``720p_16x9/shard-000000.tar``). A sample key may
    appear once across all buckets. Use as a context manager: on an exception the shards in
    progress are discarded and completed ones stay.
    """

    def __init__(self, root: str | Path, *, max_count: int = 1000, max_bytes: int = 1 << 30,
                 max_open: int = 8,
                 start_indices: Mapping[str | None, int] | None = None) -> None:
        if max_open < 1:
            raise ValueError("max_open must be at least 1")
        self.root = Path(root)
        self.max_count, self.max_bytes, self.max_open = max_count, max_bytes, max_open
        self._next: dict[str | None, int] = dict(start_indices or {})
        self._open: OrderedDict[str | None, ShardWriter] = OrderedDict()
        self._done: list[ShardInfo] = []
        self._seen: set[str] = set()
        self.evictions = 0  # writers closed to stay within max_open

    @property
    def open_buckets(self) -> int:
        """How many buckets have a writer open now (never more than ``max_open``)."""
        return len(self._open)

    def _publish(self, bucket: str | None, writer: ShardWriter, *, commit: bool) -> None:
        infos = writer.close() if commit else writer.abort()
        self._next[bucket] = writer.index
        for i in infos:
            self._done.append(dataclasses.replace(i, name=f"{bucket}/{i.name}") if bucket
                              else i)

    def _writer(self, bucket: str | None) -> ShardWriter:
        w = self._open.get(bucket)
        if w is not None:
            self._open.move_to_end(bucket)
            return w
        if bucket is not None and not _BUCKET.match(bucket):
            raise ValueError(f"invalid bucket name {bucket!r}")
        while len(self._open) >= self.max_open:
            old, ow = self._open.popitem(last=False)
            self._publish(old, ow, commit=True)
            self.evictions += 1
        w = ShardWriter(self.root / bucket if bucket else self.root,
                        start_index=self._next.get(bucket, 0), max_count=self.max_count,
                        max_bytes=self.max_bytes)
        self._open[bucket] = w
        return w

    def add(self, bucket: str | None, key: str,
            members: Mapping[str, str | Path | bytes]) -> str:
        """Add one sample to ``bucket``; returns its shard's name relative to the root."""
        if key in self._seen:
            raise ValueError(f"duplicate sample key {key!r}")
        name = self._writer(bucket).add(key, members)
        self._seen.add(key)
        return f"{bucket}/{name}" if bucket else name

    def close(self) -> list[ShardInfo]:
        """Publish every shard in progress; returns all shards completed, in completion order."""
        while self._open:
            bucket, w = self._open.popitem(last=False)
            self._publish(bucket, w, commit=True)
        return list(self._done)

    def abort(self) -> list[ShardInfo]:
        """Discard the shards in progress (temp files removed); completed ones are kept."""
        while self._open:
            bucket, w = self._open.popitem(last=False)
            self._publish(bucket, w, commit=False)
        return list(self._done)

    def __enter__(self) -> BucketedShardWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
