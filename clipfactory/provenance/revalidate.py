"""``clipfactory revalidate``: do the dataset's sources still exist upstream?

Each distinct source URL of the inputs in the dataset is checked once, politely: one request
at a time, at most ``rate`` requests per second to any one host, ``429``/``503`` answers
honoured by waiting their ``Retry-After`` (capped) before a bounded number of retries. An
``http(s)`` URL gets a ``HEAD`` (a ``GET`` of one byte, ``Range: bytes=0-0``, where ``HEAD`` is
refused with 405 or 501); ``404`` and ``410`` mean gone. Video-site pages (YouTube, Vimeo, ...)
need yt-dlp to tell a live video from a removed one: with yt-dlp importable they are checked
with ``download=False``, otherwise reported as not checkable. Inputs without a URL are
skipped and reported. With ``purge`` the gone sources are taken down.
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from clipfactory import __version__
from clipfactory.fetch.http import parse_retry_after
from clipfactory.lock import holds_output_lock
from clipfactory.provenance.ingest import TAKEDOWN_RULES
from clipfactory.provenance.removal import Removal, remove_inputs
from clipfactory.provenance.takedown import open_output, refresh_outputs

__all__ = ["HostLimiter", "RevalidateReport", "SourceCheck", "check_url", "revalidate"]

_VIDEO_SITES = ("youtube.com", "youtu.be", "vimeo.com", "dailymotion.com", "twitch.tv",
                "tiktok.com", "bilibili.com", "facebook.com", "instagram.com", "x.com",
                "twitter.com")
# what yt-dlp says when a video was withdrawn; "Video unavailable" alone is not enough (it is
# also said of geo-blocked videos), and network trouble is an error, not a disappearance
_GONE_WORDS = ("removed by the uploader", "has been removed", "has been deleted",
               "account associated with this video has been terminated", "private video",
               "does not exist", "http error 404", "http error 410")


@dataclass(frozen=True)
class SourceCheck:
    """The outcome for one URL: ``ok``, ``gone``, ``error``, ``not_checkable`` or ``skipped``
    (no URL), with the HTTP status when there was one, and the inputs it covers."""

    url: str | None
    status: str
    http_status: int | None = None
    detail: str = ""
    item_keys: tuple[str, ...] = ()


class HostLimiter:
    """At most one request per ``interval_s`` to each host; ``defer`` pushes a host back."""

    def __init__(self, interval_s: float, sleep: Callable[[float], None] = time.sleep) -> None:
        self.interval_s = interval_s
        self.sleep = sleep
        self._next: dict[str, float] = {}

    def wait(self, host: str) -> None:
        now = time.monotonic()
        due = self._next.get(host, now)
        if due > now:
            self.sleep(due - now)
        self._next[host] = max(due, now) + self.interval_s

    def defer(self, host: str, seconds: float) -> None:
        self._next[host] = max(self._next.get(host, 0.0), time.monotonic() + seconds)


class _KeepMethod(urllib.request.HTTPRedirectHandler):
    """Follow redirects with the same method and headers (urllib turns HEAD into GET)."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[no-untyped-def]
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None:
            new.method = req.get_method()
        return new


_OPENER = urllib.request.build_opener(_KeepMethod)


def _request(url: str, method: str, timeout: float) -> tuple[int, str | None]:
    headers = {"User-Agent": f"clipfactory/{__version__} (source revalidation)"}
    if method == "GET":
        headers["Range"] = "bytes=0-0"
    req = urllib.request.Request(url, method=method, headers=headers)
    try:
        with _OPENER.open(req, timeout=timeout) as resp:
            return resp.status, None
    except urllib.error.HTTPError as e:
        retry = e.headers.get("Retry-After") if e.headers else None
        e.close()
        return e.code, retry


def check_url(url: str, limiter: HostLimiter, *, timeout: float = 15.0, retries: int = 3,
              max_wait_s: float = 60.0) -> tuple[str, int | None, str]:
    """(status, http status, detail) of one http(s) URL."""
    host = (urlsplit(url).hostname or "").lower()
    method = "HEAD"
    attempt = 0
    while True:
        limiter.wait(host)
        try:
            code, retry = _request(url, method, timeout)
        except (urllib.error.URLError, OSError, ValueError) as e:
            return "error", None, f"{type(e).__name__}: {getattr(e, 'reason', e)}"
        if code in (405, 501) and method == "HEAD":
            method = "GET"
            continue
        if code in (429, 503):
            attempt += 1
            if attempt > retries:
                return "error", code, f"HTTP {code} after {retries} retries; try again later"
            wait = parse_retry_after(retry)
            wait = min(max_wait_s, wait if wait is not None else 2.0 ** attempt)
            limiter.defer(host, wait)
            continue
        if code in (404, 410):
            return "gone", code, f"HTTP {code}"
        if 200 <= code < 400:
            return "ok", code, f"HTTP {code} ({method})"
        return "error", code, f"HTTP {code}"


def _check_video_site(url: str, limiter: HostLimiter) -> tuple[str, int | None, str]:
    try:
        import yt_dlp  # type: ignore[import-not-found]
    except ImportError:
        return "not_checkable", None, "video-site URL; install yt-dlp to check it"
    limiter.wait((urlsplit(url).hostname or "").lower())
    opts = {"quiet": True, "no_warnings": True, "skip_download": True, "noplaylist": True}
    try:
        with yt_dlp.YoutubeDL(opts) as ydl:
            ydl.extract_info(url, download=False, process=False)
    except Exception as e:  # yt-dlp raises DownloadError/ExtractorError with a message
        text = str(e)
        gone = any(w in text.lower() for w in _GONE_WORDS)
        return ("gone" if gone else "error"), None, text.splitlines()[0][:300] if text else ""
    return "ok", None, "available (yt-dlp)"


def _url_of(row) -> str | None:  # type: ignore[no-untyped-def]
    for u in (row["source_url"], row["source"]):
        if u and "://" in u:
            return u.strip()
    return None


@dataclass
class RevalidateReport:
    """Every check, and the removal when gone sources were purged."""

    checks: list[SourceCheck] = field(default_factory=list)
    removal: Removal | None = None

    def counts(self) -> dict[str, int]:
        return dict(Counter(c.status for c in self.checks))

    def gone(self) -> list[SourceCheck]:
        return [c for c in self.checks if c.status == "gone"]

    def render(self) -> str:
        lines = ["revalidate: " + ", ".join(f"{n} {s}" for s, n in sorted(self.counts().items()))]
        for c in self.checks:
            if c.status != "ok":
                lines.append(f"  {c.status}: {c.url or '(no url) ' + ', '.join(c.item_keys)}"
                             f" {c.detail}")
        if self.removal is not None:
            lines.append(f"purged {len(self.removal.videos)} sources, "
                         f"{len(self.removal.clips)} clips, {len(self.removal.shards)} shards "
                         "rewritten")
        return "\n".join(lines)


@holds_output_lock("revalidate")
def revalidate(out: str | Path, *, purge: bool = False, rate: float = 1.0,
               timeout: float = 15.0, retries: int = 3, max_wait_s: float = 60.0,
               reason: str = "source no longer available upstream") -> RevalidateReport:
    """Check every source in the dataset (see the module docstring)."""
    out = Path(out)
    limiter = HostLimiter(1.0 / rate if rate > 0 else 0.0)
    report = RevalidateReport()
    ledger = open_output(out)
    try:
        rows = ledger.videos("done")
        by_url: dict[str, list] = {}
        for r in rows:
            url = _url_of(r)
            if url is None:
                report.checks.append(SourceCheck(None, "skipped", None, "no source URL",
                                                 (r["item_key"],)))
            else:
                by_url.setdefault(url, []).append(r)
        for url, rs in by_url.items():
            keys = tuple(r["item_key"] for r in rs)
            host = (urlsplit(url).hostname or "").lower().removeprefix("www.")
            if any(host == s or host.endswith("." + s) for s in _VIDEO_SITES):
                status, code, detail = _check_video_site(url, limiter)
            elif url.lower().startswith(("http://", "https://")):
                status, code, detail = check_url(url, limiter, timeout=timeout,
                                                 retries=retries, max_wait_s=max_wait_s)
            else:
                status, code, detail = "not_checkable", None, "not an http(s) URL"
            report.checks.append(SourceCheck(url, status, code, detail, keys))
        ledger.event("revalidate", {"counts": report.counts(), "gone": [
            {"url": c.url, "http_status": c.http_status, "items": c.item_keys}
            for c in report.gone()]})
        gone = report.gone()
        if purge and gone:
            rows_by_key = {r["item_key"]: r for rs in by_url.values() for r in rs}
            hit = [rows_by_key[k] for c in gone for k in c.item_keys]
            why = {k: f"{c.url}: {c.detail}" for c in gone for k in c.item_keys}
            rules = [f"url:{c.url}" for c in gone]
            ledger.set_meta(TAKEDOWN_RULES, list(dict.fromkeys(
                [*ledger.get_meta(TAKEDOWN_RULES, []), *rules])))
            report.removal = remove_inputs(out, ledger, hit, why, kind="revalidate",
                                           reason=reason, state="removed", stage="takedown",
                                           codes=dict.fromkeys(why, "source_gone"), rules=rules)
            refresh_outputs(out, ledger)
        return report
    finally:
        ledger.close()
