"""The loopback HTTP server's count of requests in flight, which the fetch tests read to check
per-host politeness: a request stops counting before the client can have all of its answer, so
a client that sends its next request on reading the last byte is never seen as overlapping."""

from __future__ import annotations

import http.client

from clipfactory.testing.loopback import LoopbackServer


def test_answers_without_a_body_stop_counting_before_the_client_has_them():
    with LoopbackServer() as srv:
        srv.add("/v.mp4", b"x" * 1000)
        host, port = srv.url("/").split("//")[1].rstrip("/").split(":")
        for i in range(300):  # one connection at a time, each opened as the last one answered
            conn = http.client.HTTPConnection(host, int(port), timeout=10)
            method, path = [("GET", "/missing"), ("HEAD", "/v.mp4"), ("HEAD", "/missing"),
                            ("GET", "/v.mp4")][i % 4]
            conn.request(method, path)
            resp = conn.getresponse()
            resp.read()
            assert resp.status == (404 if path == "/missing" else 200)
            conn.close()
        assert srv.requests == 300
        assert srv.max_in_flight == 1
