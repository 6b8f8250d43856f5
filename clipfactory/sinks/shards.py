"""Atomic, deterministic WebDataset shard writing.

A shard is a plain tar in which each sample is the adjacent members ``KEY.EXT`` (extensions
sorted within a sample). Shards are written to a hidden temp file in the target directory
(``.shard-000003.tar.tmp``), flushed and fsynced, then ``os.replace``d onto their final name,
so a final name never holds a partial tar. The sha256 is computed from the bytes as they are
written. Headers are normalised (mtime 0, uid/gid 0, empty owner names, mode 0o644, PAX
format, UTF-8 names), so the same samples always give the same bytes.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import os
import tarfile
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO

__all__ = ["ShardInfo", "ShardWriter", "read_shard_keys", "rewrite_shard_without", "shard_info"]

_BLOCK = tarfile.BLOCKSIZE
_RECORD = tarfile.RECORDSIZE
_FORMAT = tarfile.PAX_FORMAT
_ENCODING = "utf-8"

_Member = tuple[str, int, Callable[[], IO[bytes]]]  # (tar name, size, opener)


@dataclass(frozen=True)
class ShardInfo:
    """A completed shard: file name and path, sha256 of the whole tar, size, sample keys."""

    name: str
    path: str
    sha256: str
    bytes: int
    count: int
    keys: tuple[str, ...]


def _tarinfo(name: str, size: int) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.size, ti.mtime, ti.mode, ti.type = size, 0, 0o644, tarfile.REGTYPE
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = ""
    return ti


def _member_bytes(name: str, size: int) -> int:
    """Bytes one member takes in the tar: header(s) plus data padded to whole blocks."""
    header = len(_tarinfo(name, size).tobuf(_FORMAT, _ENCODING, "surrogateescape"))
    return header + -(-size // _BLOCK) * _BLOCK


def _split_key(name: str) -> str:
    """WebDataset's sample key of a member name: everything before the basename's first dot."""
    head, sep, base = name.rpartition("/")
    return head + sep + base.split(".", 1)[0]


class _HashingFile:
    """Write-only file wrapper that hashes and counts bytes on their way to disk."""

    def __init__(self, path: Path) -> None:
        self.raw = open(path, "wb")  # noqa: SIM115 - closed in commit/abort
        self.sha = hashlib.sha256()
        self.pos = 0

    def write(self, data: bytes) -> int:
        self.raw.write(data)
        self.sha.update(data)
        self.pos += len(data)
        return len(data)

    def tell(self) -> int:
        return self.pos


class _TarSink:
    """One shard being written under its temp name; ``commit`` publishes it atomically."""

    def __init__(self, final: Path) -> None:
        self.final = final
        self.temp = final.with_name(f".{final.name}.tmp")
        self.file = _HashingFile(self.temp)
        self.tar = tarfile.TarFile(fileobj=self.file, mode="w", format=_FORMAT, encoding=_ENCODING)
        self.keys: list[str] = []

    def size_with(self, extra: int) -> int:
        """Final file size if ``extra`` more member bytes were added (end blocks + record pad)."""
        end = self.tar.offset + extra + 2 * _BLOCK
        return -(-end // _RECORD) * _RECORD

    def add(self, key: str, members: list[_Member]) -> None:
        """Append one sample; on any error the partial sample is rolled back."""
        state = (self.file.pos, self.file.sha.copy(), self.tar.offset, len(self.tar.members))
        try:
            for name, size, opener in members:
                with opener() as src:
                    self.tar.addfile(_tarinfo(name, size), src)
        except BaseException:
            pos, sha, offset, n = state
            self.file.raw.seek(pos)
            self.file.raw.truncate()
            self.file.pos, self.file.sha, self.tar.offset = pos, sha, offset
            del self.tar.members[n:]
            raise
        self.keys.append(key)

    def commit(self) -> ShardInfo:
        self.tar.close()
        self.file.raw.flush()
        os.fsync(self.file.raw.fileno())
        self.file.raw.close()
        os.replace(self.temp, self.final)
        keys = tuple(dict.fromkeys(self.keys))
        name, sha, size = self.final.name, self.file.sha.hexdigest(), self.file.pos
        return ShardInfo(name, str(self.final), sha, size, len(keys), keys)

    def abort(self) -> None:
        self.file.raw.close()
        self.temp.unlink(missing_ok=True)


def _source_members(key: str, members: Mapping[str, str | Path | bytes]) -> list[_Member]:
    if not key or "." in key or "/" in key:
        raise ValueError(f"invalid sample key {key!r}: must be non-empty, without '.' or '/'")
    if not members:
        raise ValueError(f"sample {key!r} has no members")
    out: list[_Member] = []
    for ext in sorted(members):
        if not ext or "/" in ext or ext.startswith("."):
            raise ValueError(f"invalid extension {ext!r} for sample {key!r}")
        value = members[ext]
        if isinstance(value, bytes | bytearray | memoryview):
            data = bytes(value)
            out.append((f"{key}.{ext}", len(data), lambda data=data: io.BytesIO(data)))
        else:
            path = Path(value)
            size = path.stat().st_size  # fails before anything is written
            out.append((f"{key}.{ext}", size, lambda path=path: open(path, "rb")))  # noqa: SIM115
    return out


class ShardWriter:
    """Writes samples into ``{prefix}{index:06d}.tar`` shards, rolling by count and size.

    A shard rolls when adding a sample would take it past ``max_count`` samples or
    ``max_bytes`` bytes (a lone sample bigger than ``max_bytes`` gets a shard of its own).
    An existing shard with the same final name is replaced. Use as a context manager: on an
    exception the shard in progress is discarded (temp file removed), completed ones stay.
    """

    def __init__(
        self,
        directory: str | Path,
        *,
        start_index: int = 0,
        max_count: int = 1000,
        max_bytes: int = 1 << 30,
        prefix: str = "shard-",
    ) -> None:
        if max_count < 1 or max_bytes < 1:
            raise ValueError("max_count and max_bytes must be positive")
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.index = start_index
        self.max_count = max_count
        self.max_bytes = max_bytes
        self.prefix = prefix
        self._sink: _TarSink | None = None
        self._done: list[ShardInfo] = []
        self._seen: set[str] = set()
        self._closed = False

    def add(self, key: str, members: Mapping[str, str | Path | bytes]) -> str:
        """Add one sample (extension -> file path or bytes); returns its shard's name.

        Raises ``ValueError`` for a bad or repeated key; if reading a member fails midway
        the partial sample is rolled back and the writer stays usable.
        """
        if self._closed:
            raise RuntimeError("ShardWriter is closed")
        if key in self._seen:
            raise ValueError(f"duplicate sample key {key!r}")
        prepared = _source_members(key, members)
        extra = sum(_member_bytes(name, size) for name, size, _ in prepared)
        sink = self._sink
        if (
            sink
            and sink.keys
            and (len(sink.keys) >= self.max_count or sink.size_with(extra) > self.max_bytes)
        ):
            self._finish(commit=True)
        if self._sink is None:
            self._sink = _TarSink(self.directory / f"{self.prefix}{self.index:06d}.tar")
            self.index += 1
        self._sink.add(key, prepared)
        self._seen.add(key)
        return self._sink.final.name

    def _finish(self, *, commit: bool) -> None:
        sink, self._sink = self._sink, None
        if sink is not None and commit and sink.keys:
            self._done.append(sink.commit())
        elif sink is not None:
            sink.abort()

    def close(self) -> list[ShardInfo]:
        """Publish the shard in progress; returns every shard this writer completed, in order."""
        self._finish(commit=True)
        self._closed = True
        return list(self._done)

    def abort(self) -> list[ShardInfo]:
        """Discard the shard in progress (temp file removed); completed shards are kept."""
        self._finish(commit=False)
        self._closed = True
        return list(self._done)

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        self._finish(commit=exc_type is None)
        self._closed = True


def _iter_files(tar: tarfile.TarFile) -> Iterator[tarfile.TarInfo]:
    return (m for m in tar if m.isfile())


def read_shard_keys(path: str | Path) -> list[str]:
    """Sample keys of a shard in order of first appearance."""
    with tarfile.open(path, "r:", encoding=_ENCODING) as tar:
        return list(dict.fromkeys(_split_key(m.name) for m in _iter_files(tar)))


def shard_info(path: str | Path) -> ShardInfo:
    """Describe an existing shard (hashes the file once)."""
    p = Path(path)
    sha = hashlib.sha256()
    with open(p, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            sha.update(chunk)
    keys = read_shard_keys(p)
    return ShardInfo(p.name, str(p), sha.hexdigest(), p.stat().st_size, len(keys), tuple(keys))


def rewrite_shard_without(path: str | Path, keys: Collection[str]) -> ShardInfo | None:
    """Atomically rewrite a shard without the given samples (every member of each key).

    Returns the new info, or ``None`` when nothing is left (the shard is then deleted). When
    none of ``keys`` is present the shard is untouched and its current info returned. The
    kept samples are streamed through with normalised headers, so the result is byte-identical
    to a shard written from the kept samples alone.
    """
    p = Path(path)
    drop = set(keys)
    if not drop.intersection(read_shard_keys(p)):
        return shard_info(p)
    sink = _TarSink(p)
    try:
        with tarfile.open(p, "r:", encoding=_ENCODING) as src:
            for key, group in itertools.groupby(_iter_files(src), lambda m: _split_key(m.name)):
                if key not in drop:
                    sink.add(key, [(m.name, m.size, lambda m=m: src.extractfile(m)) for m in group])
        if not sink.keys:
            sink.abort()
            p.unlink()
            return None
        return sink.commit()
    except BaseException:
        sink.abort()
        raise
