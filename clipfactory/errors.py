"""The one error type that carries a stage and a machine-readable reason."""

from __future__ import annotations

__all__ = ["MediaError"]


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
