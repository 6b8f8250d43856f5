"""The error types that say whose fault a failure is: an input's (:class:`MediaError`, recorded
against it) or the output storage's (:class:`OutputFull`, which stops the run)."""

from __future__ import annotations

import errno
import sqlite3

__all__ = ["MediaError", "OutputFull", "out_of_space"]

_FULL = (errno.ENOSPC, errno.EDQUOT)
_SQLITE_FULL = 13  # "database or disk is full"


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


class OutputFull(Exception):
    """The output's storage refused a write: no space left on the device, or the user's disk
    quota is spent. That is not the input's fault, and every later input would fail the same
    way, so the run stops instead of recording it: the videos in flight stay pending, what was
    recorded stays, and a run after space is freed carries on from there."""


def out_of_space(err: BaseException | None) -> bool:
    """Whether ``err``, or an exception it was raised from or during, says the storage is full
    (``ENOSPC``/``EDQUOT`` from the OS or FFmpeg, SQLite's ``SQLITE_FULL``)."""
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, OutputFull):
            return True
        if isinstance(err, OSError) and err.errno in _FULL:
            return True
        if isinstance(err, sqlite3.Error) and \
                getattr(err, "sqlite_errorcode", None) == _SQLITE_FULL:
            return True
        err = err.__cause__ or err.__context__
    return False
