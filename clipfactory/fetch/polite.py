"""Being a good citizen of the sites we fetch from: per-host limits, backoff, pauses.

- At most ``per_host`` requests in flight per host (a semaphore), and at most ``rate_per_host``
  new requests per second with bursts of ``burst`` (a token bucket whose tokens are reserved in
  arrival order, so waiting threads are served first come, first served).
- A failed attempt is retried after an exponential backoff with jitter
  (``base * 2^n * U(0.5, 1)``, capped), never sooner than the server's Retry-After, and a
  Retry-After applies to the whole host, not only the request that got it.
- After ``pause_after`` consecutive 429/403 answers a host is paused for ``pause_s`` (or the
  Retry-After, if longer): its items fail at once with ``host_paused_429``/``host_paused_403``
  and a next retry time, and the pause is reported. There is no way around a pause: no proxy
  rotation, no other identity, no second try elsewhere.
- A 403 is never retried within a run (it is a refusal, and repeating it is hammering); it is
  retried by a later ``clipfactory retry`` at its next retry time.

Everything here is thread-safe: the prefetcher's download threads share one :class:`Politeness`.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from clipfactory.config import FetchConfig
from clipfactory.errors import storage_refused
from clipfactory.fetch.base import Fetcher, FetchError, FetchResult

__all__ = ["HostPause", "Politeness", "host_key"]

_MAX_RESUMES = 50  # attempts that made progress are not counted, up to this many


def host_key(url: str) -> str:
    """The unit of politeness: ``host[:port]`` for network URLs, ``scheme://bucket`` for object
    stores, ``local`` for files."""
    parts = urlsplit(url)
    if parts.scheme in ("http", "https", "ftp"):
        return (parts.netloc.rsplit("@", 1)[-1] or "?").lower()
    if parts.scheme and len(parts.scheme) > 1:
        return f"{parts.scheme}://{parts.netloc.lower()}"
    return "local"


@dataclass(frozen=True)
class HostPause:
    """A host paused after repeated refusals (reported to the user and the ledger)."""

    host: str
    status: int
    refusals: int
    until: float  # time.time() when the pause ends
    retry_after: float | None


@dataclass
class _Host:
    sem: threading.Semaphore
    tokens: float
    refilled: float
    not_before: float = 0.0  # monotonic; set by Retry-After
    refusals: int = 0  # consecutive 429/403
    paused_until: float = 0.0  # monotonic
    paused_status: int = 0
    in_flight: int = 0
    stats: dict[str, int] = field(default_factory=lambda: {
        "requests": 0, "max_in_flight": 0, "http_429": 0, "http_403": 0, "failures": 0,
        "pauses": 0})


class Politeness:
    """Per-host limits and the retry loop shared by all download threads."""

    def __init__(self, cfg: FetchConfig | None = None, *,
                 stop: threading.Event | None = None,
                 rng: random.Random | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 on_pause: Callable[[HostPause], None] | None = None) -> None:
        self.cfg = cfg or FetchConfig()
        self.on_pause = on_pause
        self.stop = stop or threading.Event()
        self._rng = rng or random.Random()
        self._clock = clock
        self._lock = threading.Lock()
        self._hosts: dict[str, _Host] = {}
        self._pauses: list[HostPause] = []

    def _host(self, host: str) -> _Host:
        with self._lock:
            h = self._hosts.get(host)
            if h is None:
                h = _Host(threading.Semaphore(max(1, self.cfg.per_host)),
                          float(max(1, self.cfg.burst)), self._clock())
                self._hosts[host] = h
            return h

    def paused_for(self, host: str) -> float:
        """Seconds left in the host's pause (0 when it is not paused)."""
        h = self._host(host)
        with self._lock:
            return max(0.0, h.paused_until - self._clock())

    def _sleep(self, seconds: float) -> None:
        if seconds > 0 and self.stop.wait(seconds):
            raise FetchError("interrupted", "the run is stopping", retryable=True)

    def _paused_error(self, host: str, h: _Host, left: float) -> FetchError:
        return FetchError(f"host_paused_{h.paused_status}",
                          f"{host} is paused for {left:.0f} s after {self.cfg.pause_after} "
                          f"consecutive HTTP {h.paused_status} answers", retryable=True,
                          retry_after=left)

    @contextmanager
    def slot(self, host: str) -> Iterator[None]:
        """Hold one of the host's request slots, once its rate limit allows a request."""
        h = self._host(host)
        while not h.sem.acquire(timeout=0.2):
            if self.stop.is_set():
                raise FetchError("interrupted", "the run is stopping", retryable=True)
            left = self.paused_for(host)
            if left > 0:
                raise self._paused_error(host, h, left)
        try:
            with self._lock:
                now = self._clock()
                if h.paused_until > now:
                    raise self._paused_error(host, h, h.paused_until - now)
                rate = self.cfg.rate_per_host
                wait = 0.0
                if rate > 0:
                    h.tokens = min(float(max(1, self.cfg.burst)),
                                   h.tokens + (now - h.refilled) * rate)
                    h.refilled = now
                    h.tokens -= 1.0  # reserved now, in arrival order; may go below zero
                    wait = -h.tokens / rate if h.tokens < 0 else 0.0
                wait = max(wait, h.not_before - now)
            self._sleep(wait)
            with self._lock:
                h.in_flight += 1
                h.stats["requests"] += 1
                h.stats["max_in_flight"] = max(h.stats["max_in_flight"], h.in_flight)
            try:
                yield
            finally:
                with self._lock:
                    h.in_flight -= 1
        finally:
            h.sem.release()

    def report(self, host: str, error: FetchError | None) -> HostPause | None:
        """Account one answer of ``host``; returns the pause it caused, if any."""
        h = self._host(host)
        with self._lock:
            now = self._clock()
            if error is None:
                h.refusals = 0
                return None
            h.stats["failures"] += 1
            if error.retry_after:
                h.not_before = max(h.not_before, now + error.retry_after)
            if error.status not in (429, 403):
                return None
            h.stats[f"http_{error.status}"] += 1
            h.refusals += 1
            if h.refusals < max(1, self.cfg.pause_after) or h.paused_until > now:
                return None
            length = max(self.cfg.pause_s, error.retry_after or 0.0)
            h.paused_until, h.paused_status = now + length, error.status
            h.refusals = 0
            h.stats["pauses"] += 1
            pause = HostPause(host, error.status, self.cfg.pause_after, time.time() + length,
                              error.retry_after)
            self._pauses.append(pause)
        if self.on_pause is not None:
            self.on_pause(pause)
        return pause

    def backoff(self, failures: int, retry_after: float | None = None) -> float:
        """Seconds before the next attempt after ``failures`` failed ones (>= 1)."""
        cap = self.cfg.backoff_max_s
        base = min(cap, self.cfg.backoff_base_s * 2 ** max(0, failures - 1))
        delay = base * self._rng.uniform(0.5, 1.0)
        return max(delay, retry_after or 0.0)

    def fetch(self, fetcher: Fetcher, url: str, dest_dir: Path, max_bytes: int,
              expected_sha256: str | None = None) -> tuple[FetchResult, int]:
        """Fetch with retries under the host's limits: (result, attempts made).

        Raises the last :class:`FetchError` (its ``retry_after`` says when a retry may come,
        when the server or a pause said so); ``attempts`` is set on it."""
        host = host_key(url)
        failures = resumes = attempts = 0
        while True:
            attempts += 1
            try:
                with self.slot(host):
                    result = fetcher.fetch(url, dest_dir, max_bytes, expected_sha256)
            except FetchError as e:
                if storage_refused(e):  # no retry: the disk, not the host (the run stops)
                    raise
                e.attempts = attempts
                if e.reason == "interrupted" or e.reason.startswith("host_paused_"):
                    raise
                self.report(host, e)
                # a transfer that broke off after making progress resumes at once, uncounted
                resumed = (e.reason == "connection_dropped" and e.progress > 0
                           and resumes < _MAX_RESUMES)
                resumes += resumed
                failures += not resumed
                # a site's consent signal is cached for the run: asking again cannot change it
                if not e.retryable or e.status == 403 or e.stage == "consent" \
                        or failures >= self.cfg.max_attempts:
                    raise
                left = self.paused_for(host)
                if left > 0:
                    raise self._paused_error(host, self._host(host), left) from e
                delay = 0.0 if resumed else self.backoff(failures, e.retry_after)
                if delay > self.cfg.max_wait_s:
                    e.retry_after = delay  # not worth holding a thread: fail until then
                    raise
                self._sleep(delay)
                continue
            self.report(host, None)
            return result, attempts

    def pauses(self) -> list[HostPause]:
        """Every pause so far, in order."""
        with self._lock:
            return list(self._pauses)

    def stats(self) -> dict[str, dict[str, Any]]:
        """Per-host counters: requests, max requests in flight seen, 429s, 403s, pauses."""
        with self._lock:
            return {k: dict(h.stats) for k, h in self._hosts.items()}
