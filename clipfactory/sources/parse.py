"""One pass over a manifest: rows -> items and rejections, resumable where the last pass stopped.

Three things make a row's item depend on the rows before it, and a pass started in the middle
of a file is given them so its items are those a pass over the whole file would give:

- the layout, chosen at the first row (``ingest.layout: auto``);
- the item keys already given (a later row with one is rejected as a duplicate) and, for the
  layouts with one row per clip, how many items each video has made (its ``#n``): a
  :class:`KeyMemory`;
- the group of clip rows open where the last pass stopped: rows appended for that same video
  belong to the item already registered, so they make no new one (:class:`OpenGroup`).

After the pass, :meth:`ManifestParse.checkpoint` says where to start the next one.
"""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from clipfactory.config import IngestConfig
from clipfactory.errors import ManifestError
from clipfactory.ids import InvalidId
from clipfactory.records import Rejection, SourceItem
from clipfactory.sources.layouts import PER_CLIP_ROWS, columns_for, detect_layout
from clipfactory.sources.lines import (
    LINE_SUFFIXES,
    Hasher,
    LineCursor,
    Position,
    RawRow,
    manifest_kind,
)
from clipfactory.sources.rows import InputRow, cell, item_from_row

__all__ = ["Checkpoint", "KeyMemory", "ManifestParse", "OpenGroup"]


@dataclass(frozen=True)
class OpenGroup:
    """The clip rows of one video that ended the last pass: its key (before ``#n``), media
    and first row."""

    key: str
    source: str
    row: int


@dataclass(frozen=True)
class Checkpoint:
    """Where the next pass starts: after ``position`` (None: the format cannot resume), with
    this layout and open group; ``held_back``: an unterminated last row was not parsed."""

    position: Position | None
    layout: str | None
    open_group: OpenGroup | None
    held_back: bool
    rows: int  # rows this pass read


class KeyMemory:
    """Item keys given so far and per-video item counts (module docstring). Subclasses add
    what earlier passes stored; this one starts empty."""

    def __init__(self) -> None:
        self.keys: set[str] = set()
        self.counts: dict[str, int] = {}
        # Only the last row a pass reads can lie past its checkpoint (an unterminated last
        # line), and rows change the memory in row order, so the last change of each kind is
        # all that may need undoing.
        self._last_key: tuple[str, int] | None = None
        self._last_count: tuple[str, int] | None = None

    def seen(self, key: str) -> bool:
        return key in self.keys or self.stored_seen(key)

    def add(self, key: str, row: int) -> None:
        self.keys.add(key)
        self._last_key = (key, row)

    def next_count(self, key: str, row: int) -> int:
        count = self.counts[key] = self.counts.get(key, self.stored_count(key)) + 1
        self._last_count = (key, row)
        return count

    def forget_after(self, row: int) -> None:
        """Undo what rows after ``row`` did."""
        if self._last_key is not None and self._last_key[1] > row:
            self.keys.discard(self._last_key[0])
        if self._last_count is not None and self._last_count[1] > row:
            self.counts[self._last_count[0]] -= 1
        self._last_key = self._last_count = None

    def stored_seen(self, key: str) -> bool:
        return False

    def stored_count(self, key: str) -> int:
        return 0


class ManifestParse:
    """Iterate for the items and rejections of ``manifest`` from ``start`` (its beginning by
    default); then :meth:`checkpoint`. ``final_tail``: parse an unterminated last line."""

    def __init__(self, manifest: Path, cfg: IngestConfig, *, start: Position | None = None,
                 memory: KeyMemory | None = None, layout: str | None = None,
                 open_group: OpenGroup | None = None, final_tail: bool = True,
                 hasher: Hasher | None = None) -> None:
        self.manifest = manifest
        self.cfg = cfg
        self.memory = memory if memory is not None else KeyMemory()
        self.layout = layout or cfg.layout
        self.cols = columns_for(layout, cfg.columns) if layout else None
        self.open_group = open_group
        self.cursor: LineCursor | None = None
        if manifest_kind(manifest) in LINE_SUFFIXES:
            self.cursor = LineCursor(manifest, start or Position(), final_tail=final_tail,
                                     hasher=hasher)
        self.rows = 0
        self._last_row = 0
        # the group open before the last row read, and at the end (row, base item)
        self._group_before: tuple[int, SourceItem] | None = None
        self._group_at_end: tuple[int, SourceItem] | None = None

    def __iter__(self) -> Iterator[InputRow]:
        rows = self._items()
        if self.cfg.layout in PER_CLIP_ROWS or self.cfg.layout == "auto":
            rows = self._grouped(rows)
        for n, item in rows:
            if isinstance(item, Rejection):
                yield item
                continue
            if self.memory.seen(item.item_key):
                what = "id" if item.id is not None else "row (same path and span)"
                yield Rejection(f"row:{self.manifest.name}:{n}", item.source, "ingest",
                                "duplicate_id" if item.id is not None else "duplicate_row",
                                f"{self.manifest.name} row {n}: duplicate {what} of an earlier"
                                " row", video_id=item.id)
                continue
            self.memory.add(item.item_key, n)
            yield item

    def checkpoint(self) -> Checkpoint:
        """Where this pass stopped (call once, after iterating): also drops from the memory
        what the rows past that point did."""
        if self.cursor is None:
            return Checkpoint(None, self._layout(), None, False, self.rows)
        done = self.cursor.done
        self.memory.forget_after(done.row)
        tail = self.cursor.tail_row is not None and self._last_row == self.cursor.tail_row
        group = _open(self._group_before if tail else self._group_at_end)
        if group is not None and group.row > done.row:
            group = None
        return Checkpoint(done, self._layout(), group, self.cursor.held_back, self.rows)

    def _layout(self) -> str | None:
        return self.layout if self.cols is not None else None

    def _raw(self) -> Iterator[RawRow]:
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            if self.cursor is not None:
                yield from self.cursor.rows()
                return
            n = 0
            for batch in pq.ParquetFile(self.manifest).iter_batches(batch_size=4096):
                for row in batch.to_pylist():
                    n += 1
                    yield n, row
        except (OSError, EOFError, zlib.error, pa.ArrowException) as e:
            raise ManifestError(f"cannot read the manifest {self.manifest}: "
                                f"{type(e).__name__}: {e}") from e

    def _items(self) -> Iterator[tuple[int, InputRow]]:
        """(row number, item or rejection) per row; the layout is chosen at the first row."""
        name = self.manifest.name
        base = self.manifest.resolve().parent
        for n, row in self._raw():
            self.rows += 1
            where = f"{name} row {n}"
            if isinstance(row, str):
                yield n, Rejection(f"row:{name}:{n}", where, "ingest", "invalid_manifest_row",
                                   row)
                continue
            if self.cols is None:
                if self.layout == "auto":
                    self.layout = detect_layout(row.keys())
                self.cols = columns_for(self.layout, self.cfg.columns)
            try:
                yield n, item_from_row(row, base, self.cols, self.layout)
            except InvalidId as e:
                raw = str(cell(row, self.cols, "id"))[:200]
                yield n, Rejection(f"row:{name}:{n}", str(row.get("path") or where), "ingest",
                                   "invalid_id", str(e), video_id=raw)
            except (ValueError, KeyError, IndexError) as e:
                yield n, Rejection(f"row:{name}:{n}", str(row.get("path") or where), "ingest",
                                   "invalid_manifest_row", f"{where}: {e}")

    def _grouped(self, rows: Iterator[tuple[int, InputRow]]) -> Iterator[tuple[int, InputRow]]:
        """Merge adjacent rows that are clips of one video (layouts with one row per clip) into
        one item with all their spans, so the video is fetched and decoded once. A video whose
        rows come back later in the manifest becomes a second item (``id:X#2``). Rows appended
        after the last pass that continue the group open at its end cannot join its item (it
        is registered, perhaps cut already): they are an item of their own, ``id:X@N`` (N: the
        first such row), which a parse of the whole file never gives, so a later full parse
        cannot give that key to other rows. Before, their spans were dropped: never cut, never
        rejected."""
        current: tuple[int, SourceItem] | None = None
        appended = False  # ``current`` continues an earlier pass's open group
        continued = self.open_group is not None  # ``current`` was yielded by an earlier pass
        if self.open_group is not None:
            g = self.open_group
            current = (g.row, SourceItem(item_key=g.key, source=g.source))
        for n, row in rows:
            self._last_row = n
            self._group_before = current
            per_clip = (isinstance(row, SourceItem) and row.extra.get("layout") in PER_CLIP_ROWS
                        and row.id is not None and len(row.spans) == 1)
            if not per_clip or not isinstance(row, SourceItem):
                if current is not None and not continued:
                    yield self._flush(current, appended)
                current, continued, appended = None, False, False
                yield n, row
                continue
            if current is not None and current[1].item_key == row.item_key \
                    and current[1].source == row.source:
                if continued:  # the first row appended to a registered group
                    current, continued, appended = (n, row), False, True
                    continue
                prev = current[1]
                spans = prev.spans + row.spans
                extra = {k: v for k, v in prev.extra.items() if row.extra.get(k) == v}
                current = (current[0], dataclasses.replace(
                    prev, spans=spans, extra=extra, start_s=min(sp[0] for sp in spans),
                    end_s=max(sp[1] for sp in spans)))
                continue
            if current is not None and not continued:
                yield self._flush(current, appended)
            current, continued, appended = (n, row), False, False
        self._group_at_end = current
        if current is not None and not continued:
            yield self._flush(current, appended)

    def _flush(self, current: tuple[int, SourceItem], appended: bool = False
               ) -> tuple[int, SourceItem]:
        n, item = current
        if appended:
            return n, dataclasses.replace(item, item_key=f"{item.item_key}@{n}")
        count = self.memory.next_count(item.item_key, n)
        if count > 1:
            item = dataclasses.replace(item, item_key=f"{item.item_key}#{count}")
        return n, item


def _open(current: tuple[int, SourceItem] | None) -> OpenGroup | None:
    if current is None:
        return None
    return OpenGroup(current[1].item_key, current[1].source, current[0])
