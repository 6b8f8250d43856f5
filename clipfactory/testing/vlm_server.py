"""A fake OpenAI-compatible vision-language server on 127.0.0.1, for tests and benches.

It speaks real HTTP (``POST /v1/chat/completions``, ``GET /v1/models``) and its caption depends
on what it was sent: each ``data:`` URL image is decoded with Pillow and described by its size
and mean colour (:func:`describe_image`), so a test can tell whether every clip got the caption
of its own frames; a ``video_url`` part is answered ``a video of N bytes``.

Faults are scripted: ``server.script`` is a FIFO that each chat request consumes one item of
(an empty script means a normal answer):

- ``("status", code)`` or ``("status", code, retry_after)``: that status with a JSON error body,
  and a ``Retry-After`` header (seconds or an HTTP date) when given;
- ``("slow", seconds)``: wait, then answer normally;
- ``("truncated",)``: half the text, ``finish_reason`` ``length``;
- ``("garbage",)``: 200 with a body that is not JSON;
- ``("delay_all", seconds)``: this request and every later one wait that long first (the
  same as setting ``server.delay_s``).

It records every request (``requests``: path, body with each base64 payload replaced by its
size, headers, ``time.monotonic()`` on arrival) and the most requests it ever had in flight
(``max_in_flight``). With ``api_key``, a request without ``Authorization: Bearer <key>`` gets
401 (the body echoes the token presented, as some real servers do).
"""

from __future__ import annotations

import base64
import io
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
from PIL import Image

__all__ = ["PALETTE", "VLMServer", "describe_image", "describe_images"]

PALETTE: dict[str, tuple[int, int, int]] = {
    "black": (0, 0, 0), "white": (255, 255, 255), "gray": (128, 128, 128),
    "red": (220, 30, 30), "green": (30, 160, 40), "blue": (30, 60, 220),
    "yellow": (240, 220, 40), "orange": (240, 140, 20), "purple": (130, 40, 160),
    "pink": (250, 170, 200), "brown": (120, 70, 30), "cyan": (40, 200, 220),
}


def describe_image(rgb: Any) -> str:
    """``"64x36, mostly red (200, 30, 20)"``: the size, the palette colour nearest the mean
    colour, and the mean itself (rounded) of an ``HxWx3`` RGB array."""
    arr = np.asarray(rgb, dtype=np.float64)
    if arr.ndim == 2:  # grey
        arr = np.repeat(arr[..., None], 3, axis=2)
    h, w = arr.shape[:2]
    mean = tuple(round(float(v)) for v in arr.reshape(-1, arr.shape[-1])[:, :3].mean(0))
    name = min(PALETTE, key=lambda n: sum((a - b) ** 2 for a, b in zip(PALETTE[n], mean,
                                                                          strict=True)))
    return f"{w}x{h}, mostly {name} ({mean[0]}, {mean[1]}, {mean[2]})"


def describe_images(images: list[bytes]) -> str:
    """The caption the server gives these encoded frames: ``frame 1: ...; frame 2: ...``."""
    return "; ".join(f"frame {i}: {describe_image(_decode(img))}"
                     for i, img in enumerate(images, 1))


def _decode(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"))


def _split_data_url(url: str) -> tuple[str, bytes]:
    if not url.startswith("data:") or ";base64," not in url:
        raise ValueError("only base64 data: URLs are supported")
    head, _, b64 = url.partition(",")
    return head[5:].split(";")[0], base64.b64decode(b64, validate=True)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128
    owner: VLMServer


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.0"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._serve(b"")

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self._serve(self.rfile.read(length))

    def _serve(self, raw: bytes) -> None:
        owner = self.server.owner
        owner._enter(self)
        try:
            try:
                status, headers, body = owner._answer(self, raw)
            except Exception as e:  # a bug here should reach the test as a 500, not a hang
                status, headers, body = _error(500, f"fake server failed: {e!r}")
            owner._leave(self)  # before the last bytes: the client may start its next one
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass
        finally:
            owner._leave(self)


def _json(status: int, payload: Any, **headers: str) -> tuple[int, dict[str, str], bytes]:
    return status, {"Content-Type": "application/json", **headers}, json.dumps(payload).encode()


def _error(status: int, message: str, **headers: str) -> tuple[int, dict[str, str], bytes]:
    return _json(status, {"error": {"message": message, "type": "fake_error", "code": status}},
                 **headers)


class VLMServer:
    """The fake server (module docstring); starts at once, use as a context manager."""

    def __init__(self, *, model: str = "fake-vlm", api_key: str | None = None,
                 script: list[tuple[Any, ...]] | None = None) -> None:
        self.model, self.api_key = model, api_key
        self.script: list[tuple[Any, ...]] = list(script or [])
        self.requests: list[dict[str, Any]] = []
        self.delay_s = 0.0
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._httpd = _Server(("127.0.0.1", 0), _Handler)
        self._httpd.owner = self
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,),
                                        daemon=True, name="vlm-server")
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def close(self) -> None:
        """Stop serving and free the port; requests still sleeping give up their wait."""
        if not self._closed.is_set():
            self._closed.set()
            self._httpd.shutdown()
            self._httpd.server_close()

    def __enter__(self) -> VLMServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _enter(self, h: _Handler) -> None:
        with self._lock:
            h.counted = True  # type: ignore[attr-defined]
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def _leave(self, h: _Handler) -> None:
        with self._lock:
            if getattr(h, "counted", False):
                h.counted = False  # type: ignore[attr-defined]
                self.in_flight -= 1

    def _answer(self, h: _Handler, raw: bytes) -> tuple[int, dict[str, str], bytes]:
        arrived = time.monotonic()
        path = h.path.split("?")[0].rstrip("/")
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        token = (h.headers.get("Authorization") or "").removeprefix("Bearer ").strip()
        authorized = self.api_key is None or token == self.api_key
        chat = h.command == "POST" and path == "/v1/chat/completions"
        with self._lock:
            self.requests.append({"method": h.command, "path": path, "body": _sizes(body),
                                  "headers": dict(h.headers.items()), "time": arrived})
            item = self.script.pop(0) if chat and authorized and self.script else None
            if item and item[0] == "delay_all":
                self.delay_s = float(item[1])
            delay = self.delay_s if chat else 0.0
        if not authorized:
            return _error(401, f"invalid api key: {token or '(none)'}")
        if h.command == "GET" and path == "/v1/models":
            return _json(200, {"object": "list",
                               "data": [{"id": self.model, "object": "model"}]})
        if not chat:
            return _error(404, f"no route {h.command} {path}")
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            return _error(400, "body must be a JSON object with messages")
        self._closed.wait(delay)
        kind = item[0] if item else None
        if kind == "slow":
            self._closed.wait(float(item[1]))
        elif kind == "status":
            extra = {"Retry-After": str(item[2])} if len(item) > 2 else {}
            return _error(int(item[1]), f"scripted status {item[1]}", **extra)
        elif kind == "garbage":
            return 200, {"Content-Type": "application/json"}, b"<html>not json {"
        elif kind not in (None, "truncated", "delay_all"):
            return _error(500, f"unknown script item {item!r}")
        try:
            text = self.caption_for(body["messages"])
        except (ValueError, OSError, KeyError, TypeError) as e:
            return _error(400, f"cannot read the request: {e}")
        finish = "stop"
        if kind == "truncated":
            text, finish = text[:max(1, len(text) // 2)], "length"
        return _json(200, {
            "id": f"chatcmpl-{len(self.requests)}", "object": "chat.completion",
            "created": int(time.time()), "model": body.get("model", self.model),
            "choices": [{"index": 0, "finish_reason": finish,
                         "message": {"role": "assistant", "content": text}}],
            "usage": {"prompt_tokens": len(raw) // 4, "completion_tokens": len(text.split()),
                      "total_tokens": len(raw) // 4 + len(text.split())}})

    @staticmethod
    def caption_for(messages: list[dict[str, Any]]) -> str:
        """The deterministic answer to these messages: frames described in order, or the
        video's size."""
        images: list[bytes] = []
        videos: list[bytes] = []
        for msg in messages:
            content = msg.get("content")
            for part in content if isinstance(content, list) else []:
                if part.get("type") == "image_url":
                    images.append(_split_data_url(part["image_url"]["url"])[1])
                elif part.get("type") == "video_url":
                    videos.append(_split_data_url(part["video_url"]["url"])[1])
        texts = [f"a video of {len(v)} bytes" for v in videos]
        if images:
            texts.insert(0, describe_images(images))
        return "; ".join(texts) or "no images"


def _sizes(body: Any) -> Any:
    """The body with each data: URL replaced by ``{"mime", "bytes"}`` (its decoded size)."""
    if isinstance(body, dict):
        out = {}
        for key, value in body.items():
            if key == "url" and isinstance(value, str) and value.startswith("data:"):
                head, _, b64 = value.partition(",")
                out["mime"] = head[5:].split(";")[0]
                out["bytes"] = len(b64) * 3 // 4 - b64.count("=", -2)
            else:
                out[key] = _sizes(value)
        return out
    if isinstance(body, list):
        return [_sizes(v) for v in body]
    return body
