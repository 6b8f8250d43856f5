"""The error types that say whose fault a failure is: an input's (:class:`MediaError`, recorded
against it) or the storage's (:class:`StorageRefused`, which stops the command)."""

from __future__ import annotations

import errno
import sqlite3

__all__ = ["ManifestError", "MediaError", "OutputError", "StorageRefused", "storage_refusal", "storage_refused"]

_ERRNO = {errno.ENOSPC: "full", errno.EDQUOT: "full", errno.EROFS: "read-only"}
_SQLITE = {sqlite3.SQLITE_FULL: "full", sqlite3.SQLITE_READONLY: "read-only"}


class MediaError(Exception):
    """An input failed a stage for a specific, recordable reason.

    ``reason`` is a short snake_case code that lands in ``rejected.parquet`` (for example
    ``no_video_stream``); ``detail`` is the human-readable explanation (often FFmpeg's words).
    """

    def __init__(self, stage: str, reason: str, detail: str = "") -> None:
        super().__init__(f"{stage}/{reason}: {detail}" if detail else f"{stage}/{reason}")
        self.stage = stage
        self.reason = reason
        self.detail = detail


class ManifestError(ValueError):
    """A manifest file that cannot be read at all (a truncated ``.gz``, a file that is not
    Parquet): the command stops before any video runs. A bad *row* is that row's rejection."""


class OutputError(ValueError):
    """The output folder cannot be made or used (a file by that name, a parent that is a
    file, no permission to create it or write in it): the command stops before anything runs,
    saying which path and why."""


class StorageRefused(Exception):
    """A disk the command writes to refused a write: it is full, the user's quota is spent, or
    it is (or was remounted) read-only. That is not the input's fault, and every later input
    would fail the same way, so the command stops instead of recording it: the videos in
    flight stay pending, what was recorded stays, and the same command run once the disk
    takes writes again carries on from there. ``what``: ``"full"`` or ``"read-only"``."""

    def __init__(self, message: str, what: str = "full") -> None:
        super().__init__(message)
        self.what = what


def storage_refusal(err: BaseException | None) -> str | None:
    """``"full"`` or ``"read-only"`` when ``err``, or an exception it was raised from or
    during, says a disk refused a write (``ENOSPC``, ``EDQUOT``, ``EROFS`` from the OS or
    FFmpeg; SQLite's ``SQLITE_FULL``, ``SQLITE_READONLY``); else None."""
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, StorageRefused):
            return err.what
        if isinstance(err, OSError) and err.errno in _ERRNO:
            return _ERRNO[err.errno]
        if isinstance(err, sqlite3.Error) and \
                getattr(err, "sqlite_errorcode", None) in _SQLITE:
            return _SQLITE[err.sqlite_errorcode]  # type: ignore[attr-defined]
        err = err.__cause__ or err.__context__
    return None


def storage_refused(err: BaseException | None) -> bool:
    """Whether :func:`storage_refusal` names a refusal."""
    return storage_refusal(err) is not None
