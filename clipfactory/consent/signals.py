"""Reservations in HTTP headers, HTML pages and ``/.well-known/tdmrep.json``: pure parsing.

- ``X-Robots-Tag`` (and ``<meta name="robots">``): the ``noai`` and ``noimageai`` directives,
  either unscoped or scoped to the product token (``X-Robots-Tag: clipfactory: noai``);
  directives scoped to another crawler do not apply to us.
- TDMRep (W3C TDM Reservation Protocol): the ``tdm-reservation: 1`` header, the
  ``<meta name="tdm-reservation" content="1">`` tag, and the rules of the site's
  ``/.well-known/tdmrep.json`` (an array of ``{"location", "tdm-reservation", "tdm-policy"}``;
  locations are path patterns with ``*`` and a final ``$``; the first matching rule applies).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urlsplit

from clipfactory.consent.robots import wildcard_regex

__all__ = ["PageMeta", "TdmRule", "match_tdmrep", "parse_page", "parse_tdmrep",
           "robots_tag_directives"]

AI_DIRECTIVES = ("noai", "noimageai")
_KNOWN = {"all", "none", "noindex", "nofollow", "noarchive", "nosnippet", "notranslate",
          "noimageindex", "unavailable_after", "max-snippet", "max-image-preview",
          "max-video-preview", "indexifembedded", "noai", "noimageai"}


_PRODUCT_TOKEN = re.compile(r"[a-z0-9_.*-]+")


def robots_tag_directives(values: Iterable[str], token: str) -> list[tuple[str, str]]:
    """(directive, the header value it came from) of the AI directives that apply to
    ``token`` in ``X-Robots-Tag`` values (each value may be a comma-separated list, optionally
    scoped ``bot: a, b``)."""
    token = token.lower()
    found: list[tuple[str, str]] = []
    for value in values:
        scope: str | None = None
        for part in value.split(","):
            part = part.strip().lower()
            if ":" in part:
                head, rest = (s.strip() for s in part.split(":", 1))
                # "googlebot: noindex" scopes what follows; a head that is no product token
                # is not a scope ("25-Jun-27 15:00:00 PST", the rest of an RFC 850 date
                # whose comma split `unavailable_after: Friday, 25-Jun-27 ...`)
                if head not in _KNOWN and _PRODUCT_TOKEN.fullmatch(head):
                    scope, part = head, rest
            if part in AI_DIRECTIVES and scope in (None, token, "*"):
                found.append((part, value.strip()))
    return found


@dataclass(frozen=True)
class PageMeta:
    """What an HTML page says about AI use in its ``<meta>`` tags."""

    robots: tuple[str, ...] = ()  # contents of <meta name="robots"> and name=<token>
    tdm_reservation: str | None = None
    tdm_policy: str | None = None


class _MetaParser(HTMLParser):
    def __init__(self, token: str) -> None:
        super().__init__(convert_charrefs=True)
        self.token = token
        self.robots: list[str] = []
        self.tdm: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag != "meta":
            return
        a = {k.lower(): (v or "") for k, v in attrs}
        name = a.get("name", "").strip().lower()
        if name in ("robots", self.token):
            self.robots.append(a.get("content", ""))
        elif name in ("tdm-reservation", "tdm-policy"):
            self.tdm.setdefault(name, a.get("content", "").strip())


def parse_page(html: str, token: str) -> PageMeta:
    """The robots and TDMRep ``<meta>`` tags of an HTML page (malformed HTML is tolerated)."""
    p = _MetaParser(token.lower())
    try:
        p.feed(html)
        p.close()
    except Exception:  # html.parser may raise on pathological markup
        pass
    return PageMeta(tuple(p.robots), p.tdm.get("tdm-reservation"), p.tdm.get("tdm-policy"))


@dataclass(frozen=True)
class TdmRule:
    """One rule of ``tdmrep.json``."""

    location: str
    reservation: int
    policy: str | None
    index: int  # position in the array, for the evidence

    def matches(self, path: str) -> bool:
        loc = self.location if self.location.startswith("/") else "/" + self.location
        anchored = loc.endswith("$")
        return wildcard_regex(loc[:-1] if anchored else loc, anchored).match(path) is not None


def parse_tdmrep(text: str) -> list[TdmRule]:
    """The rules of a ``tdmrep.json`` body; ``ValueError`` when it is not such a file."""
    data: Any = json.loads(text.removeprefix("\ufeff"))  # a byte order mark is not JSON
    if not isinstance(data, list):
        raise ValueError("tdmrep.json is not a JSON array")
    rules = []
    for i, entry in enumerate(data):
        if not isinstance(entry, dict) or not isinstance(entry.get("location"), str):
            continue
        try:
            reservation = int(entry.get("tdm-reservation", 0))
        except (TypeError, ValueError):
            continue
        policy = entry.get("tdm-policy")
        rules.append(TdmRule(entry["location"], reservation,
                             policy if isinstance(policy, str) else None, i))
    return rules


def match_tdmrep(rules: list[TdmRule], url: str) -> TdmRule | None:
    """The first rule whose location matches ``url``'s path, if any."""
    parts = urlsplit(url)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    for rule in rules:
        if rule.matches(path):
            return rule
    return None
