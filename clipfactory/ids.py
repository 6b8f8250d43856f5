"""Identifiers: validating untrusted manifest ids and deriving safe file/shard keys.

Untrusted text never becomes a path or a tar member name as is: ``safe_key`` keeps a readable
prefix of ``[A-Za-z0-9_-]`` and appends a short hash of the original, so two ids that sanitise
to the same text still get different keys.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

__all__ = ["InvalidId", "clip_key", "safe_key", "short_hash", "validate_id"]

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")
MAX_ID_LENGTH = 256


class InvalidId(ValueError):
    """A manifest id that cannot be accepted (path traversal, control characters, ...)."""


def short_hash(text: str, n: int = 10) -> str:
    """A stable hex digest prefix of ``text``."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:n]


def validate_id(raw: object) -> str:
    """Return the id as a string, or raise :class:`InvalidId` saying what is wrong with it.

    Ids are kept verbatim in records, so they must not be able to do harm anywhere they might be
    used naively downstream: no path separators, no ``..``, no control characters, not empty,
    not absurdly long.
    """
    if raw is None:
        raise InvalidId("empty id")
    text = str(raw).strip() if not isinstance(raw, str) else raw
    if text == "" or text.strip() == "":
        raise InvalidId("empty id")
    if len(text) > MAX_ID_LENGTH:
        raise InvalidId(f"id longer than {MAX_ID_LENGTH} characters")
    if "/" in text or "\\" in text:
        raise InvalidId(f"id contains a path separator: {text!r}")
    if text in (".", "..") or text.startswith(".."):
        raise InvalidId(f"id looks like a relative path: {text!r}")
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") for ch in text):
        raise InvalidId(f"id contains control characters: {text!r}")
    return text


def safe_key(text: str, max_prefix: int = 48) -> str:
    """A key safe for file names and WebDataset members (no dots, no slashes)."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    prefix = _UNSAFE.sub("_", ascii_text).strip("_-")[:max_prefix]
    if prefix == text:
        return prefix
    return f"{prefix}_{short_hash(text, 8)}" if prefix else short_hash(text, 16)


def clip_key(video_key: str, start_frame: int, end_frame: int) -> str:
    """The WebDataset key of a clip: its video's safe key plus the frame span."""
    return f"{video_key}_{start_frame:07d}_{end_frame:07d}"
