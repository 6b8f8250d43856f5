"""The license evidence a download tool leaves beside a video in a folder.

``yt-dlp --write-info-json`` (and youtube-dl) writes ``NAME.info.json`` beside ``NAME.mp4``:
the site's own record of the video, with its ``license`` ("Creative Commons Attribution
license (reuse allowed)"), ``uploader``/``channel``, ``webpage_url`` and ``title``. A folder
of such downloads carries the same evidence a URL fetched by the run itself would have, so a
folder scan reads it: the license and the author go where a manifest's columns go (the policy
decides on them, the card credits them), the page is the clip's ``source_url``, the title is
the credit's title, the channel fields are matched by opt-out rules (``channel:@name``) as
a manifest's columns are, and the sidecar's provenance fields are kept in
``extra.info_json``.

The file is untrusted text: it is read only up to a size cap, only scalar fields are taken,
each cut to a length, and one that cannot be read is noted (``extra.info_json.error``), never
a failure of the video.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from clipfactory.records import SourceItem
from clipfactory.wellformed import well_formed

__all__ = ["SIDECAR_SUFFIX", "with_sidecar"]

SIDECAR_SUFFIX = ".info.json"
_MAX_BYTES = 32 << 20  # an info dict with every format listed is a few MB
_MAX_TEXT = 2000
_CHANNEL_FIELDS = ("channel", "channel_id", "channel_url", "uploader", "uploader_id",
                   "uploader_url")


def _text(value: Any) -> str | None:
    if isinstance(value, str) and value.strip():
        return value.strip()[:_MAX_TEXT]
    return None


def _read(path: Path) -> dict[str, Any] | str:
    """The sidecar's JSON object, or why it cannot be used."""
    try:
        with path.open("rb") as fh:
            data = fh.read(_MAX_BYTES + 1)
    except OSError as e:
        return f"cannot read it: {e.strerror or e}"
    if len(data) > _MAX_BYTES:
        return f"larger than {_MAX_BYTES >> 20} MiB"
    try:
        info = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        return f"not JSON: {e}"
    return well_formed(info) if isinstance(info, dict) else "not a JSON object"


def with_sidecar(item: SourceItem, video: Path) -> SourceItem:
    """``item`` with what ``video``'s ``.info.json`` says (unchanged when there is none)."""
    from clipfactory.fetch.ytdlp import PROVENANCE_FIELDS

    side = video.with_suffix(SIDECAR_SUFFIX)
    if not side.is_file():
        return item
    info = _read(side)
    if isinstance(info, str):
        return dataclasses.replace(item, extra={**item.extra,
                                                "info_json": {"file": side.name, "error": info}})
    kept: dict[str, Any] = {"file": side.name}
    for k in dict.fromkeys((*PROVENANCE_FIELDS, *_CHANNEL_FIELDS)):
        v = info.get(k)
        if isinstance(v, bool | int | float):
            kept[k] = v
        elif (t := _text(v)) is not None:
            kept[k] = t
    extra = {**item.extra, "info_json": kept}
    # the title for the card's credit, and the channel facts that opt-out rules
    # (``channel:@SomeCreator``) are matched against, where a manifest's columns would be
    for k in ("title", *_CHANNEL_FIELDS):
        if k in kept and isinstance(kept[k], str):
            extra.setdefault(k, kept[k])
    author = next((t for k in ("uploader", "channel", "creator")
                   if (t := _text(info.get(k))) is not None), None)
    return dataclasses.replace(
        item, license=item.license or _text(info.get("license")),
        attribution=item.attribution or author,
        source_url=item.source_url or _text(info.get("webpage_url"))
        or _text(info.get("original_url")),
        extra=extra)
