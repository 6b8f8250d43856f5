"""OpenAIChatClient against a real HTTP server on 127.0.0.1 (clipfactory.testing.vlm_server)."""

from __future__ import annotations

import io
import logging
import threading
import time

import numpy as np
import pytest
from PIL import Image

from clipfactory.annotate.vlm_client import OpenAIChatClient
from clipfactory.annotate.vlm_types import ChatResult, VLMError
from clipfactory.testing.vlm_server import VLMServer, describe_image

FAST = {"backoff_base_s": 0.01, "backoff_max_s": 0.02}


def jpeg(rgb: tuple[int, int, int], size: tuple[int, int] = (64, 36)) -> bytes:
    arr = np.zeros((size[1], size[0], 3), np.uint8)
    arr[:] = rgb
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "JPEG", quality=95)
    return buf.getvalue()


def expected(frames: list[bytes]) -> str:
    """What the server should say, predicted from the decoded frames."""
    decoded = [np.asarray(Image.open(io.BytesIO(f)).convert("RGB")) for f in frames]
    return "; ".join(f"frame {i}: {describe_image(a)}" for i, a in enumerate(decoded, 1))


@pytest.fixture
def server():
    with VLMServer() as srv:
        yield srv


def chat_requests(srv: VLMServer) -> list[dict]:
    return [r for r in srv.requests if r["path"] == "/v1/chat/completions"]


def test_caption_describes_the_frames_sent(server):
    red, blue = jpeg((220, 30, 30)), jpeg((30, 60, 220), (32, 32))
    client = OpenAIChatClient(server.base_url, "fake-vlm",
                              params={"temperature": 0.0, "max_tokens": 64})
    res = client.caption("Describe the clip.", [red, blue], params={"seed": 7})
    assert isinstance(res, ChatResult) and res.status == "ok" and res.attempts == 1
    assert res.text == expected([red, blue])
    assert res.text.startswith("frame 1: 64x36, mostly red") and "frame 2: 32x32, mostly blue" in res.text
    assert res.usage["completion_tokens"] > 0
    (req,) = chat_requests(server)
    body = req["body"]
    assert body["model"] == "fake-vlm" and body["temperature"] == 0.0
    assert body["max_tokens"] == 64 and body["seed"] == 7
    parts = body["messages"][0]["content"]
    assert [p["type"] for p in parts] == ["image_url", "image_url", "text"]
    assert parts[0]["image_url"] == {"mime": "image/jpeg", "bytes": len(red)}
    assert parts[2]["text"] == "Describe the clip."
    assert "Authorization" not in req["headers"]


def test_different_frames_get_different_captions(server):
    client = OpenAIChatClient(server.base_url, "fake-vlm")
    green, yellow = jpeg((30, 160, 40)), jpeg((240, 220, 40))
    a, b = client.caption("x", [green]).text, client.caption("x", [yellow]).text
    assert a != b and "mostly green" in a and "mostly yellow" in b


def test_video_part(server):
    client = OpenAIChatClient(server.base_url, "fake-vlm")
    res = client.caption("what happens?", video=b"\x00\x00\x00\x18ftypmp42" + bytes(100))
    assert res.text == "a video of 112 bytes"
    part = chat_requests(server)[0]["body"]["messages"][0]["content"][0]
    assert part == {"type": "video_url", "video_url": {"mime": "video/mp4", "bytes": 112}}


def test_server_error_then_success_is_retried(server):
    server.script = [("status", 500)]
    res = OpenAIChatClient(server.base_url, "m", **FAST).caption("x", [jpeg((0, 0, 0))])
    assert res.attempts == 2 and "mostly black" in res.text


def test_429_honours_retry_after(server):
    server.script = [("status", 429, 1)]
    res = OpenAIChatClient(server.base_url, "m", backoff_base_s=0.0).caption("x", [jpeg((255,) * 3)])
    assert res.attempts == 2 and "mostly white" in res.text
    first, second = chat_requests(server)
    assert second["time"] - first["time"] >= 0.9


def test_429_longer_than_max_wait_gives_up_at_once(server):
    server.script = [("status", 429, 600)]
    client = OpenAIChatClient(server.base_url, "m", max_wait_s=5.0, **FAST)
    start = time.monotonic()
    with pytest.raises(VLMError) as info:
        client.caption("x", [jpeg((0, 0, 0))])
    assert info.value.reason == "rate_limited" and info.value.attempts == 1
    assert time.monotonic() - start < 0.5 and len(chat_requests(server)) == 1


def test_persistent_500_exhausts_attempts(server):
    server.script = [("status", 500)] * 5
    client = OpenAIChatClient(server.base_url, "m", max_attempts=3, **FAST)
    with pytest.raises(VLMError) as info:
        client.caption("x", [jpeg((0, 0, 0))])
    assert info.value.reason == "http_500" and info.value.attempts == 3
    assert len(chat_requests(server)) == 3


def test_slow_reply_times_out_after_retries(server):
    server.script = [("slow", 2.0), ("slow", 2.0)]
    client = OpenAIChatClient(server.base_url, "m", timeout_s=0.3, max_attempts=2, **FAST)
    start = time.monotonic()
    with pytest.raises(VLMError) as info:
        client.caption("x", [jpeg((0, 0, 0))])
    assert info.value.reason == "timeout" and info.value.attempts == 2
    assert time.monotonic() - start < 1.5


def test_one_slow_reply_then_success(server):
    server.script = [("slow", 2.0)]
    client = OpenAIChatClient(server.base_url, "m", timeout_s=0.3, max_attempts=2, **FAST)
    assert client.caption("x", [jpeg((0, 0, 0))]).attempts == 2


def test_truncated(server):
    server.script = [("truncated",)]
    frame = jpeg((240, 140, 20))
    res = OpenAIChatClient(server.base_url, "m").caption("x", [frame])
    assert res.status == "truncated" and res.finish_reason == "length"
    assert res.text and expected([frame]).startswith(res.text) and res.text != expected([frame])


def test_garbage_is_bad_response(server):
    server.script = [("garbage",)]
    with pytest.raises(VLMError) as info:
        OpenAIChatClient(server.base_url, "m", **FAST).caption("x", [jpeg((0, 0, 0))])
    assert info.value.reason == "bad_response" and "not JSON" in info.value.detail


def test_400_is_not_retried(server):
    server.script = [("status", 400)]
    with pytest.raises(VLMError) as info:
        OpenAIChatClient(server.base_url, "m", **FAST).caption("x", [jpeg((0, 0, 0))])
    assert info.value.reason == "http_400" and "scripted status 400" in info.value.detail
    assert len(chat_requests(server)) == 1


def _colours(n: int) -> list[tuple[int, int, int]]:
    return [(10 + 20 * i, 240 - 15 * i, 40 + 10 * i) for i in range(n)]


def test_map_bounds_concurrency_and_keeps_order(server):
    server.script = [("delay_all", 0.3)]
    frames = [jpeg(c) for c in _colours(12)]
    client = OpenAIChatClient(server.base_url, "m", concurrency=3)
    results = client.map([(f"clip {i}", [f], None) for i, f in enumerate(frames)])
    assert [r.text for r in results] == [expected([f]) for f in frames]
    assert len(set(r.text for r in results)) == 12
    assert 2 <= server.max_in_flight <= 3


def test_limit_is_shared_by_clients_of_one_endpoint(server):
    server.delay_s = 0.3
    frames = [jpeg(c) for c in _colours(6)]
    out: dict[int, list] = {}

    def run(k: int) -> None:
        client = OpenAIChatClient(server.base_url + "/", "m", concurrency=3)
        out[k] = client.map([("x", [f], None) for f in frames])

    threads = [threading.Thread(target=run, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert server.max_in_flight <= 3 and len(chat_requests(server)) == 12
    assert [r.text for r in out[0]] == [r.text for r in out[1]] == [expected([f]) for f in frames]


def test_map_returns_errors_as_values(server):
    server.script = [("status", 400)]
    client = OpenAIChatClient(server.base_url, "m", concurrency=1, **FAST)
    results = client.map([("a", [jpeg((0, 0, 0))], None), ("b", [b"not an image"], None)])
    assert isinstance(results[0], VLMError) and results[0].reason == "http_400"
    assert isinstance(results[1], VLMError) and results[1].reason == "http_400"  # undecodable


def test_api_key_is_sent_and_never_shown(caplog):
    caplog.set_level(logging.DEBUG)
    key, wrong = "sk-right-7c1e9a", "sk-wrong-4b2d8f"
    with VLMServer(api_key=key) as srv:
        res = OpenAIChatClient(srv.base_url, "m", api_key=key).caption("x", [jpeg((0, 0, 0))])
        assert "mostly black" in res.text
        assert srv.requests[0]["headers"]["Authorization"] == f"Bearer {key}"
        for given in (wrong, None):
            client = OpenAIChatClient(srv.base_url, "m", api_key=given, **FAST)
            with pytest.raises(VLMError) as info:
                client.caption("x", [jpeg((0, 0, 0))])
            err = info.value
            assert err.reason == "http_401" and err.attempts == 1
            assert wrong not in str(err) and wrong not in repr(err) and wrong not in err.detail
            assert wrong not in repr(client)
        assert len(srv.requests) == 3  # 401 is not retried
    assert key not in caplog.text and wrong not in caplog.text


def test_dead_port_is_unreachable():
    with VLMServer() as srv:
        url = srv.base_url
    with pytest.raises(VLMError) as info:
        OpenAIChatClient(url, "m", max_attempts=2, **FAST).caption("x", [jpeg((0, 0, 0))])
    assert info.value.reason == "unreachable" and info.value.attempts == 2


def test_models_endpoint(server):
    import json
    import urllib.request

    with urllib.request.urlopen(server.base_url + "/models", timeout=5) as resp:
        assert json.loads(resp.read())["data"][0]["id"] == "fake-vlm"


def test_reserved_params_are_refused():
    with pytest.raises(ValueError):
        OpenAIChatClient("http://127.0.0.1:1/v1", "m", params={"messages": []})
