"""The fetcher contract: one URL in, one local file (or a specific, classified error) out.

A fetcher makes ONE attempt; retries, backoff and per-host politeness live in
:mod:`clipfactory.fetch.polite` so that every fetcher gets them the same way. A fetcher writes
only under ``dest_dir`` (partial transfers under ``dest_dir/.partial``, kept so that the next
attempt resumes them) and never leaves a file at its final name unless it is complete.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from clipfactory.atomic import write_atomic

__all__ = ["FetchError", "FetchResult", "Fetcher", "discard_partial", "marker_path",
           "partial_paths", "read_partial_meta", "sources_dir", "sources_dirs", "url_key",
           "write_partial_meta"]


@dataclass(frozen=True)
class FetchResult:
    """A complete local copy of a source.

    ``owned`` is False when ``path`` is the user's own file (a local path or ``file://`` URL):
    it is then never deleted after processing.
    """

    path: str
    bytes: int
    sha256: str
    content_type: str | None = None
    provenance: dict[str, Any] = field(default_factory=dict)
    owned: bool = True


class FetchError(Exception):
    """A failed attempt: ``reason`` is a short code (``http_404``, ``too_large``,
    ``html_instead_of_video``, ...). ``retryable`` says whether trying again later can help;
    ``retry_after`` is the server's Retry-After in seconds, when it sent one; ``status`` the
    HTTP status, when there was one; ``progress`` the bytes this attempt added to a resumable
    partial file (an attempt that made progress is not counted against the item). ``stage``
    is ``consent`` for a refusal by a site's signals (then ``evidence`` holds what was seen)."""

    def __init__(self, reason: str, detail: str = "", *, retryable: bool = False,
                 retry_after: float | None = None, status: int | None = None,
                 progress: int = 0, stage: str = "fetch",
                 evidence: list[dict[str, Any]] | None = None) -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail
        self.retryable = retryable
        self.retry_after = retry_after
        self.status = status
        self.progress = progress
        self.stage = stage
        self.evidence = evidence or []
        self.attempts = 1  # set by the retry loop to the attempts made


class Fetcher(Protocol):
    """Anything that can fetch a URL into a folder (one attempt)."""

    def fetch(self, url: str, dest_dir: Path, max_bytes: int,
              expected_sha256: str | None = None) -> FetchResult:
        """Fetch ``url`` into ``dest_dir``; raise :class:`FetchError` on failure."""
        ...


def url_key(url: str) -> str:
    """A stable, file-name-safe key for a URL (names its partial and final files)."""
    return hashlib.sha256(url.encode("utf-8")).hexdigest()[:24]


def sources_dir(out: Path, configured: str | None) -> Path:
    """Where a run puts its downloads: ``fetch.sources_dir`` when set, else
    ``OUTPUT/sources``."""
    return Path(configured) if configured else Path(out) / "sources"


def sources_dirs(out: Path, configured: str | None) -> list[Path]:
    """Where an output's downloads may be, for its readers (a takedown, the report):
    ``OUTPUT/sources`` and the configured ``fetch.sources_dir``."""
    return list(dict.fromkeys([Path(out) / "sources", sources_dir(out, configured)]))


def marker_path(dest_dir: Path, url: str) -> Path:
    """The JSON beside a complete download of ``url`` that names its file (and bytes)."""
    return Path(dest_dir) / f"{url_key(url)}.fetch.json"


def partial_paths(dest_dir: Path, url: str) -> tuple[Path, Path]:
    """The partial file of ``url`` under ``dest_dir/.partial`` (folder made) and the JSON beside
    it that says which version of the source the partial bytes came from."""
    part_dir = Path(dest_dir) / ".partial"
    part_dir.mkdir(parents=True, exist_ok=True)
    key = url_key(url)
    return part_dir / f"{key}.part", part_dir / f"{key}.json"


def discard_partial(part: Path, meta_path: Path) -> None:
    """Remove a partial file and its JSON (the next attempt starts over)."""
    part.unlink(missing_ok=True)
    meta_path.unlink(missing_ok=True)


def read_partial_meta(path: Path) -> dict[str, Any]:
    """A partial file's JSON, or ``{}`` when it is missing or unreadable."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_partial_meta(path: Path, data: dict[str, Any]) -> None:
    """Write a partial file's JSON atomically (a killed write leaves the old one or none)."""
    write_atomic(path, json.dumps(data))
