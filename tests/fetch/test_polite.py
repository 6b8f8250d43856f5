"""Per-host limits, rate limits, backoff and host pauses."""

from __future__ import annotations

import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from clipfactory.config import FetchConfig
from clipfactory.fetch.base import FetchError, FetchResult
from clipfactory.fetch.http import HttpFetcher
from clipfactory.fetch.polite import Politeness, host_key


class FakeFetcher:
    """Counts calls and concurrency; answers from a script of outcomes per URL."""

    def __init__(self, script=None, hold_s=0.0):
        self.script = dict(script or {})
        self.hold_s = hold_s
        self.calls: list[tuple[str, float]] = []
        self.lock = threading.Lock()
        self.in_flight = self.max_in_flight = 0

    def fetch(self, url, dest_dir, max_bytes, expected_sha256=None):
        with self.lock:
            self.calls.append((url, time.monotonic()))
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            outcomes = self.script.get(url, [])
            outcome = outcomes.pop(0) if outcomes else None
        try:
            time.sleep(self.hold_s)
            if isinstance(outcome, FetchError):
                raise outcome
            return FetchResult(str(dest_dir / "x.mp4"), 1, "0" * 64)
        finally:
            with self.lock:
                self.in_flight -= 1


def _cfg(**kw):
    base = dict(backoff_base_s=0.02, backoff_max_s=0.1, rate_per_host=0, per_host=2,
                allow_private_network=True)
    return FetchConfig(**{**base, **kw})


def test_host_keys():
    assert host_key("https://Example.org:8443/a?b") == "example.org:8443"
    assert host_key("http://user:pw@h.net/x") == "h.net"
    assert host_key("s3://Bucket/key.mp4") == "s3://bucket"
    assert host_key("/local/file.mp4") == "local"


def test_per_host_concurrency_is_a_hard_limit(tmp_path):
    polite = Politeness(_cfg(per_host=2))
    fake = FakeFetcher(hold_s=0.05)
    urls = [f"http://a.test/{i}" for i in range(8)] + [f"http://b.test/{i}" for i in range(8)]
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda u: polite.fetch(fake, u, tmp_path, 10), urls))
    stats = polite.stats()
    assert stats["a.test"]["max_in_flight"] == 2 and stats["b.test"]["max_in_flight"] == 2
    assert fake.max_in_flight == 4  # two hosts, two each


def test_token_bucket_spaces_requests(tmp_path):
    polite = Politeness(_cfg(per_host=8, rate_per_host=20.0, burst=2))
    fake = FakeFetcher()
    t0 = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: polite.fetch(fake, f"http://a.test/{i}", tmp_path, 10),
                      range(8)))
    times = sorted(t for _, t in fake.calls)
    # 2 at once (the burst), then one every 50 ms: 6 * 0.05 s at least
    assert times[-1] - t0 >= 0.28
    assert sum(1 for t in times if t - t0 < 0.02) <= 2


def test_backoff_grows_with_jitter_and_never_undercuts_retry_after():
    polite = Politeness(_cfg(backoff_base_s=1.0, backoff_max_s=8.0), rng=random.Random(1))
    for n, hi in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (9, 8.0)]:
        d = polite.backoff(n)
        assert hi / 2 <= d <= hi
    assert polite.backoff(1, retry_after=30.0) == 30.0


def test_retry_after_holds_the_whole_host(tmp_path):
    polite = Politeness(_cfg(per_host=4))
    polite.report("a.test", FetchError("http_429", retryable=True, retry_after=0.3, status=429))
    fake = FakeFetcher()
    t0 = time.monotonic()
    polite.fetch(fake, "http://a.test/other", tmp_path, 10)
    assert fake.calls[0][1] - t0 >= 0.28


def test_403_is_not_retried_within_a_run(tmp_path):
    url = "http://a.test/x"
    fake = FakeFetcher({url: [FetchError("http_403", retryable=True, status=403)]})
    with pytest.raises(FetchError) as e:
        Politeness(_cfg()).fetch(fake, url, tmp_path, 10)
    assert e.value.reason == "http_403" and e.value.retryable and len(fake.calls) == 1


def test_a_host_that_keeps_refusing_is_paused_and_reported(server, video_bytes, tmp_path):
    """Three 429s in a row pause the host: later items fail at once, without a request."""
    url = server.add("/v.mp4", video_bytes, fault="status", status=429, times=-1)
    paused = []
    cfg = _cfg(per_host=1, max_attempts=1, pause_after=3, pause_s=60)
    polite = Politeness(cfg, on_pause=paused.append)
    errors = []
    for _ in range(6):
        with pytest.raises(FetchError) as e:
            polite.fetch(HttpFetcher(cfg), url, tmp_path, 10**9)
        errors.append(e.value.reason)
    assert errors == ["http_429"] * 3 + ["host_paused_429"] * 3
    assert server.media_requests == 3
    assert len(paused) == 1 and paused[0].status == 429 and paused[0].host.startswith("127.0.0.1")
    assert polite.paused_for(paused[0].host) > 50
    assert polite.stats()[paused[0].host]["pauses"] == 1


def test_a_long_retry_after_fails_the_item_until_then(tmp_path):
    url = "http://a.test/x"
    fake = FakeFetcher({url: [FetchError("http_429", retryable=True, retry_after=3600,
                                         status=429)]})
    t0 = time.monotonic()
    with pytest.raises(FetchError) as e:
        Politeness(_cfg(max_wait_s=5)).fetch(fake, url, tmp_path, 10)
    assert time.monotonic() - t0 < 1 and e.value.retry_after >= 3600
