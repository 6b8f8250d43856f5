"""Each consent signal refuses its item, with its reason and evidence, against a real server;
``record`` keeps the item and the evidence; a disallowed path is never requested."""

from __future__ import annotations

import json

import pytest

from clipfactory.config import FetchConfig
from clipfactory.fetch.base import FetchError
from clipfactory.fetch.gate import FetchGate
from clipfactory.fetch.http import HttpFetcher
from clipfactory.fetch.polite import Politeness

ROBOTS = ("User-agent: *\nDisallow: /\n\n"  # everybody else: nothing
          "User-agent: clipfactory\nDisallow: /members/\nAllow: /members/cc/\n")
CFG = FetchConfig(rate_per_host=0, backoff_base_s=0.02, timeout_s=5,
                  allow_private_network=True)  # the server is on 127.0.0.1


def _fetcher(mode="enforce"):
    return HttpFetcher(CFG, FetchGate(CFG, mode))


def _refusal(fetcher, url, tmp_path):
    with pytest.raises(FetchError) as e:
        Politeness(CFG).fetch(fetcher, url, tmp_path, 10**9)
    return e.value


def _media_files(tmp_path):
    return [p for p in tmp_path.rglob("*") if p.is_file()]


def test_robots_disallow_refuses_without_requesting_the_path(server, video_bytes, tmp_path):
    server.add("/robots.txt", ROBOTS.encode(), content_type="text/plain")
    blocked = server.add("/members/a.mp4", video_bytes)
    allowed = server.add("/members/cc/b.mp4", video_bytes)
    f = _fetcher()
    e = _refusal(f, blocked, tmp_path)
    assert (e.stage, e.reason, e.retryable, e.attempts) == ("consent", "robots_disallowed",
                                                            False, 1)
    [ev] = e.evidence
    assert ev["signal"] == "robots_disallowed" and ev["url"] == blocked
    assert ev["where"] == server.url("/robots.txt")
    assert ev["value"].startswith("Disallow: /members/ (line 5, group 'clipfactory')")
    assert ev["seen_at"].endswith("Z")
    assert server.routes["/members/a.mp4"].served == 0  # never asked for, not even HEAD
    assert _media_files(tmp_path) == []
    res = f.fetch(allowed, tmp_path, 10**9)  # the longer Allow wins
    assert res.bytes == len(video_bytes) and "consent" not in res.provenance
    assert server.site_requests("/robots.txt") == 1  # cached per host for the run


@pytest.mark.parametrize("headers,signal", [
    ({"X-Robots-Tag": "noai"}, "noai"),
    ({"X-Robots-Tag": "clipfactory: noimageai"}, "noimageai"),
    ({"tdm-reservation": "1", "tdm-policy": "https://example.org/p"}, "tdm_reservation"),
])
def test_response_headers_refuse_before_a_byte_is_kept(server, video_bytes, tmp_path,
                                                        headers, signal):
    url = server.add("/v.mp4", video_bytes, headers=headers)
    e = _refusal(_fetcher(), url, tmp_path)
    assert (e.stage, e.reason) == ("consent", signal)
    [ev] = e.evidence
    assert ev["value"].startswith(next(iter(headers.values())))
    assert ev["where"].endswith("header")
    assert _media_files(tmp_path) == []  # no partial file either


def test_other_crawlers_directives_do_not_refuse(server, video_bytes, tmp_path):
    url = server.add("/v.mp4", video_bytes, headers={"X-Robots-Tag": "otherbot: noai",
                                                      "tdm-reservation": "0"})
    assert _fetcher().fetch(url, tmp_path, 10**9).bytes == len(video_bytes)


def test_tdmrep_json_location_rules(server, video_bytes, tmp_path):
    server.add("/.well-known/tdmrep.json", json.dumps([
        {"location": "/open/*", "tdm-reservation": 0},
        {"location": "/*", "tdm-reservation": 1, "tdm-policy": "https://example.org/p"},
    ]).encode(), content_type="application/json")
    reserved = server.add("/studio/v.mp4", video_bytes)
    free = server.add("/open/v.mp4", video_bytes)
    f = _fetcher()
    e = _refusal(f, reserved, tmp_path)
    assert (e.stage, e.reason) == ("consent", "tdm_reservation")
    assert e.evidence[0]["where"] == server.url("/.well-known/tdmrep.json")
    assert "rule 1" in e.evidence[0]["value"] and "https://example.org/p" in e.evidence[0][
        "value"]
    assert server.routes["/studio/v.mp4"].served == 0
    assert f.fetch(free, tmp_path, 10**9).bytes == len(video_bytes)


def test_robots_5xx_disallows_for_now_and_404_allows(server, video_bytes, tmp_path):
    server.add("/robots.txt", b"", fault="status", status=503, times=-1)
    url = server.add("/v.mp4", video_bytes)
    e = _refusal(_fetcher(), url, tmp_path)
    assert (e.stage, e.reason, e.retryable) == ("consent", "robots_unavailable", True)
    assert server.routes["/v.mp4"].served == 0
    del server.routes["/robots.txt"]  # now a 404: no rules
    assert _fetcher().fetch(url, tmp_path, 10**9).bytes == len(video_bytes)


def test_record_mode_keeps_the_item_and_the_evidence(server, video_bytes, tmp_path):
    server.add("/robots.txt", ROBOTS.encode(), content_type="text/plain")
    url = server.add("/members/a.mp4", video_bytes, headers={"X-Robots-Tag": "noai"})
    res = _fetcher("record").fetch(url, tmp_path, 10**9)
    assert res.bytes == len(video_bytes)
    assert [e["signal"] for e in res.provenance["consent"]] == ["robots_disallowed", "noai"]


def test_a_redirect_into_a_disallowed_path_is_not_followed(server, video_bytes, tmp_path):
    server.add("/robots.txt", ROBOTS.encode(), content_type="text/plain")
    target = server.add("/members/a.mp4", video_bytes)
    start = server.add("/go", b"", fault="redirect", location=target)
    e = _refusal(_fetcher(), start, tmp_path)
    assert (e.stage, e.reason) == ("consent", "robots_disallowed")
    assert server.routes["/go"].served == 1 and server.routes["/members/a.mp4"].served == 0


def test_a_dead_host_is_a_connection_error_not_a_refusal(tmp_path):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    e = _refusal(_fetcher(), f"http://127.0.0.1:{port}/v.mp4", tmp_path)
    assert (e.stage, e.reason, e.retryable) == ("fetch", "connection_error", True)
    assert "robots.txt" in e.detail and e.evidence == []
