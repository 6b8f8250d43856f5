"""robots.txt as RFC 9309 reads it: groups, the product token, longest match, ``*`` and ``$``.

The standard library's ``urllib.robotparser`` predates RFC 9309: it takes the first matching
rule instead of the longest, knows no ``*``/``$`` wildcards, and so answers differently from
the crawlers sites write their rules for. This module is the RFC's matching:

- a group is one or more ``user-agent`` lines followed by ``allow``/``disallow`` rules; lines
  of other kinds (``sitemap``, ``crawl-delay``) are ignored without ending a group;
- the groups whose user agent equals the product token (case-insensitive) apply, all of them
  merged; if there are none, the ``*`` groups; if there are none either, everything is allowed;
- the rule with the longest pattern that matches the path (with its query) wins, ``allow``
  over ``disallow`` on a tie; ``*`` matches any characters and a final ``$`` the end;
- an empty ``disallow`` matches nothing, and ``/robots.txt`` itself is always allowed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

__all__ = ["Robots", "RobotsRule", "parse_robots", "wildcard_regex"]

MAX_BYTES = 500 * 1024  # RFC 9309: a parsing limit of at least 500 KiB


@dataclass(frozen=True)
class RobotsRule:
    """One ``allow``/``disallow`` line of the group that applies."""

    allow: bool
    pattern: str
    line: int  # 1-based line number in the file, for the evidence

    def text(self) -> str:
        return f"{'Allow' if self.allow else 'Disallow'}: {self.pattern}"

    def matches(self, path: str) -> bool:
        anchored = self.pattern.endswith("$")
        body = self.pattern[:-1] if anchored else self.pattern
        return wildcard_regex(_norm(body), anchored).match(path) is not None


_CACHE: dict[tuple[str, bool], re.Pattern[str]] = {}


def wildcard_regex(body: str, anchored: bool) -> re.Pattern[str]:
    """A path pattern as robots.txt and TDMRep write them: ``*`` matches any characters, the
    rest literally, matched from the start; ``anchored`` (a final ``$``) to the end. Cached."""
    rx = _CACHE.get((body, anchored))
    if rx is None:
        rx = re.compile("".join(".*" if ch == "*" else re.escape(ch) for ch in body)
                        + ("$" if anchored else ""), re.DOTALL)
        if len(_CACHE) < 4096:
            _CACHE[(body, anchored)] = rx
    return rx


def _norm(path: str) -> str:
    """Compare decoded octets, so ``/a%20b`` and ``/a b`` are one path (``%2F`` stays)."""
    return unquote(path.replace("%2F", "%252F").replace("%2f", "%252f"))


@dataclass(frozen=True)
class Robots:
    """The rules that apply to one product token, and which group they came from."""

    rules: tuple[RobotsRule, ...]
    group: str | None  # the token, "*", or None when no group applied

    def verdict(self, url: str) -> tuple[bool, RobotsRule | None]:
        """(allowed, the deciding rule or None) for ``url`` (its path and query)."""
        parts = urlsplit(url)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        if parts.path == "/robots.txt":
            return True, None
        path = _norm(path)
        best: RobotsRule | None = None
        for rule in self.rules:
            if not rule.pattern or not rule.matches(path):
                continue
            if best is None or len(rule.pattern) > len(best.pattern) or (
                    len(rule.pattern) == len(best.pattern) and rule.allow and not best.allow):
                best = rule
        return (best is None or best.allow), best


def parse_robots(text: str, token: str) -> Robots:
    """The rules of ``text`` (a robots.txt body) that apply to product token ``token``."""
    token = token.lower()
    # a byte order mark before the first line hid its `User-agent`, and with it the group's
    # rules: nothing was disallowed (Google's parser skips it too)
    text = text.removeprefix("\ufeff")
    groups: list[tuple[list[str], list[RobotsRule]]] = []
    in_agents = False
    for number, raw in enumerate(text[:MAX_BYTES].splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if ":" not in line:
            continue
        key, value = (s.strip() for s in line.split(":", 1))
        key = key.lower()
        if key == "user-agent":
            if not in_agents:
                groups.append(([], []))
                in_agents = True
            groups[-1][0].append(value.lower())
        elif key in ("allow", "disallow"):
            in_agents = False
            if groups:
                groups[-1][1].append(RobotsRule(key == "allow", value, number))
    for wanted in (token, "*"):
        rules = [r for agents, rs in groups if wanted in agents for r in rs]
        if any(wanted in agents for agents, _ in groups):
            return Robots(tuple(rules), wanted)
    return Robots((), None)
