"""One manifest row (a dict of cells) -> one :class:`SourceItem`, or the reason it is not one.

Which cell means what comes from the layout's column map (:mod:`clipfactory.sources.layouts`).
The item key is ``id:<id>`` for rows with an id, else a hash of the media, span and captions,
so the same row read again, by any run, gets the same key.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from clipfactory.fetch.local import local_path
from clipfactory.ids import short_hash, validate_id
from clipfactory.records import Rejection, SourceItem
from clipfactory.sources.layouts import PER_CLIP_ROWS, parse_seconds, parse_spans
from clipfactory.wellformed import well_formed

__all__ = ["REMOTE_PREFIXES", "InputRow", "cell", "item_from_row", "opt_str"]

InputRow = SourceItem | Rejection
REMOTE_PREFIXES = ("http://", "https://", "s3://", "gs://", "hf://", "ftp://")
_KNOWN = {"path", "id", "license", "source_url", "url", "author", "attribution", "start", "end"}


def opt_str(value: Any) -> str | None:
    """The cell as stripped text, None when empty or NaN."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    text = str(value).strip()
    return text or None


def cell(row: dict[str, Any], cols: dict[str, str], field: str) -> Any:
    """The cell of ``field`` under the layout's column map (None when it has no column)."""
    column = cols.get(field)
    return row.get(column) if column is not None else None


def _home(p: Path) -> Path:
    """``p`` with a leading ``~`` or ``~user`` expanded; as it is when that user is unknown."""
    if not str(p).startswith("~"):
        return p
    try:
        return p.expanduser()
    except RuntimeError:
        return p


def _checked_url(url: str) -> str:
    """``url``, or ValueError saying why it is no URL (a port out of range, a broken IPv6
    host, a web URL without a host): the row is rejected here, with its line, instead of
    every later step that reads the URL meeting it."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a port out of range
    except ValueError as e:
        raise ValueError(f"not a usable URL {url[:200]!r}: {e}") from None
    if parts.scheme.lower() in ("http", "https", "ftp") and not parts.hostname:
        raise ValueError(f"not a usable URL {url[:200]!r}: no host")
    return url


def item_from_row(row: dict[str, Any], base: Path, cols: dict[str, str],
                  layout: str = "generic") -> SourceItem:
    """Build an item or raise ValueError/InvalidId with the reason."""
    row = well_formed(row)  # a JSON row's lone surrogate ("\\ud800") would stop the ledger
    # the cell's text without the spaces around it (`a.mp4, v1` in a CSV), as paths are read:
    # an id kept as ' v1 ' was out of reach of a takedown or opt-out naming v1
    raw_id = opt_str(cell(row, cols, "id"))
    vid = validate_id(raw_id) if raw_id is not None else None
    raw_path = opt_str(cell(row, cols, "path"))
    url = opt_str(cell(row, cols, "url"))
    if url is None and vid is not None and "url_template" in cols:
        url = cols["url_template"].format(id=quote(vid, safe=""))
    media = raw_path or url
    if media is None:
        raise ValueError("row has no 'path' or 'url'")
    if media[:7].lower() == "file://":
        media = local_path(media)  # file:///x, file://localhost/x, as the local fetcher reads them
    if media.lower().startswith(REMOTE_PREFIXES):
        source = _checked_url(media)
    else:
        p = _home(Path(media))  # ~/videos/a.mp4, as a shell would read it
        source = str((p if p.is_absolute() else base / p).resolve())
    start = parse_seconds(cell(row, cols, "start"), "start")
    end = parse_seconds(cell(row, cols, "end"), "end")
    if start is not None and end is not None and end <= start:
        raise ValueError(f"span end {end} is not after start {start}")
    caption = opt_str(cell(row, cols, "caption"))
    spans: tuple[tuple[float, float, str | None], ...] = ()
    raw_spans = cell(row, cols, "spans")
    if raw_spans is not None and not (isinstance(raw_spans, float) and math.isnan(raw_spans)):
        spans = parse_spans(raw_spans, cell(row, cols, "captions"))
    elif caption is not None and (start is not None or end is not None):
        if start is None or end is None:
            raise ValueError("a captioned span needs both start and end")
        spans = ((start, end, caption),)
        caption = None
    elif layout in PER_CLIP_ROWS and start is not None and end is not None:
        # a clip row whose caption is empty is a clip all the same: without its span it broke
        # its video's group of rows, and was rejected as the group's id seen twice
        spans = ((start, end, None),)
    if spans:
        start, end = min(sp[0] for sp in spans), max(sp[1] for sp in spans)
    used = _KNOWN | set(cols.values())
    extra = {k: v for k, v in row.items() if k not in used and _is_plain(v)}
    if caption is not None:  # a caption of the whole video
        extra["caption"] = caption
    sha = opt_str(cell(row, cols, "sha256"))
    if sha is not None:
        extra["sha256"] = sha
    if layout != "generic":
        extra["layout"] = layout
    span_text = f"|{spans}" if spans and not (len(spans) == 1 and spans[0][2] is None) else ""
    key = (f"id:{vid}" if vid is not None
           else f"row:{short_hash(f'{source}|{start}|{end}{span_text}', 16)}")
    return SourceItem(
        item_key=key,
        source=source,
        id=vid,
        source_url=opt_str(cell(row, cols, "source_url")) or url,
        license=opt_str(cell(row, cols, "license")),
        attribution=opt_str(cell(row, cols, "attribution")) or opt_str(row.get("author")),
        start_s=start,
        end_s=end,
        extra=extra,
        spans=spans,
    )


def _is_plain(value: Any) -> bool:
    return isinstance(value, (str, int, float, bool)) or value is None
