"""Replacing members of samples already in a shard (``KEY.json``, ``KEY.txt``), atomically.

Used when annotations arrive after a clip was sharded (``clipfactory caption`` on an existing
dataset, a model stage turned on later, ``clipfactory mix``). The shard is streamed into a
temporary file with the new members in place and renamed over the old one, exactly like
:func:`~clipfactory.sinks.shards.rewrite_shard_without`; the clip bytes are copied unchanged.
"""

from __future__ import annotations

import io
import itertools
import tarfile
from collections.abc import Collection, Mapping
from pathlib import Path

from clipfactory.sinks.shards import _ENCODING, ShardInfo, _iter_files, _split_key, _TarSink

__all__ = ["rewrite_shard_members"]


def rewrite_shard_members(path: str | Path, updates: Mapping[str, Mapping[str, bytes]],
                          keep: Collection[str] | None = None,
                          optional: Collection[str] = ()) -> ShardInfo:
    """Rewrite ``path`` with ``updates[key][ext]`` as the member ``KEY.EXT`` of each listed
    sample (added when the sample lacks it; other members kept as they are). With ``keep``,
    samples whose key is not in it are left out. ``optional``: extensions a listed sample
    holds only when its update has them (``txt``, a caption: one now empty loses it)."""
    p = Path(path)
    sink = _TarSink(p)
    try:
        with tarfile.open(p, "r:", encoding=_ENCODING) as src:
            for key, group in itertools.groupby(_iter_files(src), lambda m: _split_key(m.name)):
                if keep is not None and key not in keep:
                    continue
                new = updates.get(key, {})
                gone = set(optional) if key in updates else set()
                members = [(m.name, m.size, lambda m=m: src.extractfile(m)) for m in group
                           if m.name[len(key) + 1:] not in new
                           and m.name[len(key) + 1:] not in gone]
                members += [(f"{key}.{ext}", len(data), lambda d=data: io.BytesIO(d))
                            for ext, data in new.items()]
                sink.add(key, sorted(members, key=lambda t: t[0]))
        return sink.commit()
    except BaseException:
        sink.abort()
        raise
