"""Manifest layouts: which column means what, for generic manifests and published datasets.

A layout maps our fields to a manifest's columns. Fields: ``path`` or ``url`` (what names the
media), ``id``, ``license``, ``source_url``, ``attribution``, ``start``/``end`` (one span),
``spans`` (a list of ``[start, end]`` pairs, or of objects with a ``span`` pair), ``captions``
(a list aligned with ``spans``), ``caption`` (one caption: of the span, or of the whole video),
``sha256`` (checked after download) and ``url_template`` (a URL built from the id, for layouts
that give only an id). Times are seconds or ``[h:]mm:ss[.fff]`` strings; list-valued cells of
CSV files may be JSON or Python literals (Panda-70M writes the latter).

The built-in layouts follow the published metadata of each dataset; ``ingest.columns`` in the
config overrides any entry, so a release that renames a column needs no code change:

- ``hdvila`` (HD-VILA-100M, jsonl): ``video_id``, ``url``, ``clip`` = ``[{"clip_id", "span":
  ["hh:mm:ss.fff", "hh:mm:ss.fff"]}, ...]``
- ``panda70m`` (Panda-70M, csv): ``videoID``, ``url``, ``timestamp`` = ``[['0:00:00.000',
  '0:00:05.000'], ...]``, ``caption`` = ``['...', ...]``, ``matching_score`` (kept as extra)
- ``internvid`` (InternVid, jsonl, one row per clip): ``YoutubeID``, ``Start_timestamp``,
  ``End_timestamp``, ``Caption`` (+ scores); adjacent rows of one video become one item
- ``webvid`` (WebVid, csv, one row per video): ``videoid``, ``contentUrl``, ``name`` (the
  caption), ``duration``, ``page_dir``
"""

from __future__ import annotations

import ast
import json
import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["FIELDS", "LAYOUTS", "PER_CLIP_ROWS", "columns_for", "detect_layout",
           "parse_seconds", "parse_spans"]

FIELDS = ("path", "url", "id", "license", "source_url", "attribution", "start", "end", "spans",
          "captions", "caption", "sha256", "url_template")

LAYOUTS: dict[str, dict[str, str]] = {
    "generic": {"path": "path", "url": "url", "id": "id", "license": "license",
                "source_url": "source_url", "attribution": "attribution", "start": "start",
                "end": "end", "spans": "spans", "captions": "captions", "sha256": "sha256"},
    "hdvila": {"id": "video_id", "url": "url", "spans": "clip"},
    "panda70m": {"id": "videoID", "url": "url", "spans": "timestamp", "captions": "caption"},
    "internvid": {"id": "YoutubeID", "start": "Start_timestamp", "end": "End_timestamp",
                  "caption": "Caption",
                  "url_template": "https://www.youtube.com/watch?v={id}"},
    "webvid": {"id": "videoid", "url": "contentUrl", "caption": "name"},
}
# layouts whose rows are clips of a video (adjacent rows of one id are one item)
PER_CLIP_ROWS = frozenset({"internvid"})
_SIGNATURES = (
    ("hdvila", {"video_id", "clip"}),
    ("panda70m", {"videoID", "timestamp"}),
    ("internvid", {"YoutubeID", "Start_timestamp"}),
    ("webvid", {"videoid", "contentUrl"}),
)
_MAX_CELL = 1 << 20
_CLOCK = re.compile(r"^(?:(\d+):)?(\d{1,2}):(\d{1,2}(?:\.\d*)?)$")


def detect_layout(columns: Iterable[str]) -> str:
    """The built-in layout whose signature columns are all present, else ``generic``."""
    cols = set(columns)
    for name, needed in _SIGNATURES:
        if needed <= cols:
            return name
    return "generic"


def columns_for(layout: str, overrides: Mapping[str, str] | None = None) -> dict[str, str]:
    """Field -> column of ``layout`` with the user's overrides applied."""
    if layout not in LAYOUTS:
        raise ValueError(f"unknown manifest layout {layout!r}; known: {', '.join(LAYOUTS)}")
    cols = dict(LAYOUTS[layout])
    for field, column in (overrides or {}).items():
        if field not in FIELDS:
            raise ValueError(f"ingest.columns: unknown field {field!r}; fields: "
                             f"{', '.join(FIELDS)}")
        cols[field] = column
    return cols


def parse_seconds(value: Any, name: str) -> float | None:
    """Seconds from a number or a ``[h:]mm:ss[.fff]`` string (None when empty)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    else:
        text = str(value).strip()
        if not text:
            return None
        m = _CLOCK.match(text)
        if m:
            h, mm, ss = m.groups()
            seconds = int(h or 0) * 3600 + int(mm) * 60 + float(ss)
        else:
            seconds = float(text)  # ValueError is reported by the caller
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"{name} must be a finite time >= 0, got {value!r}")
    return seconds


def _literal(value: Any, name: str) -> Any:
    """A list cell: already a list (jsonl, parquet) or JSON / a Python literal in a string."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if not text:
        return []
    if len(text) > _MAX_CELL:
        raise ValueError(f"{name} cell longer than {_MAX_CELL} characters")
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        pass
    try:
        return ast.literal_eval(text)  # literals only: no names, calls or attributes
    except (ValueError, SyntaxError, RecursionError, MemoryError) as e:
        raise ValueError(f"{name} is not a list: {text[:80]!r}") from e


def parse_spans(spans: Any, captions: Any = None) -> tuple[tuple[float, float, str | None], ...]:
    """``[(start_s, end_s, caption or None), ...]`` from a spans cell and a captions cell."""
    raw = _literal(spans, "spans")
    if (isinstance(captions, float) and math.isnan(captions)) or \
            (isinstance(captions, str) and not captions.strip()):
        captions = None  # an empty captions cell (a CSV's) is no captions, as a JSON null is
    caps = _literal(captions, "captions") if captions is not None else None
    if hasattr(raw, "tolist"):
        raw = raw.tolist()
    if not isinstance(raw, (list, tuple)):
        raise ValueError(f"spans must be a list, got {type(raw).__name__}")
    if caps is not None and not isinstance(caps, (list, tuple)):
        caps = [caps] if len(raw) == 1 else None
    if caps is not None and len(caps) != len(raw):
        raise ValueError(f"{len(raw)} spans but {len(caps)} captions")
    out = []
    for i, s in enumerate(raw):
        pair = s.get("span") if isinstance(s, Mapping) else s
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            raise ValueError(f"span {i} is not a [start, end] pair: {s!r}")
        start, end = parse_seconds(pair[0], "span start"), parse_seconds(pair[1], "span end")
        if start is None or end is None or end <= start:
            raise ValueError(f"span {i} end {pair[1]!r} is not after start {pair[0]!r}")
        cap = caps[i] if caps is not None else None
        out.append((start, end, str(cap) if cap is not None and str(cap).strip() else None))
    return tuple(out)
