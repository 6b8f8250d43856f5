"""Downloads run ahead of processing under a disk budget and the per-host limits."""

from __future__ import annotations

from pathlib import Path

from clipfactory.config import FetchConfig
from clipfactory.fetch.prefetch import Prefetcher
from clipfactory.records import SourceItem
from clipfactory.testing.loopback import LoopbackServer


def _items(server, body, n, prefix="/v"):
    return [SourceItem(item_key=f"k{i}", source=server.add(f"{prefix}{i}.mp4", body))
            for i in range(n)]


def _cfg(**kw):
    return FetchConfig(**{**dict(rate_per_host=0, backoff_base_s=0.02, allow_private_network=True),
                          **kw})


def test_the_server_never_sees_more_than_the_per_host_limit(video_bytes, tmp_path):
    with LoopbackServer() as a, LoopbackServer() as b:
        items = []
        for srv in (a, b):  # trickled, so that transfers overlap
            for i in range(6):
                url = srv.add(f"/v{i}.mp4", video_bytes[:6000], fault="trickle",
                              trickle_bytes=2000, trickle_s=0.03)
                items.append(SourceItem(item_key=f"{srv.port}:{i}", source=url))
        pre = Prefetcher(_cfg(concurrency=8, per_host=2), tmp_path)
        got = []
        for item in pre.items(items):
            got.append(item)
            pre.release(item)
        pre.close()
        assert len(got) == 12 and not pre.failures()
        assert a.max_in_flight == 2 and b.max_in_flight == 2
        assert all(s["max_in_flight"] == 2 for s in pre.stats()["hosts"].values())


def test_disk_budget_bounds_files_fetched_ahead(server, video_bytes, tmp_path):
    size = len(video_bytes)
    items = _items(server, video_bytes, 6)
    pre = Prefetcher(_cfg(concurrency=4, per_host=4, disk_budget_bytes=2 * size), tmp_path)
    seen = []
    for item in pre.items(items):
        # files on disk (waiting or in processing) never pass the budget plus one in flight
        on_disk = [p for p in tmp_path.glob("*.mp4")]
        assert len(on_disk) <= 2 + 4
        seen.append(item)
        assert item.local_path and item.source.startswith("http://127.0.0.1")
        assert item.provenance["sha256"] and item.provenance["fetcher"] == "http"
        pre.release(item)
        assert not Path(item.local_path).exists()  # deleted once recorded
    pre.close()
    assert len(seen) == 6
    assert pre.peak_on_disk <= 2 * size + 4 * size


def test_a_budget_smaller_than_one_file_still_makes_progress(server, video_bytes, tmp_path):
    items = _items(server, video_bytes, 3)
    pre = Prefetcher(_cfg(concurrency=2, disk_budget_bytes=10), tmp_path)
    got = []
    for item in pre.items(items):
        got.append(item)
        # over budget, only the downloads already in flight (concurrency 2) are on disk
        assert len(list(tmp_path.glob("*.mp4"))) <= 2
        pre.release(item)
    pre.close()
    assert len(got) == 3 and pre.peak_on_disk <= 2 * len(video_bytes)


def test_kept_sources_are_reused_without_a_request(server, video_bytes, tmp_path):
    items = _items(server, video_bytes, 2)
    pre = Prefetcher(_cfg(keep_sources=True), tmp_path)
    first = list(pre.items(items))
    for item in first:
        pre.release(item)
    pre.close()
    assert len(list(tmp_path.glob("*.mp4"))) == 2 and server.media_requests == 2
    asked = server.requests  # robots.txt and tdmrep.json once, then the two files
    pre = Prefetcher(_cfg(), tmp_path)
    again = list(pre.items(items))
    pre.close()
    assert server.requests == asked and pre.counts["reused"] == 2
    assert sorted(i.local_path for i in again) == sorted(i.local_path for i in first)


def test_failures_are_reported_not_yielded(server, video_bytes, tmp_path):
    items = [*_items(server, video_bytes, 2),
             SourceItem(item_key="gone", source=server.url("/gone.mp4"))]
    failed = []
    pre = Prefetcher(_cfg(), tmp_path)
    got = [i.item_key for i in pre.items(items, on_failure=failed.append)]
    pre.close()
    assert sorted(got) == ["k0", "k1"]
    assert [(f.item.item_key, f.error.reason) for f in failed] == [("gone", "http_404")]
    r = failed[0].result()
    assert (r.rejection.stage, r.rejection.reason) == ("fetch", "http_404")
    assert r.clips == [] and "1 attempt" in r.rejection.detail


def test_local_items_pass_through(video_file, tmp_path):
    item = SourceItem(item_key="local", source=str(video_file))
    pre = Prefetcher(_cfg(), tmp_path / "src")
    assert list(pre.items([item])) == [item]
    pre.close()


def test_pending_items_are_pulled_as_downloads_start(server, video_bytes, tmp_path):
    """A long backlog (the ledger's pages) is not read ahead: the first fetched item comes
    out after a handful were pulled, not all of them."""
    pulled = []

    def pending():
        for i in range(40):
            pulled.append(i)
            yield SourceItem(item_key=f"k{i}", source=server.add(f"/p{i}.mp4", video_bytes))

    pre = Prefetcher(_cfg(concurrency=2, per_host=2), tmp_path)
    got = []
    for item in pre.items(pending()):
        if not got:
            assert len(pulled) <= 12  # 2 downloading, 4 queued, a few done and waiting
        got.append(item.item_key)
        pre.release(item)
    pre.close()
    assert sorted(got) == sorted(f"k{i}" for i in range(40)) and len(pulled) == 40


def test_items_of_one_url_share_one_download_and_one_file(server, video_bytes, tmp_path):
    """Manifest rows that cut several spans of one video are items with one URL. They wrote
    the same partial and final files at once (a download failed renaming its metadata), or
    the first item's release deleted the file the next one was about to read."""
    url = server.add("/v/one.mp4", video_bytes, fault="trickle", trickle_bytes=4000,
                     trickle_s=0.02)  # slow enough that the three items overlap
    other = server.add("/v/other.mp4", video_bytes)
    items = [SourceItem(item_key=f"span{i}", source=url) for i in range(3)]
    items.append(SourceItem(item_key="other", source=other))
    pre = Prefetcher(_cfg(concurrency=4, per_host=4), tmp_path)
    got = {item.item_key: item for item in pre.items(items)}
    assert sorted(got) == ["other", "span0", "span1", "span2"] and not pre.failures()
    assert server.media_requests == 2  # one download per URL
    shared = {got[f"span{i}"].local_path for i in range(3)}
    assert len(shared) == 1
    path = Path(shared.pop())
    assert path.read_bytes() == video_bytes
    assert pre.counts["fetched"] == 2 and pre.counts["reused"] == 2
    assert pre.peak_on_disk == 2 * len(video_bytes)  # the shared file counted once
    for key in ("span0", "span1"):
        pre.release(got[key])
        assert path.read_bytes() == video_bytes  # still held by another item
    pre.release(got["span2"])
    assert not path.exists()  # gone with the last item that held it
    pre.release(got["other"])
    pre.close()
    assert not list(tmp_path.glob("*.mp4")) and not list(tmp_path.glob("*.fetch.json"))


def test_an_item_of_a_url_already_fetched_takes_that_file(server, video_bytes, tmp_path):
    """The second item of a URL starts after the first's download completed: it takes the
    file without a request, and releasing the first does not delete it from under it."""
    url = server.add("/v/one.mp4", video_bytes)
    first, second = (SourceItem(item_key=k, source=url) for k in ("a", "b"))
    pre = Prefetcher(_cfg(concurrency=1), tmp_path)
    it = pre.items([first, second])
    a = next(it)
    b = next(it)
    assert server.media_requests == 1 and a.local_path == b.local_path
    pre.release(a)
    assert Path(b.local_path).read_bytes() == video_bytes
    pre.release(b)
    assert not Path(b.local_path).exists()
    assert list(it) == []
    pre.close()


def test_a_failed_download_fails_every_item_of_its_url(server, video_bytes, tmp_path):
    gone = server.url("/gone.mp4")
    items = [SourceItem(item_key=f"k{i}", source=gone) for i in range(3)]
    failed = []
    pre = Prefetcher(_cfg(concurrency=3), tmp_path)
    assert list(pre.items(items, on_failure=failed.append)) == []
    pre.close()
    assert sorted((f.item.item_key, f.error.reason) for f in failed) == [
        ("k0", "http_404"), ("k1", "http_404"), ("k2", "http_404")]
    assert server.media_requests == 1  # one request for the URL


def test_a_kept_download_of_other_bytes_than_the_row_names_is_not_reused(server, video_bytes,
                                                                          tmp_path):
    """A file kept from an earlier run (its marker beside it) was handed back for any row of
    its URL, even one whose `sha256` names other bytes: the clips were cut from the old
    version. It is fetched again and checked; bytes that still differ fail the row."""
    import hashlib

    url = server.add("/v/a.mp4", video_bytes)
    pre = Prefetcher(_cfg(keep_sources=True), tmp_path)
    [first] = list(pre.items([SourceItem(item_key="k", source=url)]))
    pre.release(first)
    pre.close()
    newer = video_bytes + b"\0" * 64  # the server's file now (other bytes)
    server.add("/v/a.mp4", newer)
    sha = hashlib.sha256(newer).hexdigest()
    pre = Prefetcher(_cfg(keep_sources=True), tmp_path)
    [again] = list(pre.items([SourceItem(item_key="k", source=url, extra={"sha256": sha})]))
    pre.close()
    assert Path(again.local_path).read_bytes() == newer and server.media_requests == 2
    assert pre.counts["fetched"] == 1 and pre.counts["reused"] == 0
    wrong = SourceItem(item_key="w", source=url, extra={"sha256": "ab" * 32})
    twin = SourceItem(item_key="t", source=url)  # shares the download, names no sha256
    failed = []
    pre = Prefetcher(_cfg(), tmp_path)
    got = [i.item_key for i in pre.items([twin, wrong], on_failure=failed.append)]
    pre.close()
    assert got == ["t"]
    assert [(f.item.item_key, f.error.reason) for f in failed] == [("w", "checksum_mismatch")]
