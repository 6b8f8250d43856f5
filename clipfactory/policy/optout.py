"""Opt-out lists: which sources their creators want kept out of (or taken out of) a dataset.

An opt-out file holds one rule per line; blank lines and ``#`` comments are ignored:

- ``https://...``: a source URL (matched against the item's ``source_url`` and ``source``;
  http or https, host case, ``www.``/``m.``, a trailing ``/`` and the fragment do not matter, and
  YouTube watch, short, embed and youtu.be links of one video are the same).
- ``id:ID`` or a bare word: a manifest id or video id.
- ``channel:NAME``: a channel, uploader or author (the manifest's ``channel``, ``channel_id``,
  ``channel_url``, ``uploader``, ``uploader_id``, ``uploader_url`` or the attribution), case
  and a leading ``@`` ignored.
- ``domain:example.com``: every URL on that host or its subdomains.
- ``regex:PATTERN``: a Python regular expression searched in the source, URL, ids,
  attribution and channel fields.
- ``sha256:HEX``: the source file's content hash.
- ``/abs/path`` or ``path:P``: a local source path.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from clipfactory.records import SourceItem
from clipfactory.redact import public_url

__all__ = ["OptOutList", "Rule", "SourceFacts", "canonical_url", "facts_of_item",
           "facts_of_row", "parse_rule"]

_CHANNEL_KEYS = ("channel", "channel_id", "channel_url", "uploader", "uploader_id",
                 "uploader_url", "author")
_YT_HOSTS = ("youtube.com", "youtu.be", "youtube-nocookie.com")
_YT_PATH = re.compile(r"^/(?:shorts|embed|live|v)/([A-Za-z0-9_-]{6,})")


def canonical_url(url: str) -> str:
    """A comparable form of a URL (see the module docstring); non-URLs are returned stripped."""
    url = url.strip()
    if "://" not in url:
        return url
    try:
        parts = urlsplit(url)
        port = f":{parts.port}" if parts.port else ""  # raises on a port out of range
    except ValueError:  # not a URL one can split (`https://[::1/x`): compared as written
        return url
    host = (parts.hostname or "").lower()
    for prefix in ("www.", "m."):
        host = host.removeprefix(prefix)
    if host in _YT_HOSTS:
        vid = None
        if host == "youtu.be":
            vid = parts.path.strip("/").split("/")[0] or None
        elif parts.path == "/watch":
            vid = (parse_qs(parts.query).get("v") or [None])[0]
        elif m := _YT_PATH.match(parts.path):
            vid = m.group(1)
        if vid:
            return f"youtube:{vid}"
    query = f"?{parts.query}" if parts.query else ""
    scheme = "https" if parts.scheme.lower() == "http" else parts.scheme.lower()
    return f"{scheme}://{host}{port}{parts.path.rstrip('/')}{query}"


def _host(url: str | None) -> str | None:
    if not url or "://" not in url:
        return None
    try:
        host = (urlsplit(url.strip()).hostname or "").lower()
    except ValueError:  # `https://[::1/x`
        return None
    return host.removeprefix("www.") or None


def _name(text: str) -> str:
    text = text.strip().casefold()
    if "://" in text:
        return canonical_url(text).casefold()
    return text.lstrip("@")


@dataclass(frozen=True)
class SourceFacts:
    """What a rule can match on, for one input."""

    source: str
    source_url: str | None = None
    ids: tuple[str, ...] = ()
    attribution: str | None = None
    channels: tuple[str, ...] = ()
    sha256: str | None = None

    def texts(self) -> list[str]:
        """Every field a regex rule searches."""
        return [t for t in (self.source, self.source_url, *self.ids, self.attribution,
                            *self.channels) if t]


def _channels(extra: Mapping[str, Any]) -> tuple[str, ...]:
    return tuple(str(extra[k]) for k in _CHANNEL_KEYS if extra.get(k) not in (None, ""))


def facts_of_item(item: SourceItem, sha256: str | None = None,
                  video_id: str | None = None) -> SourceFacts:
    """Facts of a manifest or folder item (before or after it was fetched)."""
    ids = tuple(dict.fromkeys(i for i in (item.id, video_id) if i))
    return SourceFacts(item.source, item.source_url, ids, item.attribution,
                       _channels(item.extra), sha256)


def facts_of_row(row: Mapping[str, Any]) -> SourceFacts:
    """Facts of a ledger ``videos`` row (a ``sqlite3.Row`` or a dict with its columns)."""
    import json

    extra = json.loads(row["extra"] or "{}") if row["extra"] else {}
    ids = tuple(dict.fromkeys(i for i in (row["manifest_id"], row["video_id"]) if i))
    return SourceFacts(row["source"], row["source_url"], ids, row["attribution"],
                       _channels(extra), row["source_sha256"])


_TRAILING_COMMENT = re.compile(r"\s+#")


@dataclass(frozen=True)
class Rule:
    """One opt-out rule: ``kind`` (url, id, channel, domain, regex, sha256, path), its
    normalised ``value`` and the ``text`` as written (used in reasons and audit records)."""

    kind: str
    value: str
    text: str = field(compare=False)
    pattern: re.Pattern[str] | None = field(default=None, compare=False, repr=False)

    @property
    def canonical(self) -> str:
        """``kind:value``: parses back to the same rule anywhere (paths are absolute)."""
        return f"{self.kind}:{self.value}"


def parse_rule(line: str) -> Rule | None:
    """Parse one line; ``None`` for blanks and comments, ``ValueError`` for a bad rule. A
    comment after a rule starts at a ``#`` with a space before it (``id:a1  # a request``);
    a ``#`` with none (a URL's fragment, ``id:vid#2``) is part of the rule."""
    text = _TRAILING_COMMENT.split(line.strip(), maxsplit=1)[0]
    if not text or text.startswith("#"):
        return None
    prefix, sep, rest = text.partition(":")
    kind = prefix.lower() if sep and "://" not in text[: len(prefix) + 3] else ""
    rest = rest.strip()
    if kind in ("regex", "re"):
        try:
            return Rule("regex", rest, text, re.compile(rest))
        except re.error as e:
            raise ValueError(f"invalid regex in opt-out rule {text!r}: {e}") from e
    if kind == "channel" and rest:
        return Rule("channel", _name(rest), text)
    if kind == "domain" and rest:
        host = _host(rest) or rest.lower().removeprefix("*.").removeprefix("www.").strip("/")
        return Rule("domain", host, text)
    if kind == "id" and rest:
        return Rule("id", rest, text)
    if kind == "sha256" and re.fullmatch(r"[0-9a-fA-F]{64}", rest):
        return Rule("sha256", rest.lower(), text)
    if kind == "url" and rest:
        return Rule("url", canonical_url(rest), text)
    if kind == "path" and rest:
        return Rule("path", str(Path(rest).expanduser().resolve()), text)
    if "://" in text:
        return Rule("url", canonical_url(text), text)
    if text.startswith(("/", "./", "../", "~")):
        return Rule("path", str(Path(text).expanduser().resolve()), text)
    if kind in ("channel", "domain", "id", "sha256", "url", "path"):
        raise ValueError(f"invalid opt-out rule {text!r}")
    if "/" in text or "\\" in text:  # never an id (ids hold no separator)
        if "." in text.split("/", 1)[0]:  # youtube.com/watch?v=..., www.example.org/v/1
            return Rule("url", canonical_url(f"https://{text}"), text)
        raise ValueError(f"opt-out rule {text!r} is no id (ids hold no '/'), no URL and no "
                         "path: write a path as /abs/path, ./rel/path or path:rel/path")
    return Rule("id", text, text)


class OptOutList:
    """A parsed set of rules with fast lookup for the exact kinds."""

    def __init__(self, rules: Iterable[Rule] = ()) -> None:
        self.rules: list[Rule] = list(dict.fromkeys(rules))
        self._exact: dict[tuple[str, str], Rule] = {}
        self._domains: dict[str, Rule] = {}
        self._regex: list[Rule] = []
        for r in self.rules:
            if r.kind == "regex":
                self._regex.append(r)
            elif r.kind == "domain":
                self._domains.setdefault(r.value, r)
            else:
                self._exact.setdefault((r.kind, r.value), r)

    @classmethod
    def parse(cls, lines: Iterable[str], where: str = "opt-out list") -> OptOutList:
        """Rules from lines of text; a bad line raises ``ValueError`` naming its number."""
        rules = []
        for n, line in enumerate(lines, 1):
            try:
                rule = parse_rule(line)
            except ValueError as e:
                raise ValueError(f"{where} line {n}: {e}") from e
            if rule is not None:
                rules.append(rule)
        return cls(rules)

    @classmethod
    def from_file(cls, path: str | Path) -> OptOutList:
        """Rules from an opt-out file."""
        p = Path(path)
        return cls.parse(p.read_text(encoding="utf-8").splitlines(), str(p))

    def __len__(self) -> int:
        return len(self.rules)

    def __add__(self, other: OptOutList) -> OptOutList:
        return OptOutList([*self.rules, *other.rules])

    def match(self, facts: SourceFacts) -> Rule | None:
        """The first rule that matches the source, or ``None``."""
        if not self.rules:
            return None
        ex = self._exact
        # a URL as the dataset publishes it (a signed URL's secrets REDACTED) names it too
        urls = {canonical_url(v) for u in (facts.source_url, facts.source) if u and "://" in u
                for v in (u, public_url(u) or u)}
        candidates = [("url", u) for u in urls]
        candidates += [("id", i) for i in facts.ids]
        candidates += [("path", facts.source)]
        if facts.sha256:
            candidates.append(("sha256", facts.sha256.lower()))
        candidates += [("channel", _name(c)) for c in (*facts.channels, facts.attribution) if c]
        for key in candidates:
            if key in ex:
                return ex[key]
        for url in (facts.source_url, facts.source):
            host = _host(url)
            while host:
                if host in self._domains:
                    return self._domains[host]
                host = host.partition(".")[2] if "." in host else None
        texts = facts.texts()
        for r in self._regex:
            if r.pattern is not None and any(r.pattern.search(t) for t in texts):
                return r
        return None
