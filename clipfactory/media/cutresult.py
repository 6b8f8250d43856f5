"""What cutting one span produced (shared by every cut mode)."""

from __future__ import annotations

from dataclasses import dataclass

from clipfactory.records import Span

__all__ = ["CutResult"]


@dataclass(frozen=True)
class CutResult:
    """A clip file, or ``error`` (then no file was left at ``path``).

    ``span`` is the span the clip holds: the requested one, except in ``keyframe`` mode, where
    it is the GOP-aligned span inside the request. ``method``: ``smart`` (whole GOPs copied,
    edges re-encoded), ``copy`` (keyframe mode), ``reencode`` (every frame encoded: the
    fallback of ``exact`` mode, with ``fallback`` saying why) or ``transcode``.
    """

    span: Span
    path: str
    frames: int
    width: int
    height: int
    bytes: int
    error: str | None = None
    method: str = "reencode"
    copied_frames: int = 0  # frames whose packets were copied from the source unchanged
    fallback: str | None = None  # why an exact cut was re-encoded in full
    audio: bool = False  # the clip carries the source's audio over its span
    codec: str = ""  # the clip's video codec (FFmpeg name)
    note: str | None = None  # e.g. why audio was not kept
