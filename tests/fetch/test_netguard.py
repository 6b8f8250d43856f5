"""Fetch safety: manifest URLs that reach private addresses are refused before any
connection, at every redirect hop; the opt-in lets loopback servers through."""

from __future__ import annotations

import pytest

from clipfactory.config import FetchConfig
from clipfactory.fetch.base import FetchError
from clipfactory.fetch.http import HttpFetcher
from clipfactory.fetch.netguard import is_public_address

GUARDED = FetchConfig(rate_per_host=0, timeout_s=5)


@pytest.mark.parametrize("address,public", [
    ("127.0.0.1", False), ("10.1.2.3", False), ("172.16.0.1", False), ("192.168.1.1", False),
    ("169.254.169.254", False), ("100.64.0.1", False), ("0.0.0.0", False),
    ("224.0.0.1", False), ("240.0.0.1", False), ("::1", False), ("fe80::1", False),
    ("fc00::1", False), ("::ffff:127.0.0.1", False), ("192.0.2.1", False),
    ("93.184.215.14", True), ("2606:4700::1111", True), ("8.8.8.8", True),
    ("not-an-ip", False),
])
def test_address_classes(address, public):
    assert is_public_address(address) is public


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::1]", "127.1"])
def test_loopback_is_refused_before_any_socket_opens(server, video_bytes, tmp_path, host):
    url = server.add("/v.mp4", video_bytes).replace("127.0.0.1", host)
    with pytest.raises(FetchError) as e:
        HttpFetcher(GUARDED).fetch(url, tmp_path, 10**9)
    assert (e.value.stage, e.value.reason) == ("fetch", "private_address")
    assert "loopback" in e.value.detail
    assert server.connections == 0 and server.requests == 0  # not even robots.txt
    ok = HttpFetcher(FetchConfig(timeout_s=5, allow_private_network=True)).fetch(
        server.url("/v.mp4"), tmp_path, 10**9)
    assert ok.bytes == len(video_bytes) and server.connections > 0


def test_a_redirect_to_a_private_address_is_refused(server, video_bytes, tmp_path,
                                                    monkeypatch):
    """The loopback server acts as the user's HTTP proxy (a configured endpoint, not checked)
    in front of a public address, which answers with a redirect to the cloud metadata
    service. The hop is refused before it is requested."""
    public = "http://93.184.215.14"
    server.add(f"{public}/v.mp4", b"", fault="redirect",
               location="http://169.254.169.254/latest/meta-data/")
    monkeypatch.setenv("http_proxy", server.url(""))
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    with pytest.raises(FetchError) as e:
        HttpFetcher(GUARDED).fetch(f"{public}/v.mp4", tmp_path, 10**9)
    assert (e.value.stage, e.value.reason) == ("fetch", "private_address")
    assert "169.254.169.254" in e.value.detail and "link-local" in e.value.detail
    asked = [p for p in server.paths]
    assert asked == [f"{public}/robots.txt", f"{public}/.well-known/tdmrep.json",
                     f"{public}/v.mp4"]  # and nothing for 169.254.169.254


def test_run_refuses_a_private_url_and_retry_can_opt_in(server, video_bytes, tmp_path):
    import json

    import pyarrow.parquet as pq

    from clipfactory.cli import main

    url = server.add("/v.mp4", video_bytes)
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps({"id": "intranet", "url": url}) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    args = ["--quiet"]
    assert main(["run", "--input", str(manifest), "--output", str(out), *args]) == 0
    [failed] = pq.read_table(out / "rejected.parquet").to_pylist()
    assert (failed["stage"], failed["reason"]) == ("fetch", "private_address")
    assert server.connections == 0
    assert main(["retry", str(out), "--all", "--allow-private-network", *args]) == 0
    assert {r["video_id"] for r in pq.read_table(out / "index.parquet").to_pylist()} == {
        "intranet"}


def test_yt_dlp_connections_are_guarded_in_its_thread_only(server, video_bytes, tmp_path):
    """yt-dlp opens its own connections (its page, media URLs, HLS segments, redirects). The
    gate checks the URL it is given; every host yt-dlp then connects to is checked by the
    guarded name lookup. Here the page passes a gate that allows loopback, and the fetcher's
    own config does not: yt-dlp's first request is refused, and nothing is served."""
    import socket
    import threading

    pytest.importorskip("yt_dlp")
    from clipfactory.fetch.gate import FetchGate
    from clipfactory.fetch.netguard import PrivateAddressError, guarded_resolution
    from clipfactory.fetch.ytdlp import YtDlpFetcher

    url = server.add("/media/walk.mp4", video_bytes)
    lenient = FetchGate(FetchConfig(allow_private_network=True, timeout_s=5))
    strict = FetchConfig(ytdlp_hosts=["127.0.0.1"], timeout_s=5)
    with pytest.raises(FetchError) as e:
        YtDlpFetcher(strict, lenient).fetch(url, tmp_path, 10**9)
    assert e.value.reason == "private_address" and not e.value.retryable
    assert server.routes["/media/walk.mp4"].served == 1  # the gate's one read, not yt-dlp's
    res = YtDlpFetcher(FetchConfig(ytdlp_hosts=["127.0.0.1"], allow_private_network=True,
                                   timeout_s=5), lenient).fetch(url, tmp_path / "ok", 10**9)
    assert res.bytes == len(video_bytes)  # the opt-in lets it through, as for the http fetcher

    other: list[object] = []
    with guarded_resolution():
        with pytest.raises(PrivateAddressError):
            socket.getaddrinfo("localhost", 80)
        worker = threading.Thread(target=lambda: other.append(socket.getaddrinfo("127.0.0.1", 80)))
        worker.start()
        worker.join()
    assert other and other[0]  # another thread's lookups are not checked
    assert socket.getaddrinfo("127.0.0.1", 80)  # nor any after the block
