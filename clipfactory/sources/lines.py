"""Rows of a line-based manifest (JSON lines, CSV, a ``.txt`` list of URLs or paths) read from a
byte offset, with where each ends.

A manifest that grows by appends is read again from where the last run stopped, so the reader
keeps the position after the last *complete* row (byte offset, row number, CSV header) and can
hash every byte before it (a later run checks that the file still starts with those bytes).
Lines end at ``\\n``, ``\\r\\n`` or a lone ``\\r``, as in Python's text mode, so row numbers are
those of a plain read of the whole file. The last line may lack its end because a writer is
halfway through it: ``final_tail`` says whether to parse it anyway (the file is taken as
complete) or to leave it for a later run. Such a row is never part of the saved position.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from clipfactory.errors import ManifestError

__all__ = ["LINE_SUFFIXES", "Hasher", "LineCursor", "Position", "RawRow", "manifest_kind"]

log = logging.getLogger("clipfactory")

LINE_SUFFIXES = (".jsonl", ".csv", ".txt")  # formats a pass can start in the middle of

RawRow = tuple[int, dict[str, Any] | str]  # (row number, row dict or why it is not one)


class Hasher(Protocol):
    """What a hash object offers (hashlib's sha256)."""

    def update(self, data: bytes, /) -> None: ...


@dataclass
class Position:
    """After ``offset`` bytes and row ``row`` (JSON lines: line number; CSV: record number,
    the header being row 1); ``header`` is the CSV header once read."""

    offset: int = 0
    row: int = 0
    header: list[str] | None = None


class LineCursor:
    """Reads rows from ``start`` and moves :attr:`done` past each complete one."""

    def __init__(self, path: Path, start: Position, *, final_tail: bool = True,
                 hasher: Hasher | None = None) -> None:
        self.path = path
        self.done = Position(start.offset, start.row, start.header)
        self.final_tail = final_tail
        self.hasher = hasher  # fed exactly the bytes ``done`` moves over
        self.tail_row: int | None = None  # an unterminated last row that was parsed
        self.held_back = False  # an unterminated last row was left for a later run
        self.legacy_lines = 0  # lines read as Windows-1252 (not UTF-8)
        self._unsaved: list[bytes] = []
        self._ended = True
        self._eof = False

    def rows(self) -> Iterator[RawRow]:
        """The rows after :attr:`done`, in the format the file's suffix names (the one before
        ``.gz`` for a gzip-compressed manifest)."""
        suffix = manifest_kind(self.path)
        if suffix == ".csv":
            return self._csv()
        return self._jsonl(_list_row if suffix == ".txt" else _json_row)

    def _lines(self) -> Iterator[str]:
        """Decoded lines from ``done``; ``_ended`` says whether the last one had its end. A
        UTF-8 byte order mark opening the file (Excel's "CSV UTF-8" writes one) is not text:
        it would become part of the first column's name or make the first JSON row invalid."""
        with _open(self.path) as fh:
            if self.done.offset == 0:
                _check_text(self.path, fh.read(_SNIFF_BYTES))
            fh.seek(self.done.offset)  # (a .gz manifest is always read from its start)
            bom = self.done.offset == 0
            for raw in fh:
                # one read line ends at \n; a lone \r inside it ends a text-mode line too
                pieces = [raw] if b"\r" not in raw else raw.splitlines(keepends=True)
                last = len(pieces) - 1
                for i, piece in enumerate(pieces):
                    self._unsaved.append(piece)  # (the mark included: offsets count bytes)
                    # a \r at the very end of the file may be the first half of a \r\n
                    self._ended = piece.endswith(b"\n") or (piece.endswith(b"\r") and i < last)
                    if bom:
                        bom = False
                        piece = piece.removeprefix(codecs.BOM_UTF8)
                    yield self._decode(piece)
        self._eof = True

    def _decode(self, line: bytes) -> str:
        """UTF-8, else Windows-1252: what Excel's "CSV (Comma delimited)" writes in Western
        locales. Read as UTF-8 with replacement characters, ``José García`` became
        ``Jos\ufffd Garc\ufffda`` in the attribution that the card credits. Decided line by
        line (a newline is the same byte in both), so a read from an offset decides as a
        whole read did."""
        try:
            return line.decode("utf-8")
        except UnicodeDecodeError:
            if not self.legacy_lines:
                log.warning("manifest %s: a line that is not UTF-8 is read as Windows-1252 "
                            "(Excel's \"CSV (Comma delimited)\"); save it as CSV UTF-8 to be "
                            "sure of its names", self.path)
            self.legacy_lines += 1
            return line.decode("cp1252", errors="replace")

    def _commit(self, row: int, header: list[str] | None = None) -> None:
        data = b"".join(self._unsaved)
        self._unsaved.clear()
        if self.hasher is not None:
            self.hasher.update(data)
        self.done.offset += len(data)
        self.done.row = row
        if header is not None:
            self.done.header = header

    def _jsonl(self, parse: Callable[[str], dict[str, Any] | str | None]) -> Iterator[RawRow]:
        """One row per line (``parse``: the row, why the line is not one, or None for a line
        that is no row: blank, or a list's comment)."""
        n = self.done.row
        for text in self._lines():
            n += 1
            row = parse(text) if text.strip() else None
            if not self._ended:
                if row is not None:
                    yield from self._tail(n, row)
                return
            if row is not None:
                yield n, row
            self._commit(n)

    def _csv(self) -> Iterator[RawRow]:
        reader = csv.DictReader(self._lines(), fieldnames=self.done.header,
                                delimiter=_delimiter(self.path))
        if self.done.header is None:
            header = reader.fieldnames  # reads the first record
            if header is None:
                return
            if self._complete():
                self._commit(1, list(header))
            elif not self.final_tail:
                self.held_back = True
                return
        n = max(self.done.row, 1)
        for record in reader:
            n += 1
            row = {k.strip(): v for k, v in record.items() if k is not None}
            if not self._complete():
                yield from self._tail(n, row)
                return
            yield n, row
            self._commit(n)

    def _complete(self) -> bool:
        """Whether the record just read ended with its line (not with the end of the file:
        the csv module closes a record that a quote left open when the lines run out)."""
        return self._ended and not self._eof

    def _tail(self, n: int, row: dict[str, Any] | str) -> Iterator[RawRow]:
        if self.final_tail:
            self.tail_row = n
            yield n, row
        else:
            self.held_back = True


def manifest_kind(path: Path) -> str:
    """The manifest format a file's name says: its suffix, or for ``NAME.jsonl.gz`` (and
    ``.csv.gz``, ``.txt.gz``) the one before ``.gz``."""
    suffix = path.suffix.lower()
    if suffix == ".gz":
        inner = Path(path.stem).suffix.lower()
        return inner if inner in LINE_SUFFIXES else suffix
    return suffix


def _open(path: Path) -> BinaryIO:
    """The manifest's bytes: decompressed when its name ends in ``.gz``."""
    if path.suffix.lower() == ".gz":
        return gzip.open(path, "rb")  # type: ignore[return-value]
    return path.open("rb")


_SNIFF_BYTES = 4096
# what is often saved under a manifest's name and is not UTF-8 text: (leading bytes, what it
# is, what to do)
_NOT_TEXT = (
    (b"PK\x03\x04", "a ZIP archive (an Excel .xlsx workbook is one)",
     "save the sheet as CSV UTF-8 (Excel: File > Save As > CSV UTF-8)"),
    (b"\xd0\xcf\x11\xe0", "an old Office document (.xls)",
     "save the sheet as CSV UTF-8 (Excel: File > Save As > CSV UTF-8)"),
    (b"\xff\xfe\x00\x00", "UTF-32 text", "save it as UTF-8"),
    (b"\xff\xfe", "UTF-16 text (Excel's \"Unicode Text\" is)", "save it as UTF-8"),
    (b"\xfe\xff", "UTF-16 text", "save it as UTF-8"),
    (b"PAR1", "a Parquet file", "name it .parquet"),
    (b"\x1f\x8b", "gzip-compressed", "name it {name}.gz"),
    (b"\x28\xb5\x2f\xfd", "zstd-compressed", "decompress it (zstd -d)"),
    (b"BZh", "bzip2-compressed", "decompress it (bunzip2)"),
    (b"\xfd7zXZ\x00", "xz-compressed", "decompress it (unxz)"),
)


def _check_text(path: Path, head: bytes) -> None:
    """Raise :class:`ManifestError` when the file's first bytes are no UTF-8 text: a renamed
    workbook, UTF-16 text, a compressed or binary file. Read as text, such a file gave rows
    that each failed, or none at all, with nothing saying why."""
    for magic, what, fix in _NOT_TEXT:
        if head.startswith(magic):
            raise ManifestError(f"cannot read the manifest {path}: it is {what}, not UTF-8 "
                                f"text; {fix.format(name=path.name)}")
    if head.count(0) > max(1, len(head) // 1024):  # one stray NUL is that row's rejection
        raise ManifestError(f"cannot read the manifest {path}: it holds NUL bytes (binary "
                            "data, not text)")


def _list_row(text: str) -> dict[str, Any] | None:
    """A line of a ``.txt`` list: a URL (anything with ``://``) or a path, one per line, as
    yt-dlp's batch files are; a line starting with ``#``, ``;`` or ``]`` is a comment."""
    line = text.strip()
    if not line or line[0] in "#;]":
        return None
    return {"url": line} if "://" in line else {"path": line}


def _delimiter(path: Path) -> str:
    """The CSV's delimiter, from its header line (read again on every read, so that a resumed
    read splits as the first did): ``,``, else the one of ``;`` (Excel in locales whose decimal
    mark is a comma), tab and ``|`` the header holds most of; ``,`` when it holds none."""
    with _open(path) as fh:
        header = fh.readline().removeprefix(codecs.BOM_UTF8).decode("utf-8", errors="replace")
    if "," in header:
        return ","
    counts = {d: header.count(d) for d in (";", "\t", "|")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def _json_row(text: str) -> dict[str, Any] | str:
    try:
        row = json.loads(text)
    except json.JSONDecodeError as e:
        return f"invalid JSON: {e.msg}"
    return row if isinstance(row, dict) else "row is not a JSON object"
