"""What a site says about AI training for one URL: robots.txt, tdmrep.json, headers, pages.

:class:`ConsentChecker` finds the signals and returns them as :class:`Evidence`; it decides
nothing (whether a signal refuses an item is the caller's mode, ``enforce`` or ``record``). Site
files are fetched through the ``get`` callable it is given (the fetcher's guarded opener, so a
private address is refused there too) and cached per origin for the life of the checker, which
is one run. It is thread-safe: one origin's files are fetched once even when several download
threads ask at the same time.

robots.txt (RFC 9309): a 2xx body is parsed; a 4xx (404 included) means no rules, everything
allowed; a 5xx means everything is disallowed for now, reported as the retryable signal
``robots_unavailable``; no answer at all (a host that is down) is ``robots_unreachable``, which
the gate reports as the connection error it is. A ``tdmrep.json`` that is missing, unreadable or
malformed means no reservation from that file (headers and pages can still reserve).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import urlsplit

from clipfactory.consent.robots import Robots, parse_robots
from clipfactory.consent.signals import (
    TdmRule,
    match_tdmrep,
    parse_page,
    parse_tdmrep,
    robots_tag_directives,
)

__all__ = ["REFUSALS", "TOKEN", "ConsentChecker", "Evidence", "Response"]

TOKEN = "clipfactory"  # the product token robots.txt groups and scoped directives name
REFUSALS = ("robots_disallowed", "robots_unavailable", "noai", "noimageai", "tdm_reservation")


@dataclass(frozen=True)
class Response:
    """What ``get`` returns: the status (None when no answer came), headers, body, error."""

    status: int | None
    headers: Mapping[str, str] | None = None
    body: bytes = b""
    error: str = ""


@dataclass(frozen=True)
class Evidence:
    """One signal seen: which (``signal``), about what (``url``), where it was said
    (``where``: the robots.txt or tdmrep.json URL, a header name, a meta tag), what it said
    (``value``: the matching rule, the header value), and when (``seen_at``, UTC)."""

    signal: str
    url: str
    where: str
    value: str
    seen_at: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _now_iso(clock: Callable[[], float]) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(clock()))


def _origin(url: str) -> str:
    p = urlsplit(url)
    return f"{p.scheme.lower()}://{p.netloc.rsplit('@', 1)[-1].lower()}"


class ConsentChecker:
    """Signals for URLs (see the module docstring)."""

    def __init__(self, get: Callable[[str], Response], token: str = TOKEN,
                 clock: Callable[[], float] = time.time) -> None:
        self._get = get
        self.token = token.lower()
        self._clock = clock
        self._lock = threading.Lock()
        self._origin_locks: dict[str, threading.Lock] = {}
        self._robots: dict[str, tuple[Robots | None, str, str]] = {}
        self._tdm: dict[str, list[TdmRule]] = {}

    def _once(self, origin: str) -> threading.Lock:
        with self._lock:
            return self._origin_locks.setdefault(origin, threading.Lock())

    def _fetch(self, url: str) -> Response:
        try:
            return self._get(url)
        except Exception as e:  # any failure to fetch is "no answer"
            return Response(None, None, b"", f"{type(e).__name__}: {e}")

    def _robots_of(self, origin: str) -> tuple[Robots | None, str, str]:
        """(rules or None when unavailable, robots.txt URL, what happened) of an origin."""
        with self._once(origin):
            if origin not in self._robots:
                url = f"{origin}/robots.txt"
                r = self._fetch(url)
                if r.status is not None and 200 <= r.status < 300:
                    text = r.body.decode("utf-8", "replace")  # the parsers drop a BOM
                    self._robots[origin] = (parse_robots(text, self.token), url, "ok")
                elif r.status is not None and 400 <= r.status < 500:
                    self._robots[origin] = (Robots((), None), url, f"HTTP {r.status}")
                else:
                    what = f"HTTP {r.status}" if r.status is not None else r.error
                    self._robots[origin] = (None, url, what or "no answer")
            return self._robots[origin]

    def _tdm_of(self, origin: str) -> tuple[list[TdmRule], str]:
        url = f"{origin}/.well-known/tdmrep.json"
        with self._once(origin + "#tdm"):
            if origin not in self._tdm:
                r = self._fetch(url)
                rules: list[TdmRule] = []
                if r.status is not None and 200 <= r.status < 300:
                    try:
                        rules = parse_tdmrep(r.body.decode("utf-8", "replace"))
                    except ValueError:
                        rules = []
                self._tdm[origin] = rules
            return self._tdm[origin], url

    def robots(self, url: str) -> list[Evidence]:
        """robots.txt's verdict on ``url``: empty when allowed."""
        if urlsplit(url).scheme.lower() not in ("http", "https"):
            return []
        rules, robots_url, what = self._robots_of(_origin(url))
        if rules is None and what.startswith("HTTP "):
            return [Evidence("robots_unavailable", url, robots_url,
                             f"{what}: treated as disallowing everything for now",
                             _now_iso(self._clock))]
        if rules is None:  # no answer at all: the host is down or unreachable
            return [Evidence("robots_unreachable", url, robots_url, what,
                             _now_iso(self._clock))]
        allowed, rule = rules.verdict(url)
        if allowed:
            return []
        value = f"{rule.text()} (line {rule.line}, group {rules.group!r})" if rule else ""
        return [Evidence("robots_disallowed", url, robots_url, value, _now_iso(self._clock))]

    def site(self, url: str) -> list[Evidence]:
        """Everything the site says before a request: robots.txt, then tdmrep.json (only
        asked when robots.txt allows the URL; a disallowed origin is not asked anything more)."""
        found = self.robots(url)
        if found or urlsplit(url).scheme.lower() not in ("http", "https"):
            return found
        rules, tdm_url = self._tdm_of(_origin(url))
        rule = match_tdmrep(rules, url)
        if rule is not None and rule.reservation == 1:
            value = f"rule {rule.index}: location {rule.location!r}, tdm-reservation 1" + (
                f", tdm-policy {rule.policy}" if rule.policy else "")
            found.append(Evidence("tdm_reservation", url, tdm_url, value,
                                  _now_iso(self._clock)))
        return found

    def headers(self, url: str, headers: Any) -> list[Evidence]:
        """Signals in a response's headers (``X-Robots-Tag``, ``tdm-reservation``)."""
        if headers is None:
            return []
        get_all = getattr(headers, "get_all", None)
        tags = (get_all("X-Robots-Tag") if get_all else None) or (
            [headers["X-Robots-Tag"]] if headers.get("X-Robots-Tag") else [])
        now = _now_iso(self._clock)
        found = [Evidence(d, url, "X-Robots-Tag header", v, now)
                 for d, v in robots_tag_directives(tags, self.token)]
        tdm = (headers.get("tdm-reservation") or "").strip()
        if tdm == "1":
            policy = headers.get("tdm-policy")
            found.append(Evidence("tdm_reservation", url, "tdm-reservation header",
                                  "1" + (f"; tdm-policy {policy}" if policy else ""), now))
        return _unique(found)

    def page(self, url: str, html: str) -> list[Evidence]:
        """Signals in an HTML page's ``<meta>`` tags (robots, the token's own, TDMRep)."""
        meta = parse_page(html, self.token)
        now = _now_iso(self._clock)
        found = [Evidence(d, url, '<meta name="robots">', v, now)
                 for d, v in robots_tag_directives(meta.robots, self.token)]
        if (meta.tdm_reservation or "").strip() == "1":
            found.append(Evidence("tdm_reservation", url, '<meta name="tdm-reservation">',
                                  "1" + (f"; tdm-policy {meta.tdm_policy}"
                                         if meta.tdm_policy else ""), now))
        return _unique(found)


def _unique(found: list[Evidence]) -> list[Evidence]:
    seen: set[str] = set()
    out = []
    for e in found:
        if e.signal not in seen:
            seen.add(e.signal)
            out.append(e)
    return out
