"""Revalidate against a real HTTP server on the loopback: 404 and 410 are gone, a refused
HEAD falls back to a one-byte GET, 429 Retry-After is honoured, and --purge takes down."""

from __future__ import annotations

import itertools
import sys
import threading
import time
import types
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from clipfactory.cli import main
from clipfactory.config import Config
from clipfactory.fetch.http import parse_retry_after
from clipfactory.pipeline import run
from clipfactory.provenance.audit import audit
from clipfactory.provenance.revalidate import HostLimiter, _gate, check_url, revalidate

from .conftest import Out, row, write_manifest


class _Handler(BaseHTTPRequestHandler):
    log: list[tuple[float, str, str, str | None]]  # (time, method, path, Range header)
    hits: dict[str, int]

    def _answer(self) -> None:
        self.log.append((time.monotonic(), self.command, self.path, self.headers.get("Range")))
        n = self.hits[self.path] = self.hits.get(self.path, 0) + 1
        path = self.path
        if path == "/gone404":
            self.send_response(404)
        elif path == "/gone410":
            self.send_response(410)
        elif path == "/nohead" and self.command == "HEAD":
            self.send_response(405)
        elif path == "/nohead":
            self.send_response(206)
            self.send_header("Content-Range", "bytes 0-0/1000")
            self.send_header("Content-Length", "1")
            self.end_headers()
            self.wfile.write(b"x")
            return
        elif path == "/busy" and n == 1:
            self.send_response(429)
            self.send_header("Retry-After", "1")
        elif path == "/moved":
            self.send_response(301)
            self.send_header("Location", "/ok")
        else:
            self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_HEAD = do_GET = _answer

    def log_message(self, *args) -> None:  # keep the test output quiet
        pass


@pytest.fixture
def server():
    handler = type("H", (_Handler,), {"log": [], "hits": {}})
    srv = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}", handler
    srv.shutdown()
    srv.server_close()


URLS = {"cc0": "/ok", "ccby": "/gone404", "ccbysa": "/gone410", "pd": "/nohead",
        "yt": "/busy", "nc": "/moved"}


def test_revalidate_and_purge(server, licensed_media, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "yt_dlp", None)  # as if yt-dlp were not installed
    base, handler = server
    rows = [row(v, licensed_media, url=base + p) for v, p in URLS.items()]
    rows.append(row("ncsa", licensed_media, url="https://www.youtube.com/watch?v=aaaaaaaaaaa"))
    rows.append(row("nd", licensed_media, url=""))  # no URL at all
    out = Out(tmp_path / "out")
    run(write_manifest(tmp_path / "m.jsonl", rows), out.path, Config())
    assert len(out.ids()) == 8

    report = revalidate(out.path, rate=10, allow_private_network=True)  # a loopback server
    status = {c.url.rsplit("/", 1)[-1] if c.url else None: (c.status, c.http_status)
              for c in report.checks}
    assert status["ok"] == ("ok", 200)
    assert status["gone404"] == ("gone", 404)
    assert status["gone410"] == ("gone", 410)
    assert status["nohead"] == ("ok", 206)
    assert status["busy"] == ("ok", 200)
    assert status["moved"] == ("ok", 200)
    assert status["watch?v=aaaaaaaaaaa"][0] == "not_checkable", report.render()  # no yt-dlp
    assert status[None][0] == "skipped"
    # robots.txt and tdmrep.json: asked once each, before anything else on the host
    assert [p for _, _, p, _ in handler.log[:2]] == ["/robots.txt", "/.well-known/tdmrep.json"]
    log = [e for e in handler.log if e[2] not in ("/robots.txt", "/.well-known/tdmrep.json")]
    # HEAD first; the one-byte GET only where HEAD was refused; redirects keep HEAD
    assert [(m, r) for _, m, p, r in log if p == "/nohead"] == [("HEAD", None),
                                                                ("GET", "bytes=0-0")]
    assert {m for _, m, p, _ in log if p != "/nohead"} == {"HEAD"}
    busy = [t for t, _, p, _ in log if p == "/busy"]
    assert len(busy) == 2 and busy[1] - busy[0] >= 0.95  # Retry-After: 1 honoured
    # at most 10 requests/s to the host (a redirect's second hop belongs to its request);
    # pairs of gaps, as a late arrival shortens the next gap but lengthens its own
    times = [e[0] for prev, e in itertools.pairwise([None, *log])
             if not (prev and prev[2] == "/moved")]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert all(a + b >= 0.15 for a, b in itertools.pairwise(gaps)), gaps
    assert len(out.ids()) == 8  # without --purge nothing is removed

    handler.hits.clear()
    assert main(["revalidate", str(out.path), "--rate", "50", "--purge",
                 "--allow-private-network"]) == 0
    text = capsys.readouterr().out
    assert "gone" in text and "purged 2 sources" in text
    assert out.ids() == {"cc0", "pd", "yt", "nc", "ncsa", "nd"}
    [record] = out.audit_log()
    assert record["kind"] == "revalidate"
    assert {v["item_key"] for v in record["videos"]} == {"id:ccby", "id:ccbysa"}
    assert {r["reason"] for r in out.rejected() if r["kind"] == "video"} == {"source_gone"}
    assert audit(out.path).ok


def test_a_url_as_typed_into_a_sheet_is_checked_as_it_was_fetched(server):
    """The fetch sends ``/vidéo 1.mp4`` percent-encoded; the check did not, and reported the
    source as an ``InvalidURL`` error instead of checking it."""
    base, handler = server
    limiter = HostLimiter(0.0)
    check = check_url(f"{base}/vidéo 1.mp4", limiter, timeout=5,
                      gate=_gate(5, allow_private=True, limiter=limiter))
    assert (check.status, check.http_status, check.url) == ("ok", 200, f"{base}/vidéo 1.mp4")
    assert ("HEAD", "/vid%C3%A9o%201.mp4") in [(m, p) for _, m, p, _ in handler.log]


def test_video_sites_go_through_yt_dlp_when_it_is_there(tmp_path, monkeypatch):
    calls = []

    class DownloadError(Exception):
        pass

    class YoutubeDL:
        def __init__(self, opts):
            assert opts["skip_download"]

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def extract_info(self, url, download=True, process=True):
            calls.append((url, download))
            if url.endswith("gone1234567"):
                raise DownloadError("ERROR: [youtube] gone1234567: Video unavailable. This "
                                    "video has been removed by the uploader")
            if url.endswith("geo12345678"):
                raise DownloadError("ERROR: Video unavailable. The uploader has not made this "
                                    "video available in your country")
            return {"id": url[-11:]}

    monkeypatch.setitem(sys.modules, "yt_dlp", types.SimpleNamespace(YoutubeDL=YoutubeDL))
    from clipfactory.provenance.revalidate import _check_video_site

    lim = HostLimiter(0.0)
    yt = "https://www.youtube.com/watch?v="
    assert _check_video_site(yt + "alive123456", lim)[0] == "ok"
    assert _check_video_site(yt + "gone1234567", lim)[0] == "gone"
    assert _check_video_site(yt + "geo12345678", lim)[0] == "error"  # blocked is not gone
    assert all(download is False for _, download in calls)


def test_host_limiter_spaces_requests_per_host():
    slept: list[float] = []
    lim = HostLimiter(0.5, sleep=slept.append)
    lim.wait("a")
    lim.wait("b")  # another host does not wait
    lim.wait("a")
    assert len(slept) == 1 and 0.4 < slept[0] <= 0.5
    lim.defer("b", 3.0)
    lim.wait("b")
    assert 2.9 < slept[-1] <= 3.0


def test_retry_after_forms():
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    http_date = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 30))
    assert 25 < parse_retry_after(http_date) <= 31
