"""What a captioning backend returns, whichever it is (an OpenAI-compatible server, a local
``transformers`` model): the text and how generation ended, or a :class:`VLMError` naming why
there is no text."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["ChatResult", "VLMError"]


@dataclass(frozen=True)
class ChatResult:
    """One generated caption.

    ``status`` is ``ok``, or ``truncated`` when generation stopped at the token limit
    (``finish_reason == "length"``). ``attempts`` counts the requests it took (retries).
    """

    text: str
    finish_reason: str = "stop"
    attempts: int = 1
    usage: dict[str, Any] = field(default_factory=dict)

    @property
    def status(self) -> str:
        return "truncated" if self.finish_reason == "length" else "ok"


class VLMError(Exception):
    """No caption: ``reason`` is short and machine-readable (``http_500``, ``timeout``,
    ``rate_limited``, ``bad_response``, ``unreachable``, ``http_401``, ``model_error``...),
    the message says what happened. Never carries an API key."""

    def __init__(self, reason: str, detail: str = "", attempts: int = 1) -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason, self.detail, self.attempts = reason, detail, attempts
