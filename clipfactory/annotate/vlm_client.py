"""Captions from any OpenAI-compatible chat-completions server (vLLM, SGLang, llama.cpp server,
TGI, hosted APIs), over the standard library's HTTP client.

Protocol. One caption is one ``POST {base_url}/chat/completions`` with a single user message
whose content is the frames as ``image_url`` parts (base64 ``data:`` URLs), or one
``video_url`` part, then the prompt as a ``text`` part; decoding parameters (``temperature``,
``top_p``, ``max_tokens``, ``seed``...) go into the body beside ``model`` and ``messages``.
The answer's ``choices[0].message.content`` (a string, or a list of parts with ``text``),
``finish_reason`` and ``usage`` become a :class:`ChatResult`; ``finish_reason == "length"``
is a truncated caption, still returned.

Retries. A 429 waits what ``Retry-After`` asks (seconds or an HTTP date; without it, the
backoff below) and gives up at once, reason ``rate_limited``, when that is longer than
``max_wait_s``. A 5xx or 408, a timeout and a connection that is refused or reset wait
``min(backoff_max_s, backoff_base_s * 2**n) * U(0.5, 1)`` (n counts the retries) and try again;
after ``max_attempts`` the last reason is raised (``http_503``, ``timeout``, ``unreachable``,
``rate_limited``). Any other 4xx, a reply that is not JSON or has no text
(``bad_response``) and an error object in a 200 (``model_error``) are not retried.
No slot is held while waiting.

Concurrency. At most ``concurrency`` requests are in flight per endpoint (normalised base URL)
across every client in the process: a request starts only while fewer than its own client's
``concurrency`` are in flight there, so clients that agree on the limit share it, and the
total never exceeds the largest limit in use.

Keys. The API key is sent only as ``Authorization: Bearer``; it is kept out of ``repr``, out of
the log, and cut out of every error detail (servers sometimes echo the key they refused).
"""

from __future__ import annotations

import base64
import http.client
import json
import logging
import random
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

from clipfactory.annotate.vlm_types import ChatResult, VLMError
from clipfactory.fetch.http import parse_retry_after

__all__ = ["OpenAIChatClient"]

log = logging.getLogger(__name__)

_RESERVED = ("model", "messages", "stream")  # the body is ours to build; no streaming
_EXCERPT = 200


class _EndpointGate:
    """Counts requests in flight to one endpoint; each caller waits for its own limit."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.in_flight = 0

    @contextmanager
    def slot(self, limit: int) -> Iterator[None]:
        with self._cond:
            while self.in_flight >= limit:
                self._cond.wait()
            self.in_flight += 1
        try:
            yield
        finally:
            with self._cond:
                self.in_flight -= 1
                self._cond.notify_all()


_GATES: dict[str, _EndpointGate] = {}
_GATES_LOCK = threading.Lock()


def _endpoint_key(base_url: str) -> str:
    """``HTTP://Host:80/v1/`` and ``http://host/v1`` are one endpoint."""
    parts = urlsplit(base_url.strip())
    scheme = parts.scheme.lower()
    port = parts.port or {"http": 80, "https": 443}.get(scheme)
    return f"{scheme}://{(parts.hostname or '').lower()}:{port}{parts.path.rstrip('/')}"


def _gate(base_url: str) -> _EndpointGate:
    key = _endpoint_key(base_url)
    with _GATES_LOCK:
        gate = _GATES.get(key)
        if gate is None:
            gate = _GATES[key] = _EndpointGate()
        return gate


def _data_url(data: bytes, default_mime: str) -> str:
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        mime = "image/png"
    elif data[:4] == b"\x1a\x45\xdf\xa3":
        mime = "video/webm"
    else:
        mime = default_mime
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


class _Retryable(Exception):
    def __init__(self, error: VLMError, retry_after: float | None = None) -> None:
        super().__init__(error.reason)
        self.error, self.retry_after = error, retry_after


class OpenAIChatClient:
    """A captioning client for one OpenAI-compatible endpoint (see the module docstring).

    ``base_url`` ends before ``/chat/completions`` (``http://host:8000/v1``); ``params`` are
    decoding parameters sent with every request, which a call's own ``params`` update.
    Thread-safe: one client can serve many threads.
    """

    def __init__(self, base_url: str, model: str, *, api_key: str | None = None,
                 timeout_s: float = 120.0, max_attempts: int = 4, backoff_base_s: float = 1.0,
                 backoff_max_s: float = 60.0, max_wait_s: float = 300.0, concurrency: int = 8,
                 params: dict[str, Any] | None = None) -> None:
        if max_attempts < 1 or concurrency < 1:
            raise ValueError("max_attempts and concurrency must be at least 1")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self._api_key = api_key or None
        self.timeout_s, self.max_attempts = timeout_s, max_attempts
        self.backoff_base_s, self.backoff_max_s = backoff_base_s, backoff_max_s
        self.max_wait_s, self.concurrency = max_wait_s, concurrency
        self.params = _check_params(params)
        self._url = f"{self.base_url}/chat/completions"
        self._gate = _gate(self.base_url)
        # no redirect handler: a redirected POST would silently become a GET
        self._opener = urllib.request.OpenerDirector()
        for handler in (urllib.request.ProxyHandler(), urllib.request.HTTPHandler(),
                        urllib.request.HTTPSHandler(), urllib.request.HTTPDefaultErrorHandler(),
                        urllib.request.HTTPErrorProcessor()):
            self._opener.add_handler(handler)

    def __repr__(self) -> str:
        key = "***" if self._api_key else None
        return (f"OpenAIChatClient(base_url={self.base_url!r}, model={self.model!r}, "
                f"api_key={key!r}, concurrency={self.concurrency})")

    def caption(self, prompt: str, images: Sequence[bytes] = (), *, video: bytes | None = None,
                params: dict[str, Any] | None = None) -> ChatResult:
        """Caption ``images`` (encoded frames, JPEG unless PNG) or ``video`` (MP4 bytes unless
        WebM) with ``prompt``; raises :class:`VLMError` when no text comes back."""
        content: list[dict[str, Any]] = [
            {"type": "image_url", "image_url": {"url": _data_url(img, "image/jpeg")}}
            for img in images]
        if video is not None:
            content.append({"type": "video_url",
                            "video_url": {"url": _data_url(video, "video/mp4")}})
        content.append({"type": "text", "text": prompt})
        body = {"model": self.model, "messages": [{"role": "user", "content": content}],
                **self.params, **_check_params(params)}
        return self._post_with_retries(json.dumps(body).encode("utf-8"))

    def map(self, jobs: Sequence[tuple[str, Sequence[bytes], bytes | None]]
            ) -> list[ChatResult | VLMError]:
        """Run ``(prompt, images, video)`` jobs concurrently; results in input order, a
        failure as its :class:`VLMError` value (never raised)."""
        if not jobs:
            return []

        def one(job: tuple[str, Sequence[bytes], bytes | None]) -> ChatResult | VLMError:
            prompt, images, video = job
            try:
                return self.caption(prompt, images, video=video)
            except VLMError as e:
                return e
            except Exception as e:  # a bad job must not lose the others' results
                return VLMError("client_error", self._redact(f"{type(e).__name__}: {e}"))

        with ThreadPoolExecutor(min(self.concurrency, len(jobs)),
                                thread_name_prefix="vlm") as pool:
            return list(pool.map(one, jobs))

    # -- one request, and the retry loop around it ------------------------------------------

    def _post_with_retries(self, data: bytes) -> ChatResult:
        attempt = 0
        while True:
            attempt += 1
            try:
                with self._gate.slot(self.concurrency):
                    payload = self._post(data)
                return self._parse(payload, attempt)
            except _Retryable as r:
                err = r.error
                err.attempts = attempt
                if r.retry_after is not None and r.retry_after > self.max_wait_s:
                    err.detail = (f"server asked to wait {r.retry_after:.0f} s, more than "
                                  f"max_wait_s={self.max_wait_s:g}")
                    raise VLMError(err.reason, err.detail, attempt) from None
                if attempt >= self.max_attempts:
                    raise VLMError(err.reason, f"{err.detail} (after {attempt} attempts)",
                                   attempt) from None
                wait = r.retry_after if r.retry_after is not None else self._backoff(attempt)
                log.info("%s: attempt %d/%d failed (%s); retrying in %.2f s", self.base_url,
                         attempt, self.max_attempts, err.reason, wait)
                time.sleep(wait)
            except VLMError as e:
                e.attempts = attempt
                raise

    def _backoff(self, attempt: int) -> float:
        cap = min(self.backoff_max_s, self.backoff_base_s * 2 ** (attempt - 1))
        return cap * random.uniform(0.5, 1.0)

    def _post(self, data: bytes) -> bytes:
        headers = {"Content-Type": "application/json", "Accept": "application/json",
                   "User-Agent": "clipfactory"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        req = urllib.request.Request(self._url, data=data, headers=headers, method="POST")
        try:
            with self._opener.open(req, timeout=self.timeout_s) as resp:
                return resp.read()
        except urllib.error.HTTPError as e:
            with e:
                raise self._http_error(e.code, e.headers, _read_quietly(e)) from None
        except urllib.error.URLError as e:
            raise self._network_error(e.reason) from None
        except (OSError, http.client.HTTPException) as e:
            raise self._network_error(e) from None

    def _http_error(self, code: int, headers: Any, body: bytes) -> Exception:
        detail = f"HTTP {code}: {self._redact(_error_excerpt(body))}"
        if code == 429:
            retry_after = parse_retry_after(headers.get("Retry-After") if headers else None)
            return _Retryable(VLMError("rate_limited", detail), retry_after)
        if code == 408 or code >= 500:
            return _Retryable(VLMError(f"http_{code}", detail))
        return VLMError(f"http_{code}", detail)

    def _network_error(self, exc: object) -> _Retryable:
        if isinstance(exc, TimeoutError):
            return _Retryable(VLMError("timeout", f"no answer within {self.timeout_s:g} s"))
        return _Retryable(VLMError("unreachable",
                                   self._redact(f"{type(exc).__name__}: {exc}"[:_EXCERPT])))

    def _parse(self, raw: bytes, attempts: int) -> ChatResult:
        try:
            payload = json.loads(raw)
        except ValueError:
            raise VLMError("bad_response", f"not JSON: {self._redact(_excerpt(raw))}",
                           attempts) from None
        if isinstance(payload, dict) and payload.get("error") and not payload.get("choices"):
            raise VLMError("model_error", self._redact(_error_excerpt(raw)), attempts)
        try:
            choice = payload["choices"][0]
            content = (choice.get("message") or {}).get("content")
        except (KeyError, IndexError, TypeError, AttributeError):
            raise VLMError("bad_response", f"no choices[0].message: {self._redact(_excerpt(raw))}",
                           attempts) from None
        if isinstance(content, list):
            content = "".join(part.get("text") or "" for part in content
                              if isinstance(part, dict))
        finish = choice.get("finish_reason") or "stop"
        if not isinstance(content, str) or not content.strip():
            raise VLMError("bad_response", f"empty content (finish_reason={finish})", attempts)
        usage = payload.get("usage")
        return ChatResult(content, str(finish), attempts, usage if isinstance(usage, dict) else {})

    def _redact(self, text: str) -> str:
        return text.replace(self._api_key, "***") if self._api_key else text


def _check_params(params: dict[str, Any] | None) -> dict[str, Any]:
    params = dict(params or {})
    bad = [k for k in _RESERVED if k in params]
    if bad:
        raise ValueError(f"params may not set {', '.join(bad)}")
    return params


def _read_quietly(resp: Any) -> bytes:
    try:
        return resp.read(64 * 1024)
    except (OSError, http.client.HTTPException):
        return b""


def _excerpt(raw: bytes) -> str:
    text = " ".join(raw[:_EXCERPT * 2].decode("utf-8", "replace").split())
    return text[:_EXCERPT] + ("..." if len(text) > _EXCERPT else "")


def _error_excerpt(raw: bytes) -> str:
    """The message of an OpenAI-style ``{"error": {"message": ...}}`` body, else its start."""
    try:
        payload = json.loads(raw)
    except ValueError:
        return _excerpt(raw)
    err = payload.get("error", payload) if isinstance(payload, dict) else payload
    if isinstance(err, dict):
        msg = err.get("message") or err.get("detail") or err.get("msg")
        if isinstance(msg, str):
            return _excerpt(msg.encode("utf-8"))
    if isinstance(err, str):
        return _excerpt(err.encode("utf-8"))
    return _excerpt(raw)
