"""A real HTTP server on 127.0.0.1 that serves bytes and misbehaves on request.

Used by the fetch tests and ``clipfactory bench-fetch``: it speaks HTTP over a real socket
(Range, ETag, If-Range, HEAD), and each route can inject one fault: drop the connection in the
middle of the body, answer 429 with Retry-After, 500, 403 or 404, trickle the body slowly, or
send a wrong content type. It counts requests and the most it ever served at once, which is what
a polite client's per-host limit is checked against. It binds only to the loopback address.
"""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["LoopbackServer", "Route"]


@dataclass
class Route:
    """What one path serves. ``fault`` is one of ``drop`` (the first full-body answer stops
    after ``drop_at`` bytes; with ``drops`` N, the first N answers, resumed ones included,
    each stop after ``drop_at`` bytes of theirs), ``redirect`` (302 to ``location``), ``status`` (the first ``times`` answers are ``status``, with
    ``retry_after`` if set; ``times`` -1 = always), ``trickle`` (``trickle_bytes`` every
    ``trickle_s``), or None. ``send_length`` False sends no Content-Length (the body ends when
    the connection closes); ``resume_length`` False sends none with a 206 answer."""

    body: bytes
    content_type: str | None = "video/mp4"
    fault: str | None = None
    status: int = 500
    times: int = 1
    retry_after: str | None = None
    drop_at: int = 0
    drops: int = 1
    resume_length: bool = True
    trickle_bytes: int = 64
    trickle_s: float = 0.05
    send_length: bool = True
    location: str = ""  # fault "redirect": answer 302 to this URL
    headers: dict[str, str] = field(default_factory=dict)  # sent with every 2xx answer
    served: int = 0  # answers given so far
    faults: int = 0  # faults injected so far
    bytes_sent: int = 0
    ranges: list[str | None] = field(default_factory=list)
    cookies: list[str | None] = field(default_factory=list)
    agents: list[str | None] = field(default_factory=list)
    auths: list[str | None] = field(default_factory=list)  # Authorization headers


def _site_file(path: str) -> bool:
    path = path.split("?")[0]
    return path == "/robots.txt" or path.startswith("/.well-known/")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    owner: LoopbackServer

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.owner._lock:
            self.owner.connections += 1  # accepted, whether or not a request follows
        super().process_request(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.0"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_HEAD(self) -> None:
        self._serve(head=True)

    def do_GET(self) -> None:
        self._serve(head=False)

    def _serve(self, head: bool) -> None:
        owner = self.server.owner
        owner._enter(self.path)
        self.counted = True
        try:
            owner._handle(self, head)
        except (BrokenPipeError, ConnectionResetError):
            pass
        finally:
            owner._leave(self)


class LoopbackServer:
    """A threaded HTTP server on ``127.0.0.1`` and a free port; use as a context manager."""

    def __init__(self, throttle_bps: float = 0.0) -> None:
        self.routes: dict[str, Route] = {}
        self.throttle_bps = throttle_bps
        self._lock = threading.Lock()
        self.in_flight = 0
        self.max_in_flight = 0
        self.requests = 0  # every request, site files included
        self.connections = 0
        self.paths: list[str] = []  # the path of every request, in order
        self.request_times: list[float] = []
        self._httpd = _Server(("127.0.0.1", 0), _Handler)
        self._httpd.owner = self
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,),
                                        daemon=True)

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def add(self, path: str, body: bytes, **kw: Any) -> str:
        """Serve ``body`` at ``path`` (see :class:`Route`); returns its URL."""
        self.routes[path] = Route(body, **kw)
        return self.url(path)

    def wait_idle(self, timeout: float = 5.0) -> None:
        """Wait until no request is being served (counters are final then)."""
        end = time.monotonic() + timeout
        while self.in_flight and time.monotonic() < end:
            time.sleep(0.01)

    def __enter__(self) -> LoopbackServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    @property
    def media_requests(self) -> int:
        """Requests other than the site files a consent check reads (robots.txt and
        ``/.well-known/``)."""
        with self._lock:
            return sum(1 for p in self.paths if not _site_file(p))

    def site_requests(self, path: str) -> int:
        """How many times ``path`` (e.g. ``/robots.txt``) was asked for."""
        with self._lock:
            return sum(1 for p in self.paths if p.split("?")[0] == path)

    def _enter(self, path: str = "") -> None:
        with self._lock:
            self.paths.append(path)
            self.in_flight += 1
            self.requests += 1
            self.request_times.append(time.monotonic())
            self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def _leave(self, h: _Handler) -> None:
        # a request counts until its last bytes are handed to the socket, never longer, so a
        # client that starts its next request on reading them is not seen as overlapping
        with self._lock:
            if getattr(h, "counted", False):
                h.counted = False
                self.in_flight -= 1

    def _handle(self, h: _Handler, head: bool) -> None:
        route = self.routes.get(h.path.split("?")[0])
        if route is None:
            return self._status(h, 404)
        with self._lock:
            route.served += 1
            route.ranges.append(h.headers.get("Range"))
            route.cookies.append(h.headers.get("Cookie"))
            route.agents.append(h.headers.get("User-Agent"))
            route.auths.append(h.headers.get("Authorization"))
            fault_now = route.fault == "status" and (route.times < 0 or route.faults < route.times)
            if fault_now:
                route.faults += 1
        if fault_now:
            extra = {"Retry-After": route.retry_after} if route.retry_after else {}
            return self._status(h, route.status, extra)
        if route.fault == "redirect":
            return self._status(h, 302, {"Location": route.location})
        body, etag = route.body, '"' + hashlib.md5(route.body).hexdigest() + '"'
        start, code = 0, 200
        rng, if_range = h.headers.get("Range"), h.headers.get("If-Range")
        if rng and rng.startswith("bytes=") and (if_range is None or if_range == etag):
            start = int(rng[6:].split("-")[0] or 0)
            if start >= len(body):
                return self._status(h, 416, {"Content-Range": f"bytes */{len(body)}"})
            code = 206
        h.send_response(code)
        if route.content_type:
            h.send_header("Content-Type", route.content_type)
        h.send_header("ETag", etag)
        h.send_header("Accept-Ranges", "bytes")
        for k, v in route.headers.items():
            h.send_header(k, v)
        if code == 206:
            h.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        if route.send_length and (code == 200 or route.resume_length):
            h.send_header("Content-Length", str(len(body) - start))
        if head or start >= len(body):  # the headers are the whole answer
            self._leave(h)
        h.end_headers()
        if head:
            return None
        payload = memoryview(body)[start:]
        with self._lock:
            drop = route.fault == "drop" and (start == 0 or route.drops > 1) \
                and route.faults < route.drops
            if drop:
                route.faults += 1
        if drop:
            payload = payload[:route.drop_at]
        self._write(h, route, payload)
        if drop:  # an abrupt end: the client saw a Content-Length it will never get
            h.wfile.flush()
            h.close_connection = True
        return None

    def _write(self, h: _Handler, route: Route, payload: memoryview) -> None:
        step = route.trickle_bytes if route.fault == "trickle" else 64 * 1024
        pause = route.trickle_s if route.fault == "trickle" else 0.0
        if self.throttle_bps > 0 and not pause:
            pause = step / self.throttle_bps
        for i in range(0, len(payload), step):
            chunk = payload[i:i + step]
            last = i + step >= len(payload)
            if last:
                self._leave(h)
            with self._lock:  # counted before it is sent: final when the client has it
                route.bytes_sent += len(chunk)
            h.wfile.write(chunk)
            if pause and not last:
                h.wfile.flush()
                time.sleep(pause)

    def _status(self, h: _Handler, code: int, headers: dict[str, str] | None = None) -> None:
        body = f"<html><body>{code}</body></html>".encode()
        h.send_response(code)
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.send_header("Content-Type", "text/html")
        h.send_header("Content-Length", str(len(body)))
        if h.command == "HEAD":
            self._leave(h)  # the headers are the whole answer
            h.end_headers()
            return
        h.end_headers()
        self._leave(h)  # before the last bytes, as for a body (see _leave)
        h.wfile.write(body)
