"""http(s) sources: stream to ``dest/.partial`` with Range resume, a size limit, content-type
and magic-byte checks and a SHA-256 computed on the way.

One call is one attempt. A transfer that breaks off leaves its partial file (and the ETag or
Last-Modified it started from) so that the next attempt asks for the rest with ``Range`` and
``If-Range``; a server that ignores the range, or whose file changed, sends the whole body and
the partial file is started over. Nothing reaches its final name until it is complete and,
when the manifest gives one, its checksum matches.
"""

from __future__ import annotations

import base64
import contextlib
import email.utils
import http.client
import os
import socket
import time
import urllib.error
import urllib.request
from http.cookiejar import MozillaCookieJar
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from clipfactory.config import FetchConfig
from clipfactory.fetch.base import (
    Fetcher,
    FetchError,
    FetchResult,
    discard_partial,
    partial_paths,
    read_partial_meta,
    url_key,
    write_partial_meta,
)
from clipfactory.fetch.gate import FetchGate, private_address_error
from clipfactory.fetch.netguard import private_address_in
from clipfactory.fetch.sniff import (
    SNIFF_BYTES,
    check_content_type,
    hash_and_head,
    sniff,
    video_extension,
)

__all__ = ["HttpFetcher", "parse_retry_after", "sendable_url"]

_CHUNK = 256 * 1024
_NETWORK_ERRORS = (http.client.HTTPException, ConnectionError, TimeoutError, socket.timeout,
                   OSError)


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


# An HLS/DASH playlist lists the segments that hold its video: yt-dlp assembles them
_MANIFEST_HINT = ": an HLS/DASH playlist (yt-dlp fetches the video it lists)"


def _basic_auth(url: str) -> tuple[str, str | None]:
    """``url`` without its ``user:password@``, and the Basic ``Authorization`` value those
    make (urllib would take them for part of the host name)."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url, None
    userinfo, _, host = parts.netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    token = base64.b64encode(f"{unquote(user)}:{unquote(password)}".encode()).decode("ascii")
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment)), \
        f"Basic {token}"


# what a URL may hold as it is (RFC 3986 reserved and unreserved characters, and ``%`` of an
# escape already made); anything else is percent-encoded as UTF-8, as a browser does
_URL_SAFE = "!#$%&'()*+,/:;=?@[]~-._"


def sendable_url(url: str) -> str:
    """``url`` as an HTTP request line may carry it: a space, a non-ASCII letter or a control
    character in the path or query percent-encoded, a non-ASCII host name in IDNA. A URL
    typed or pasted into a spreadsheet (``https://host/vidéo 1.mp4``) failed with
    ``InvalidURL``, retried as a connection error."""
    if url.isascii() and not any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url):
        return url
    parts = urlsplit(url)
    netloc = parts.netloc
    if not netloc.isascii():
        userinfo, at, hostport = netloc.rpartition("@")
        host, colon, port = hostport.rpartition(":") if hostport.rfind(":") > \
            hostport.rfind("]") else (hostport, "", "")
        with contextlib.suppress(UnicodeError):  # else left: the request says what is wrong
            host = host.encode("idna").decode("ascii")
        netloc = f"{userinfo}{at}{host}{colon}{port}"
    path, query, fragment = (quote(x, safe=_URL_SAFE) for x in
                             (parts.path, parts.query, parts.fragment))
    return urlunsplit((parts.scheme, netloc, path, query, fragment))


def _error_for_status(code: int, headers: Any, url: str) -> FetchError:
    retry_after = parse_retry_after(headers.get("Retry-After") if headers else None)
    detail = f"HTTP {code} from {urlsplit(url).netloc}"
    if code == 429 or code == 408 or code >= 500:
        return FetchError(f"http_{code}", detail, retryable=True, retry_after=retry_after,
                          status=code)
    if code == 403:  # often a block: worth a later retry, never a hammering
        return FetchError("http_403", detail, retryable=True, retry_after=retry_after,
                          status=code)
    return FetchError(f"http_{code}", detail, retryable=False, status=code)


class HttpFetcher:
    """Fetch http(s) URLs (see the module docstring). Thread-safe: no shared mutable state
    except the cookie jar, which the standard library locks, and the gate's caches.

    Every attempt passes the :class:`~clipfactory.fetch.gate.FetchGate` first (private
    addresses, robots.txt, tdmrep.json, then each redirect hop and the response headers)."""

    def __init__(self, cfg: FetchConfig | None = None, gate: FetchGate | None = None,
                 streams: Fetcher | None = None) -> None:
        self.cfg = cfg or FetchConfig()
        self.gate = gate or FetchGate(self.cfg)
        self.streams = streams  # who fetches the video an HLS/DASH playlist lists (yt-dlp)
        # http(s) only: a redirect to ftp:// or file:// is refused, not followed
        handlers: list[urllib.request.BaseHandler] = []
        if self.cfg.cookies_file:  # only cookies the user handed us, never a browser's
            jar = MozillaCookieJar(self.cfg.cookies_file)
            jar.load(ignore_discard=True, ignore_expires=True)
            for cookie in jar:  # browsers export session cookies with expiry 0
                if cookie.expires == 0:
                    cookie.expires, cookie.discard = None, True
            handlers.append(urllib.request.HTTPCookieProcessor(jar))
        self._opener = self.gate.build_opener(*handlers)

    def fetch(self, url: str, dest_dir: Path, max_bytes: int,
              expected_sha256: str | None = None) -> FetchResult:
        """One attempt at ``url`` (module docstring); raises :class:`FetchError`. An HLS or
        DASH playlist (by its Content-Type or first bytes) goes to ``streams``."""
        try:
            return self._fetch(url, dest_dir, max_bytes, expected_sha256)
        except FetchError as e:
            if e.reason != "stream_manifest" or self.streams is None:
                raise
        return self.streams.fetch(url, dest_dir, max_bytes, expected_sha256)

    def _fetch(self, url: str, dest_dir: Path, max_bytes: int,
               expected_sha256: str | None) -> FetchResult:
        dest_dir = Path(dest_dir)
        sendable = sendable_url(url)
        parts = urlsplit(sendable)
        try:  # what no later attempt can mend
            _ = parts.port  # a port that is not a number raises
        except ValueError as e:
            raise FetchError("bad_url", f"{url!r}: {e}") from None
        if not parts.hostname or any(c.isspace() or not c.isprintable() for c in parts.hostname):
            raise FetchError("bad_url", f"{url!r}: no usable host name")
        self.gate.start()
        self.gate.before(sendable)  # before any request of the URL itself
        key = url_key(url)
        part, meta_path = partial_paths(dest_dir, url)
        meta = read_partial_meta(meta_path)
        offset = part.stat().st_size if part.exists() and meta else 0
        headers = {"User-Agent": self.cfg.user_agent, "Accept-Encoding": "identity",
                   "Accept": "video/*, application/octet-stream;q=0.9, */*;q=0.5"}
        if offset:
            headers["Range"] = f"bytes={offset}-"
            if meta.get("validator"):
                headers["If-Range"] = meta["validator"]
        target, auth = _basic_auth(sendable)
        request = urllib.request.Request(target, headers=headers)
        if auth:  # the user's own login, for this host only: never sent on to a redirect
            request.add_unredirected_header("Authorization", auth)
        try:
            resp = self._opener.open(request, timeout=self.cfg.timeout_s)
        except urllib.error.HTTPError as e:
            with e:
                if e.code == 416 and offset and _complete_total(e.headers) == offset:
                    return self._finish(url, part, meta_path, dest_dir, key, meta,
                                        expected_sha256, None)
                if e.code == 416:
                    discard_partial(part, meta_path)
                raise _error_for_status(e.code, e.headers, target) from None
        except _NETWORK_ERRORS as e:
            hit = private_address_in(e)
            if hit is not None:  # a redirect hop, or a name whose answer changed
                raise private_address_error(hit) from None
            raise FetchError("connection_error", f"{type(e).__name__}: {e}",
                             retryable=True) from None
        with resp:
            self.gate.response(resp.url, resp.headers)  # before a byte of the body
            return self._receive(url, resp, part, meta_path, dest_dir, key, offset, max_bytes,
                                 expected_sha256)

    def _receive(self, url: str, resp: Any, part: Path, meta_path: Path, dest_dir: Path,
                 key: str, offset: int, max_bytes: int,
                 expected_sha256: str | None) -> FetchResult:
        ctype = resp.headers.get("Content-Type")
        bad = check_content_type(ctype)
        if bad:
            discard_partial(part, meta_path)
            raise FetchError(bad, f"Content-Type {ctype!r} from {resp.url}"
                             + (_MANIFEST_HINT if bad == "stream_manifest" else ""))
        if offset and (resp.status != 206 or _range_start(resp.headers) != offset):
            offset = 0  # the server ignored the range or the file changed: start over
        length = resp.headers.get("Content-Length")
        body = int(length) if length and length.isdigit() else None
        total = _complete_total(resp.headers) if offset else body
        if total is not None and total > max_bytes:
            discard_partial(part, meta_path)
            raise FetchError("too_large", f"{total} bytes announced, limit {max_bytes}")
        meta = {"validator": resp.headers.get("ETag") or resp.headers.get("Last-Modified"),
                "total": total, "content_type": ctype, "final_url": resp.url,
                "last_modified": resp.headers.get("Last-Modified"),
                "etag": resp.headers.get("ETag")}
        if not offset:
            part.unlink(missing_ok=True)
            write_partial_meta(meta_path, meta)
        got = self._stream(resp, part, offset, max_bytes, body, meta_path)
        if body is not None and got < body:
            raise FetchError("connection_dropped", f"got {got} of {body} bytes",
                             retryable=True, progress=got)
        if offset and body is None and total is not None and offset + got < total:
            # a resumed answer without a Content-Length, cut short: its Content-Range said
            # how long the file is (it was renamed into place, a truncated video)
            raise FetchError("connection_dropped", f"got {offset + got} of {total} bytes",
                             retryable=True, progress=got)
        if got == 0:  # no first bytes were checked: never a complete download
            if not offset:
                discard_partial(part, meta_path)
            if body == 0 and not offset:  # the server means it: an empty file is no video
                raise FetchError("not_video_content",
                                 f"an empty body (Content-Length: 0) from {resp.url}")
            # without a Content-Length, no byte before the close is a connection that dropped
            raise FetchError("connection_dropped", "closed before the first byte of the body",
                             retryable=True)
        return self._finish(url, part, meta_path, dest_dir, key, meta, expected_sha256, ctype)

    def _stream(self, resp: Any, part: Path, offset: int, max_bytes: int, body: int | None,
                meta_path: Path) -> int:
        """Append the body to ``part``; the first bytes of a new file are sniffed first."""
        got = 0
        head = b"" if offset == 0 else None
        min_bps, window = self.cfg.min_speed_bps, self.cfg.min_speed_window_s
        w_start, w_bytes = time.monotonic(), 0
        with part.open("ab") as fh:
            while True:
                try:
                    chunk = resp.read1(_CHUNK)
                except _NETWORK_ERRORS as e:
                    # a head not yet sniffed is dropped: the next attempt starts over
                    reason = "timeout" if isinstance(e, (TimeoutError, socket.timeout)) \
                        else "connection_dropped"
                    raise FetchError(reason, f"after {got} bytes: {type(e).__name__}",
                                     retryable=True, progress=got) from None
                if not chunk:
                    break
                if offset + got + len(chunk) + len(head or b"") > max_bytes:
                    discard_partial(part, meta_path)
                    raise FetchError("too_large", f"body passed the limit of {max_bytes} bytes")
                if head is not None:
                    head += chunk
                    if len(head) < SNIFF_BYTES and (body is None or len(head) < body):
                        continue
                    self._check_head(head, part, meta_path)
                    chunk, head = head, None
                fh.write(chunk)
                got += len(chunk)
                w_bytes += len(chunk)
                now = time.monotonic()
                if min_bps > 0 and now - w_start >= window:
                    if w_bytes / (now - w_start) < min_bps:
                        raise FetchError("too_slow", f"{w_bytes / (now - w_start):.0f} B/s "
                                         f"over {window:.1f} s, minimum {min_bps:.0f}",
                                         retryable=True, progress=got)
                    w_start, w_bytes = now, 0
            if head:
                self._check_head(head, part, meta_path)
                fh.write(head)
                got += len(head)
        return got

    @staticmethod
    def _check_head(head: bytes, part: Path, meta_path: Path) -> None:
        kind = sniff(head)
        if kind == "manifest":
            discard_partial(part, meta_path)
            raise FetchError("stream_manifest", f"first bytes {head[:16]!r}" + _MANIFEST_HINT)
        if kind is None or kind == "html":
            discard_partial(part, meta_path)
            reason = "html_instead_of_video" if kind == "html" else "not_video_content"
            raise FetchError(reason, f"first bytes {head[:16]!r} are not a video container")

    def _finish(self, url: str, part: Path, meta_path: Path, dest_dir: Path, key: str,
                meta: dict[str, Any], expected_sha256: str | None,
                ctype: str | None) -> FetchResult:
        digest, head = hash_and_head(part)
        size = part.stat().st_size
        if expected_sha256 and digest != expected_sha256.lower():
            discard_partial(part, meta_path)
            raise FetchError("checksum_mismatch", f"sha256 {digest} != {expected_sha256}")
        final = dest_dir / f"{key}{video_extension(sniff(head), urlsplit(url).path)}"
        os.replace(part, final)
        meta_path.unlink(missing_ok=True)
        prov = {"fetcher": "http", "url": url, "final_url": meta.get("final_url") or url,
                "content_type": ctype or meta.get("content_type"), "etag": meta.get("etag"),
                "last_modified": meta.get("last_modified"), "bytes": size,
                "fetched_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "consent": self.gate.evidence() or None}
        return FetchResult(str(final), size, digest, prov["content_type"],
                           {k: v for k, v in prov.items() if v is not None})


def _range_start(headers: Any) -> int | None:
    value = headers.get("Content-Range") or ""
    try:
        return int(value.split()[1].split("-")[0])
    except (IndexError, ValueError):
        return None


def _complete_total(headers: Any) -> int | None:
    value = headers.get("Content-Range") or ""
    total = value.rsplit("/", 1)[-1] if "/" in value else ""
    return int(total) if total.isdigit() else None
