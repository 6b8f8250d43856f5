"""Writing a file so that a reader finds the old content or the new, never a part of either.

The data goes to a hidden temporary name next to the file (``.NAME.tmp``), which is renamed
onto it once complete; an exception removes the temporary file. A process killed mid-write
leaves only that hidden file, which the folder's own sweep removes (every output folder's
sweep treats names starting with ``.`` as leftovers). ``durable=True`` also flushes the data
to disk before the rename, for files the ledger records by their hash (embedding parts): after
a power cut the name then never points at data that was not written.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["replacing", "temp_path", "write_atomic"]


def temp_path(path: str | Path, tag: str = "tmp") -> Path:
    """The hidden temporary name :func:`replacing` writes ``path`` under (``.NAME.<tag>``)."""
    path = Path(path)
    return path.with_name(f".{path.name}.{tag}")


@contextmanager
def replacing(path: str | Path, *, durable: bool = False, tag: str = "tmp") -> Iterator[Path]:
    """Yield the temporary path (``.NAME.<tag>`` beside ``path``) to write; when the block
    ends without an exception it is renamed onto ``path``, else deleted."""
    tmp = temp_path(path, tag)
    try:
        yield tmp
        if durable:
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_atomic(path: str | Path, data: str | bytes, *, durable: bool = False,
                 tag: str = "tmp") -> None:
    """Write ``data`` (text as UTF-8) to ``path`` through :func:`replacing`."""
    with replacing(path, durable=durable, tag=tag) as tmp:
        if isinstance(data, str):
            tmp.write_text(data, encoding="utf-8")
        else:
            tmp.write_bytes(data)
