"""``clipfactory revalidate``: do the dataset's sources still exist upstream?

Each distinct source URL of the inputs in the dataset is checked once, politely: one request
at a time, at most ``rate`` requests per second to any one host, ``429``/``503`` answers
honoured by waiting their ``Retry-After`` (capped) before a bounded number of retries. An
``http(s)`` URL gets a ``HEAD`` (a ``GET`` of one byte, ``Range: bytes=0-0``, where ``HEAD`` is
refused with 405 or 501); ``404`` and ``410`` mean gone. Video-site pages (YouTube, Vimeo, ...)
need yt-dlp to tell a live video from a removed one: with yt-dlp importable they are checked
with ``download=False``, otherwise reported as not checkable. Inputs without a URL are
skipped and reported. With ``purge`` the gone sources are taken down.

The sites' consent signals are checked again too, through the same
:class:`~clipfactory.fetch.gate.FetchGate` a run uses: robots.txt before any request of the
URL (a disallowed path is not requested at all), the site's tdmrep.json, and the
``X-Robots-Tag``/``tdm-reservation`` headers of the HEAD answer. A source whose site now
reserves it is ``refused``; with ``purge`` and ``policy.consent: enforce`` it is purged like a
takedown, as ``consent/<signal>``, its evidence kept in the ledger. Under ``record`` the
evidence is kept and nothing is purged. Private addresses are refused as in a run, unless
``allow_private_network``.
"""

from __future__ import annotations

import dataclasses
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from clipfactory import __version__
from clipfactory.config import FetchConfig, stored_config
from clipfactory.consent.store import ensure_consent, write_consent
from clipfactory.fetch.base import FetchError
from clipfactory.fetch.gate import FetchGate
from clipfactory.fetch.http import parse_retry_after, sendable_url
from clipfactory.lock import holds_output_lock
from clipfactory.provenance.ingest import (
    CONSENT_PURGE_REASON,
    finish_consent_purges,
    finish_takedowns,
    keep_takedown_rules,
)
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
    """The outcome for one URL: ``ok``, ``gone``, ``refused`` (a consent signal),
    ``error``, ``not_checkable`` or ``skipped`` (no URL), with the HTTP status when there was
    one, the inputs it covers, and for ``refused`` the signal and its evidence."""

    url: str | None
    status: str
    http_status: int | None = None
    detail: str = ""
    item_keys: tuple[str, ...] = ()
    signal: str | None = None
    evidence: tuple[dict, ...] = ()


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


def _request(opener: urllib.request.OpenerDirector, url: str, method: str,
             timeout: float) -> tuple[int, str | None, object]:
    headers = {"User-Agent": f"clipfactory/{__version__} (source revalidation)"}
    if method == "GET":
        headers["Range"] = "bytes=0-0"
    req = urllib.request.Request(url, method=method, headers=headers)
    try:
        with opener.open(req, timeout=timeout) as resp:
            return resp.status, None, resp.headers
    except urllib.error.HTTPError as e:
        retry = e.headers.get("Retry-After") if e.headers else None
        e.close()
        return e.code, retry, None


def check_url(url: str, limiter: HostLimiter, *, timeout: float = 15.0, retries: int = 3,
              max_wait_s: float = 60.0, gate: FetchGate | None = None) -> SourceCheck:
    """The check of one http(s) URL (without its item keys): consent first, then existence."""
    gate = gate or _gate(timeout, allow_private=False, limiter=limiter)
    target = sendable_url(url)  # as the fetch sent it (a space, an accented letter)
    try:
        gate.before(target)  # private address, robots.txt, tdmrep.json: before the HEAD
    except FetchError as e:
        return _refusal(url, e)
    host = (urlsplit(target).hostname or "").lower()
    method = "HEAD"
    attempt = 0
    while True:
        limiter.wait(host)
        try:
            code, retry, headers = _request(gate.opener, target, method, timeout)
        except FetchError as e:  # a redirect hop the gate refused
            return _refusal(url, e)
        except (urllib.error.URLError, OSError, ValueError) as e:
            return SourceCheck(url, "error", None,
                               f"{type(e).__name__}: {getattr(e, 'reason', e)}")
        if code in (405, 501) and method == "HEAD":
            method = "GET"
            continue
        if code in (429, 503):
            attempt += 1
            if attempt > retries:
                return SourceCheck(url, "error", code,
                                   f"HTTP {code} after {retries} retries; try again later")
            wait = parse_retry_after(retry)
            wait = min(max_wait_s, wait if wait is not None else 2.0 ** attempt)
            limiter.defer(host, wait)
            continue
        if code in (404, 410):
            return SourceCheck(url, "gone", code, f"HTTP {code}")
        if 200 <= code < 400:
            try:
                gate.response(target, headers)
            except FetchError as e:
                return _refusal(url, e, code)
            return SourceCheck(url, "ok", code, f"HTTP {code} ({method})")
        return SourceCheck(url, "error", code, f"HTTP {code}")


def _refusal(url: str, e: FetchError, code: int | None = None) -> SourceCheck:
    if e.stage != "consent" or e.reason == "robots_unavailable":  # not the site's answer
        return SourceCheck(url, "error", code, f"{e.stage}/{e.reason}: {e.detail}")
    return SourceCheck(url, "refused", code, f"consent/{e.reason}: {e.detail}",
                       signal=e.reason, evidence=tuple(e.evidence))


def _gate(timeout: float, allow_private: bool, limiter: HostLimiter) -> FetchGate:
    cfg = FetchConfig(timeout_s=timeout, allow_private_network=allow_private,
                      user_agent=f"clipfactory/{__version__} (source revalidation)")
    # enforce: a signal comes back as a FetchError to report; robots.txt and tdmrep.json
    # requests obey the per-host rate too
    return FetchGate(cfg, "enforce", throttle=limiter.wait)


def _check_video_site(url: str, limiter: HostLimiter, gate: FetchGate | None = None
                      ) -> tuple[str, int | None, str] | SourceCheck:
    try:
        import yt_dlp  # type: ignore[import-not-found]
    except ImportError:
        return "not_checkable", None, "video-site URL; install yt-dlp to check it"
    if gate is not None:
        try:
            gate.before(url)  # robots.txt and tdmrep.json of the site, as a run would
        except FetchError as e:
            return _refusal(url, e)
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
    """Every check, and the removals when gone or refused sources were purged."""

    checks: list[SourceCheck] = field(default_factory=list)
    removal: Removal | None = None
    consent_removal: Removal | None = None
    consent_mode: str = "enforce"

    def counts(self) -> dict[str, int]:
        return dict(Counter(c.status for c in self.checks))

    def gone(self) -> list[SourceCheck]:
        return [c for c in self.checks if c.status == "gone"]

    def refused(self) -> list[SourceCheck]:
        return [c for c in self.checks if c.status == "refused"]

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
        if self.consent_removal is not None:
            lines.append(f"purged {len(self.consent_removal.videos)} sources refused by "
                         f"their sites' consent signals, {len(self.consent_removal.clips)} "
                         "clips")
        elif self.refused() and self.consent_mode == "record":
            lines.append("consent signals recorded, nothing purged (policy.consent: record)")
        return "\n".join(lines)


def _check_all(by_url: dict[str, list], limiter: HostLimiter, gate: FetchGate,
               timeout: float, retries: int, max_wait_s: float) -> list[SourceCheck]:
    checks = []
    for url, rs in by_url.items():
        keys = tuple(r["item_key"] for r in rs)
        host = (urlsplit(url).hostname or "").lower().removeprefix("www.")
        if any(host == s or host.endswith("." + s) for s in _VIDEO_SITES):
            got = _check_video_site(url, limiter, gate)
            check = got if isinstance(got, SourceCheck) else SourceCheck(url, *got)
        elif url.lower().startswith(("http://", "https://")):
            check = check_url(url, limiter, timeout=timeout, retries=retries,
                              max_wait_s=max_wait_s, gate=gate)
        else:
            check = SourceCheck(url, "not_checkable", None, "not an http(s) URL")
        checks.append(dataclasses.replace(check, item_keys=keys))
    return checks


@holds_output_lock("revalidate")
def revalidate(out: str | Path, *, purge: bool = False, rate: float = 1.0,
               timeout: float = 15.0, retries: int = 3, max_wait_s: float = 60.0,
               reason: str = "source no longer available upstream",
               allow_private_network: bool = False) -> RevalidateReport:
    """Check every source in the dataset (see the module docstring)."""
    out = Path(out)
    limiter = HostLimiter(1.0 / rate if rate > 0 else 0.0)
    report = RevalidateReport()
    ledger = open_output(out)
    try:
        cfg = stored_config(ledger.get_meta("config"))
        report.consent_mode = cfg.policy.consent
        if purge:  # a purge this command began before and did not finish goes first,
            finish_consent_purges(ledger, out, "revalidate")  # also where the site came back
            finish_takedowns(ledger, out, "revalidate")
        gate = _gate(timeout, allow_private_network or cfg.fetch.allow_private_network,
                     limiter)
        rows = ledger.videos("done")
        by_url: dict[str, list] = {}
        for r in rows:
            url = _url_of(r)
            if url is None:
                report.checks.append(SourceCheck(None, "skipped", None, "no source URL",
                                                 (r["item_key"],)))
            else:
                by_url.setdefault(url, []).append(r)
        report.checks += _check_all(by_url, limiter, gate, timeout, retries, max_wait_s)
        ledger.event("revalidate", {"counts": report.counts(), "gone": [
            {"url": c.url, "http_status": c.http_status, "items": c.item_keys}
            for c in report.gone()], "refused": [
            {"url": c.url, "signal": c.signal, "items": c.item_keys}
            for c in report.refused()]})
        rows_by_key = {r["item_key"]: r for rs in by_url.values() for r in rs}
        enforce = report.consent_mode == "enforce"
        gone = report.gone()
        rules = [f"url:{c.url}" for c in gone]
        ensure_consent(ledger)
        # every decision in one transaction, before anything is removed: a purge killed at
        # any point is finished whole by the next command, or (killed before this) not begun
        with ledger.transaction() as db:
            for c in report.refused():
                for k in c.item_keys:
                    write_consent(db, k, c.evidence, enforced=enforce and purge)
            if purge and gone:
                keep_takedown_rules(ledger, rules, reason, kind="revalidate",
                                    code="source_gone")
        if purge and gone:
            hit = [rows_by_key[k] for c in gone for k in c.item_keys]
            why = {k: f"{c.url}: {c.detail}" for c in gone for k in c.item_keys}
            report.removal = remove_inputs(out, ledger, hit, why, kind="revalidate",
                                           reason=reason, state="removed", stage="takedown",
                                           codes=dict.fromkeys(why, "source_gone"), rules=rules)
        refused = report.refused()
        if purge and refused and enforce:
            hit = [rows_by_key[k] for c in refused for k in c.item_keys]
            why = {k: c.detail for c in refused for k in c.item_keys}
            codes = {k: c.signal or "consent" for c in refused for k in c.item_keys}
            report.consent_removal = remove_inputs(
                out, ledger, hit, why, kind="revalidate",
                reason=CONSENT_PURGE_REASON, state="removed",
                stage="consent", codes=codes)
        if purge:  # also when nothing was purged now: an earlier purge may have been killed
            refresh_outputs(out, ledger)  # before this (incremental: cheap when up to date)
        return report
    finally:
        ledger.close()
