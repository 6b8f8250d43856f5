"""The gate every manifest URL passes before a media byte is kept: safety, then consent.

Per URL, in this order:

1. the host must not resolve to a private address (:mod:`clipfactory.fetch.netguard`), unless
   ``fetch.allow_private_network``: refused as ``fetch/private_address``;
2. robots.txt must allow the path, before any HEAD or GET of it; then the site's
   ``/.well-known/tdmrep.json`` must not reserve it (:mod:`clipfactory.consent.checker`);
3. every redirect hop goes through 1 and 2 again;
4. the response's ``X-Robots-Tag`` and ``tdm-reservation`` headers are read before the body
   (and a page's ``<meta>`` tags, for pages that yt-dlp reads).

``policy.consent`` decides what a signal does: ``enforce`` (the default) refuses the item as
``consent/<signal>`` (a :class:`FetchError` with ``stage="consent"`` and the evidence),
``record`` lets it through and returns the evidence, which the fetchers put into the item's
provenance (``consent``). Safety is not a consent signal: ``record`` does not relax it.
"""

from __future__ import annotations

import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any, Literal
from urllib.parse import urlsplit

from clipfactory.config import FetchConfig
from clipfactory.consent.checker import REFUSALS, ConsentChecker, Evidence, Response
from clipfactory.fetch.base import FetchError
from clipfactory.fetch.netguard import (
    GuardedHTTPHandler,
    GuardedHTTPSHandler,
    PrivateAddressError,
    check_url_host,
    private_address_in,
)

__all__ = ["ConsentMode", "FetchGate", "private_address_error"]

ConsentMode = Literal["enforce", "record"]
_SITE_FILE_BYTES = 512 * 1024
_PAGE_BYTES = 1 << 20


def private_address_error(e: PrivateAddressError) -> FetchError:
    """The item's failure for a refused address."""
    return FetchError("private_address", str(e))


class _CheckedRedirects(urllib.request.HTTPRedirectHandler):
    """Follows a redirect only once the gate has passed its target; keeps the method (urllib
    turns a HEAD into a GET)."""

    def __init__(self, gate: FetchGate) -> None:
        self.gate = gate

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[no-untyped-def]
        self.gate.before(newurl)  # a redirect target: the same checks as a manifest URL
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None:
            new.method = req.get_method()
        return new


class FetchGate:
    """Safety and consent for one run's fetches (module docstring). Thread-safe."""

    def __init__(self, cfg: FetchConfig | None = None, mode: ConsentMode = "enforce", *,
                 throttle: Callable[[str], None] | None = None) -> None:
        self.cfg = cfg or FetchConfig()
        self.mode = mode
        self._throttle = throttle  # called with the host before each site-file request
        self._local = threading.local()
        self._site_opener = self.build_opener(redirects=False)
        self.opener = self.build_opener()  # plain requests whose redirects pass the gate
        self.consent = ConsentChecker(self._get_site_file)

    # -- building blocks for the fetchers ----------------------------------------------------
    def handlers(self) -> list[urllib.request.BaseHandler]:
        """http/https handlers: guarded unless private networks are allowed."""
        if self.cfg.allow_private_network:
            return [urllib.request.HTTPHandler(), urllib.request.HTTPSHandler()]
        return [GuardedHTTPHandler(), GuardedHTTPSHandler()]

    def build_opener(self, *extra: urllib.request.BaseHandler,
                     redirects: bool = True) -> urllib.request.OpenerDirector:
        """An http(s)-only opener through :meth:`handlers`; its redirects pass :meth:`before`."""
        opener = urllib.request.OpenerDirector()
        for h in [urllib.request.ProxyHandler(), *self.handlers(),
                  urllib.request.HTTPDefaultErrorHandler(), urllib.request.HTTPErrorProcessor(),
                  *( [_CheckedRedirects(self)] if redirects else
                     [urllib.request.HTTPRedirectHandler()]), *extra]:
            opener.add_handler(h)
        return opener

    def _get_site_file(self, url: str) -> Response:
        if self._throttle is not None:
            self._throttle((urlsplit(url).hostname or "").lower())
        req = urllib.request.Request(url, headers={"User-Agent": self.cfg.user_agent})
        try:
            with self._site_opener.open(req, timeout=self.cfg.timeout_s) as resp:
                return Response(resp.status, resp.headers, resp.read(_SITE_FILE_BYTES))
        except urllib.error.HTTPError as e:
            with e:
                return Response(e.code, e.headers, b"")

    # -- the checks --------------------------------------------------------------------------
    def start(self) -> None:
        """Begin one fetch attempt in this thread (forgets the evidence of the last one)."""
        self._local.seen = []

    def evidence(self) -> list[dict[str, Any]]:
        """Evidence gathered by this thread's attempt so far (``record`` mode)."""
        return list(getattr(self._local, "seen", []))

    def before(self, url: str) -> None:
        """Checks 1 and 2 for ``url`` (raises :class:`FetchError` when refused)."""
        if not self.cfg.allow_private_network:
            try:
                check_url_host(url)
            except PrivateAddressError as e:
                raise private_address_error(e) from None
        self._decide(self.consent.site(url))

    def response(self, url: str, headers: Any) -> None:
        """Check 4 on a response's headers, before its body is read."""
        self._decide(self.consent.headers(url, headers))

    def page(self, url: str) -> None:
        """Read an HTML page (at most 1 MiB) for its headers and ``<meta>`` signals; used before
        yt-dlp, which reads pages itself. A page that cannot be read is yt-dlp's error to
        report, not a consent signal."""
        req = urllib.request.Request(url, headers={"User-Agent": self.cfg.user_agent})
        try:
            with self.opener.open(req, timeout=self.cfg.timeout_s) as resp:
                self.response(resp.url, resp.headers)
                ctype = (resp.headers.get("Content-Type") or "").lower()
                if "html" in ctype:
                    html = resp.read(_PAGE_BYTES).decode("utf-8", "replace")
                    self._decide(self.consent.page(resp.url, html))
        except urllib.error.HTTPError as e:
            e.close()
        except urllib.error.URLError as e:
            hit = private_address_in(e)
            if hit is not None:
                raise private_address_error(hit) from None

    def _decide(self, found: list[Evidence]) -> None:
        if not found:
            return
        down = next((e for e in found if e.signal == "robots_unreachable"), None)
        if down is not None:  # RFC 9309 says disallow; it is a dead host more than a refusal
            if self.mode == "enforce":
                raise FetchError("connection_error", f"{down.where}: {down.value}",
                                 retryable=True)
            found = [e for e in found if e is not down]
        records = [e.to_dict() for e in found]
        refusing = [e for e in found if e.signal in REFUSALS]
        if self.mode == "enforce" and refusing:
            first = refusing[0]
            raise FetchError(first.signal, f"{first.where}: {first.value} ({first.url})",
                             retryable=first.signal == "robots_unavailable",
                             stage="consent", evidence=records)
        seen = getattr(self._local, "seen", None)
        if seen is None:
            seen = self._local.seen = []
        seen.extend(r for r in records if r not in seen)
