"""The http fetcher against a real server on 127.0.0.1, one fault at a time."""

from __future__ import annotations

import base64
import hashlib
import time
from pathlib import Path

import pytest

from clipfactory.config import FetchConfig
from clipfactory.fetch.base import FetchError
from clipfactory.fetch.http import HttpFetcher, parse_retry_after
from clipfactory.fetch.polite import Politeness

FAST = dict(backoff_base_s=0.05, backoff_max_s=0.2, rate_per_host=0, timeout_s=5,
            allow_private_network=True)  # the servers are on 127.0.0.1


def _fetch(url, tmp_path, max_bytes=10**9, expected=None, **cfg):
    c = FetchConfig(**{**FAST, **cfg})
    return Politeness(c).fetch(HttpFetcher(c), url, tmp_path, max_bytes, expected)


def _leftovers(tmp_path):
    return sorted(p.name for p in tmp_path.rglob("*") if p.is_file())


def test_a_dropped_connection_resumes_where_it_stopped(server, video_bytes, tmp_path):
    half = len(video_bytes) // 2
    url = server.add("/v.mp4", video_bytes, fault="drop", drop_at=half)
    res, attempts = _fetch(url, tmp_path)
    server.wait_idle()
    route = server.routes["/v.mp4"]
    assert attempts == 2
    assert route.ranges == [None, f"bytes={half}-"]  # the second request continues ...
    assert route.bytes_sent == len(video_bytes)  # ... and nothing is sent twice
    assert res.sha256 == hashlib.sha256(video_bytes).hexdigest()
    assert Path(res.path).read_bytes() == video_bytes
    assert res.path.endswith(".mp4") and _leftovers(tmp_path) == [res.path.rsplit("/", 1)[1]]


def test_a_resumed_answer_cut_short_without_a_length_is_resumed_again(server, video_bytes,
                                                                         tmp_path):
    """The resume's 206 answer came without a Content-Length and its connection dropped: the
    fetcher took the end of the connection for the end of the file and renamed a truncated
    video into place. Its Content-Range gives the total, so it resumes again."""
    third = len(video_bytes) // 3
    url = server.add("/v.mp4", video_bytes, fault="drop", drops=2, drop_at=third,
                     resume_length=False)
    res, attempts = _fetch(url, tmp_path)
    server.wait_idle()
    assert server.routes["/v.mp4"].ranges == [None, f"bytes={third}-", f"bytes={2 * third}-"]
    assert attempts == 3 and Path(res.path).read_bytes() == video_bytes


def test_a_changed_file_is_fetched_again_from_the_start(server, video_bytes, tmp_path):
    url = server.add("/v.mp4", video_bytes, fault="drop", drop_at=1000)
    with pytest.raises(FetchError) as e:
        HttpFetcher(FetchConfig(**FAST)).fetch(url, tmp_path, 10**9)
    assert e.value.reason == "connection_dropped" and e.value.retryable
    assert e.value.progress == 1000
    changed = video_bytes[:-10] + b"0123456789"
    server.add("/v.mp4", changed)  # a new ETag: If-Range makes the server send it all
    res = HttpFetcher(FetchConfig(**FAST)).fetch(url, tmp_path, 10**9)
    assert Path(res.path).read_bytes() == changed
    assert server.routes["/v.mp4"].ranges == ["bytes=1000-"]


def test_429_with_retry_after_is_honoured(server, video_bytes, tmp_path):
    url = server.add("/v.mp4", video_bytes, fault="status", status=429, retry_after="1")
    t0 = time.monotonic()
    res, attempts = _fetch(url, tmp_path)
    assert time.monotonic() - t0 >= 0.95
    assert attempts == 2 and res.bytes == len(video_bytes)


def test_500_then_success(server, video_bytes, tmp_path):
    url = server.add("/v.mp4", video_bytes, fault="status", status=500, times=2)
    res, attempts = _fetch(url, tmp_path)
    assert attempts == 3 and res.bytes == len(video_bytes)


def test_404_fails_at_once_and_for_good(server, tmp_path):
    with pytest.raises(FetchError) as e:
        _fetch(server.url("/missing.mp4"), tmp_path)
    assert (e.value.reason, e.value.retryable, e.value.attempts) == ("http_404", False, 1)
    assert server.media_requests == 1 and _leftovers(tmp_path) == []


def test_a_url_as_typed_into_a_sheet_is_fetched(server, video_bytes, tmp_path):
    """A space or an accented letter in a URL (pasted into a spreadsheet, or written by a
    script): sent percent-encoded as UTF-8, as a browser sends it. It failed with
    ``InvalidURL``, retried four times as a connection error. A URL no encoding mends (a port
    that is not a number, a space in the host name) fails at once as ``bad_url``."""
    server.add("/clips/vid%C3%A9o%201.mp4", video_bytes)
    res, attempts = _fetch(server.url("/clips/vidéo 1.mp4"), tmp_path / "a")
    assert attempts == 1 and Path(res.path).read_bytes() == video_bytes
    # an escape already made is kept, not made twice; a query is encoded too
    res, _ = _fetch(server.url("/clips/vid%C3%A9o 1.mp4?from=página 2"), tmp_path / "b")
    assert Path(res.path).read_bytes() == video_bytes
    for bad in (f"http://127.0.0.1:{server.port}x/clips/v.mp4", "http://bad host/v.mp4"):
        with pytest.raises(FetchError) as e:
            _fetch(bad, tmp_path / "c")
        assert (e.value.reason, e.value.retryable, e.value.attempts) == ("bad_url", False, 1)


def test_a_slow_trickle_completes_or_is_cut_off_by_the_minimum_speed(server, video_bytes,
                                                                     tmp_path):
    small = video_bytes[:3000]
    url = server.add("/slow.mp4", small, fault="trickle", trickle_bytes=500, trickle_s=0.05)
    res, _ = _fetch(url, tmp_path / "a")  # slow but steady: completes
    assert res.bytes == 3000
    url = server.add("/slower.mp4", video_bytes, fault="trickle", trickle_bytes=256,
                     trickle_s=0.05)
    with pytest.raises(FetchError) as e:
        _fetch(url, tmp_path / "b", min_speed_bps=20_000, min_speed_window_s=0.5,
               max_attempts=1)
    assert e.value.reason == "too_slow" and e.value.retryable
    assert e.value.progress > 0  # the partial file stays for a later resume
    assert len(list((tmp_path / "b" / ".partial").glob("*.part"))) == 1


def test_wrong_content_type_is_rejected(server, video_bytes, tmp_path):
    url = server.add("/v.mp4", video_bytes, content_type="text/plain")
    with pytest.raises(FetchError) as e:
        _fetch(url, tmp_path)
    assert e.value.reason == "not_video_content_type" and not e.value.retryable
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("ctype", ["text/html; charset=utf-8", "video/mp4", None])
def test_html_instead_of_video_is_rejected(server, tmp_path, ctype):
    page = b"<!DOCTYPE html><html><body>Please log in</body></html>" * 20
    url = server.add("/v.mp4", page, content_type=ctype)
    with pytest.raises(FetchError) as e:
        _fetch(url, tmp_path)
    assert e.value.reason == "html_instead_of_video" and not e.value.retryable
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("ctype", ["application/vnd.apple.mpegurl", "application/octet-stream",
                                   None])
def test_a_streaming_playlist_says_what_it_is(server, tmp_path, ctype):
    """An HLS playlist (by its Content-Type, or by its first bytes when the server calls it
    octet-stream or nothing) is not a video file: the plain fetcher on its own says so (in a
    run, the router's hands it to yt-dlp: test_ytdlp)."""
    playlist = b"#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2.0,\nseg0.ts\n#EXT-X-ENDLIST\n"
    url = server.add("/live/index", playlist, content_type=ctype)
    with pytest.raises(FetchError) as e:
        _fetch(url, tmp_path)
    assert e.value.reason == "stream_manifest" and not e.value.retryable
    assert "HLS/DASH playlist" in str(e.value)
    assert _leftovers(tmp_path) == []


def test_bytes_that_are_no_video_are_rejected(server, tmp_path):
    url = server.add("/v.mp4", bytes(range(256)) * 8, content_type="application/octet-stream")
    with pytest.raises(FetchError) as e:
        _fetch(url, tmp_path)
    assert e.value.reason == "not_video_content"


def test_a_body_over_the_size_limit_is_refused(server, video_bytes, tmp_path):
    url = server.add("/big.mp4", video_bytes)
    with pytest.raises(FetchError) as e:  # announced by Content-Length: nothing is read
        _fetch(url, tmp_path, max_bytes=10_000)
    assert e.value.reason == "too_large" and not e.value.retryable
    url = server.add("/big2.mp4", video_bytes, send_length=False)
    with pytest.raises(FetchError) as e:  # not announced: stopped while streaming
        _fetch(url, tmp_path, max_bytes=10_000)
    assert e.value.reason == "too_large"
    assert _leftovers(tmp_path) == []


def test_checksum_is_verified(server, video_bytes, tmp_path):
    url = server.add("/v.mp4", video_bytes)
    with pytest.raises(FetchError) as e:
        _fetch(url, tmp_path, expected="0" * 64)
    assert e.value.reason == "checksum_mismatch"
    good = hashlib.sha256(video_bytes).hexdigest()
    res, _ = _fetch(url, tmp_path, expected=good.upper())
    assert res.sha256 == good


def test_redirects_are_followed_over_http_only(server, video_bytes, tmp_path):
    target = server.add("/real.mp4", video_bytes)
    url = server.add("/short", b"", fault="redirect", location=target)
    res, _ = _fetch(url, tmp_path)
    assert res.provenance["final_url"] == target and res.bytes == len(video_bytes)
    secret = tmp_path / "secret.mp4"
    secret.write_bytes(video_bytes)
    url = server.add("/evil", b"", fault="redirect", location=secret.as_uri())
    with pytest.raises(FetchError) as e:
        _fetch(url, tmp_path / "out")
    assert e.value.reason == "http_302"
    assert not list((tmp_path / "out").glob("*.mp4"))


def test_a_login_in_the_url_is_sent_as_basic_auth_to_its_host_only(server, video_bytes,
                                                                   tmp_path):
    """``https://user:password@host/...`` (an intranet server, the user's own login): urllib
    took ``user:password@host`` for the host name, so the fetch failed as a connection error,
    four times, retryable."""
    plain = server.add("/private.mp4", video_bytes)
    url = plain.replace("://", "://ann:p%40ss%3Aword@")
    res, attempts = _fetch(url, tmp_path)
    assert attempts == 1 and Path(res.path).read_bytes() == video_bytes
    expected = "Basic " + base64.b64encode(b"ann:p@ss:word").decode()
    assert server.routes["/private.mp4"].auths == [expected]
    hop = server.add("/hop", b"", fault="redirect", location=server.url("/other.mp4"))
    server.add("/other.mp4", video_bytes)
    _fetch(hop.replace("://", "://ann:pw@"), tmp_path / "hop")
    assert server.routes["/hop"].auths == ["Basic " + base64.b64encode(b"ann:pw").decode()]
    assert server.routes["/other.mp4"].auths == [None]  # not sent on to a redirect
    with pytest.raises(FetchError) as e:
        _fetch(server.url("/nothing.mp4").replace("://", "://ann:secretword@"), tmp_path)
    assert e.value.reason == "http_404" and "secretword" not in str(e.value)


def test_only_the_users_cookie_file_is_sent(server, video_bytes, tmp_path):
    url = server.add("/v.mp4", video_bytes)
    _fetch(url, tmp_path / "a")
    jar = tmp_path / "cookies.txt"
    jar.write_text("# Netscape HTTP Cookie File\n"
                   "127.0.0.1\tFALSE\t/\tFALSE\t0\tsession\tmine\n", encoding="utf-8")
    _fetch(url, tmp_path / "b", cookies_file=str(jar))
    route = server.routes["/v.mp4"]
    assert route.cookies == [None, "session=mine"]
    assert all(a.startswith("clipfactory/") for a in route.agents)


def test_retry_after_parsing():
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10.0
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None


@pytest.mark.parametrize("send_length, reason, retryable, attempts",
                         [(False, "connection_dropped", True, 2),
                          (True, "not_video_content", False, 1)])
def test_an_empty_body_is_never_a_complete_download(server, tmp_path, send_length, reason,
                                                    retryable, attempts):
    """A 200 whose body ends before its first byte: a 0-byte file reached its final name, and
    the run recorded a permanent probe/empty_file failure that ``clipfactory retry`` left
    alone. Without a Content-Length that is a connection that dropped (retried); with
    ``Content-Length: 0`` the server means it, and an empty file is no video."""
    url = server.add("/empty.mp4", b"", send_length=send_length)
    with pytest.raises(FetchError) as e:
        _fetch(url, tmp_path, max_attempts=2)
    assert (e.value.reason, e.value.retryable, e.value.attempts) == (reason, retryable,
                                                                    attempts)
    assert e.value.progress == 0 and _leftovers(tmp_path) == []
