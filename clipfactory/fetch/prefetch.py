"""Downloads run ahead of processing, in a bounded thread pool, under a disk budget.

:meth:`Prefetcher.items` turns the pending items into items the executor can process: local
ones as they are, remote ones once fetched (``local_path`` set, ``source`` still the URL).
Failed fetches are not yielded: the driver takes them with :meth:`Prefetcher.failures` and
records them (no clip rows, no files). After a video is recorded the driver calls
:meth:`Prefetcher.release`, which deletes the fetched file unless ``keep_sources``.

The disk budget bounds the fetched files that are waiting or being processed: no new download
starts while they hold ``disk_budget_bytes`` or more, except one when the workers are waiting
and nothing else is downloading (so a budget smaller than one file never stalls the run). Disk
use therefore stays below the budget plus the files in flight (``concurrency`` downloads of at
most ``max_bytes`` each).

A complete download leaves a marker next to its file, so a run killed between fetching and
recording (or a run with ``keep_sources``) does not download it again.

Items that name the same URL (manifest rows that cut several spans of one video, each its own
item) share one download and one file: an item whose URL is being fetched waits for that
download, one whose URL is already here takes the file, and the file is deleted when the last
item holding it is released.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clipfactory.config import FetchConfig
from clipfactory.errors import storage_refused
from clipfactory.fetch.base import FetchError, FetchResult, marker_path, url_key
from clipfactory.fetch.gate import ConsentMode
from clipfactory.fetch.polite import HostPause, Politeness
from clipfactory.fetch.router import Router, needs_fetch
from clipfactory.records import Rejection, SourceItem, VideoResult

__all__ = ["STORAGE_REFUSED", "FetchFailure", "Prefetcher"]

log = logging.getLogger("clipfactory.fetch")
STORAGE_REFUSED = "storage_refused"  # a fetch's reason when its disk refused a write:
# never recorded (the run stops)
_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")


@dataclass(frozen=True)
class FetchFailure:
    """An item whose fetch failed for good in this run."""

    item: SourceItem
    error: FetchError

    def result(self) -> VideoResult:
        """The ledger's view: a rejection at stage ``fetch`` and nothing else."""
        e = self.error
        detail = f"{e.detail} (after {e.attempts} attempt{'s' if e.attempts != 1 else ''})"
        return VideoResult(item=self.item, rejection=Rejection(
            self.item.item_key, self.item.source, e.stage, e.reason, detail.strip(),
            video_id=self.item.id))


def fetched_item(item: SourceItem, res: FetchResult) -> SourceItem:
    """``item`` pointing at its local copy; the URL stays its ``source``. A license or author
    the fetch learned (yt-dlp's ``license``, ``uploader``) fills what the manifest left empty."""
    prov = dict(res.provenance)
    if res.sha256:
        prov.setdefault("sha256", res.sha256)
    return dataclasses.replace(
        item, local_path=res.path, source_url=item.source_url or item.source,
        license=item.license or prov.get("license"),
        attribution=item.attribution or prov.get("uploader") or prov.get("channel"),
        provenance=prov)


def _expected_sha256(item: SourceItem) -> str | None:
    """The SHA-256 the item's manifest row gives for its file, if it gives a valid one."""
    sha = item.extra.get("sha256")
    return sha.lower() if isinstance(sha, str) and _SHA256.match(sha) else None


def _sha_matches(item: SourceItem, res: FetchResult) -> bool:
    expected = _expected_sha256(item)
    return expected is None or (res.sha256 or "").lower() == expected


def _mismatch(item: SourceItem, res: FetchResult) -> FetchFailure:
    """``item`` failed: the file of its URL is not the bytes its row names."""
    return FetchFailure(item, FetchError(
        "checksum_mismatch", f"sha256 {res.sha256} != {_expected_sha256(item)}"))


class Prefetcher:
    """See the module docstring."""

    def __init__(self, cfg: FetchConfig, sources_dir: str | Path, *,
                 router: Router | None = None, politeness: Politeness | None = None,
                 consent: ConsentMode = "enforce") -> None:
        self.cfg = cfg
        self.dir = Path(sources_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.router = router or Router(cfg, consent)
        self._stop = threading.Event()
        self.polite = politeness or Politeness(cfg, stop=self._stop, on_pause=self._on_pause)
        self._pool = ThreadPoolExecutor(max(1, cfg.concurrency), thread_name_prefix="fetch")
        self._cv = threading.Condition()
        self._todo: deque[SourceItem] = deque()
        self._running = 0
        self._ready: deque[SourceItem] = deque()
        self._failed: deque[FetchFailure] = deque()
        self._held: dict[str, FetchResult] = {}  # item key -> its fetched file
        self._inflight: dict[str, list[SourceItem]] = {}  # URL key -> items waiting on it
        self._files: dict[str, tuple[FetchResult, int]] = {}  # URL key -> file, holders
        self._on_disk = 0
        self._starving = False
        self.peak_on_disk = 0
        self.counts = {"fetched": 0, "reused": 0, "failed": 0, "bytes": 0}
        self.fetch_s = 0.0

    @staticmethod
    def _on_pause(p: HostPause) -> None:
        log.warning("pausing %s until %s: %d consecutive HTTP %d answers", p.host,
                    time.strftime("%H:%M:%S", time.localtime(p.until)), p.refusals, p.status)

    # -- the driver's side ----------------------------------------------------------------
    def items(self, pending: Iterable[SourceItem],
              on_failure: Callable[[FetchFailure], None] | None = None
              ) -> Iterator[SourceItem]:
        """Local items at once, remote items as their downloads complete (module docstring).

        ``on_failure`` is called with each failed fetch in the thread that iterates (the
        driver's, which owns the ledger); without it, take them with :meth:`failures`."""
        source: Iterator[SourceItem] | None = iter(pending)
        # ``pending`` is pulled only while few downloads wait to start (downloads start in
        # order anyway), so millions of pending inputs are never held here at once
        ahead = 2 * max(1, self.cfg.concurrency)
        while True:
            while source is not None and len(self._todo) < ahead:
                item = next(source, None)
                if item is None:
                    source = None
                elif needs_fetch(item.source):
                    with self._cv:
                        self._todo.append(item)
                        self._fill()
                else:
                    yield item  # local items need no download
            with self._cv:
                while not self._ready and (self._todo or self._running) \
                        and not (on_failure and self._failed) \
                        and not (source is not None and len(self._todo) < ahead):
                    self._starving = True
                    self._fill()
                    self._cv.wait(0.5)
                self._starving = False
                item = self._ready.popleft() if self._ready else None
                idle = item is None and not (self._todo or self._running) and source is None
            if on_failure is not None:
                for failure in self.failures():
                    on_failure(failure)
            if item is not None:
                yield item
            elif idle:
                return

    def failures(self) -> list[FetchFailure]:
        """Failures since the last call (the driver records them)."""
        with self._cv:
            out = list(self._failed)
            self._failed.clear()
            return out

    def release(self, item: SourceItem) -> None:
        """The item is recorded: delete its fetched file (unless ``keep_sources``)."""
        with self._cv:
            res = self._held.pop(item.item_key, None)
            if res is None:
                return
            key = url_key(item.source)
            _, holders = self._files.pop(key, (res, 1))
            last = holders <= 1
            if last:
                self._on_disk -= res.bytes if res.owned else 0
            else:  # another item of the same URL still reads the file
                self._files[key] = (res, holders - 1)
            self._fill()
            self._cv.notify_all()
        if last and res.owned and not self.cfg.keep_sources:
            Path(res.path).unlink(missing_ok=True)
            self._marker(item.source).unlink(missing_ok=True)

    def close(self) -> None:
        """Stop downloading; unfinished items stay pending, partial files stay for resume.
        Transfers in flight are not waited for (a file that completes later is reused by the
        next run through its marker)."""
        self._stop.set()
        with self._cv:
            self._todo.clear()
        self._pool.shutdown(wait=False, cancel_futures=True)

    def stats(self) -> dict[str, Any]:
        """Counts, bytes, the peak of fetched bytes on disk, and per-host politeness figures."""
        return {**self.counts, "fetch_s": round(self.fetch_s, 3),
                "peak_on_disk_bytes": self.peak_on_disk, "hosts": self.polite.stats(),
                "paused_hosts": [dataclasses.asdict(p) for p in self.polite.pauses()]}

    # -- the download threads ---------------------------------------------------------------
    def _fill(self) -> None:
        """Start downloads while the limits allow (called with the condition held)."""
        while self._todo and self._running < max(1, self.cfg.concurrency) \
                and not self._stop.is_set():
            over = self._on_disk >= self.cfg.disk_budget_bytes
            if over and not (self._starving and self._running == 0 and not self._ready):
                return
            item = self._todo.popleft()
            key = url_key(item.source)
            if key in self._inflight:  # the same URL is downloading: share that download
                self._inflight[key].append(item)
            elif key in self._files and _sha_matches(item, self._files[key][0]):
                # ...or is here, held by another item: share the file
                self._hold([item], key, self._files[key][0])
                self.counts["reused"] += 1
            elif key in self._files:  # here, but not the bytes this row names
                self.counts["failed"] += 1
                self._failed.append(_mismatch(item, self._files[key][0]))
            else:
                self._inflight[key] = []
                self._running += 1
                self._pool.submit(self._fetch_one, item)

    def _hold(self, items: list[SourceItem], key: str, res: FetchResult) -> None:
        """``items`` (of one URL) hold its file ``res`` and are ready (condition held)."""
        had, holders = self._files.get(key, (res, 0))
        if not holders:
            self._on_disk += res.bytes if res.owned else 0
            self.peak_on_disk = max(self.peak_on_disk, self._on_disk)
        self._files[key] = (had, holders + len(items))
        for it in items:
            self._held[it.item_key] = had
            self._ready.append(fetched_item(it, had))

    def _fetch_one(self, item: SourceItem) -> None:
        t0 = time.perf_counter()
        res: FetchResult | None = None
        failure: FetchFailure | None = None
        reused = False
        try:
            res = self._reuse(item.source, _expected_sha256(item))
            reused = res is not None
            if res is None:
                res = self._download(item)
        except Exception as e:
            if storage_refused(e):  # the disk the sources go to: the driver stops the run
                refused = FetchError(STORAGE_REFUSED, f"{type(e).__name__}: {e}")
                refused.__cause__ = e  # what the disk said, for the driver's message
                failure = FetchFailure(item, refused)
            elif isinstance(e, FetchError):
                if e.reason != "interrupted":
                    failure = FetchFailure(item, e)
            else:  # a bug or a library surprise: this item fails, not the run
                log.exception("fetching %s failed unexpectedly", item.source)
                failure = FetchFailure(item, FetchError("fetch_error",
                                                        f"{type(e).__name__}: {e}"))
        with self._cv:
            self._running -= 1
            self.fetch_s += time.perf_counter() - t0
            key = url_key(item.source)
            sharers = [item, *self._inflight.pop(key, [])]  # the items of the same URL
            if res is not None:
                fine = [it for it in sharers if _sha_matches(it, res)]
                for it in sharers:
                    if it not in fine:  # its row names other bytes than the URL gave
                        self.counts["failed"] += 1
                        self._failed.append(_mismatch(it, res))
                # ``item`` is among them: its download (or reuse) was checked against its row
                self._hold(fine, key, res)
                self.counts["reused"] += len(fine) - 1
                self.counts["reused" if reused else "fetched"] += 1
                self.counts["bytes"] += 0 if reused else res.bytes
            elif failure is not None:
                self.counts["failed"] += len(sharers)
                self._failed.extend(dataclasses.replace(failure, item=it) for it in sharers)
            self._fill()
            self._cv.notify_all()

    def _download(self, item: SourceItem) -> FetchResult:
        expected = _expected_sha256(item)
        fetcher = self.router.for_url(item.source)
        res, _ = self.polite.fetch(fetcher, item.source, self.dir, self.cfg.max_bytes, expected)
        if res.owned:
            self._marker(item.source).write_text(
                json.dumps(dataclasses.asdict(res), default=str), encoding="utf-8")
        return res

    def _marker(self, url: str) -> Path:
        return marker_path(self.dir, url)

    def _reuse(self, url: str, expected_sha256: str | None = None) -> FetchResult | None:
        """A complete earlier download of ``url`` in the sources folder, if there is one (and
        its bytes are the ``expected_sha256`` the item's manifest row names: an earlier
        version of the file is fetched again, and checked, not cut)."""
        marker = self._marker(url)
        if not marker.is_file():
            return None
        try:
            res = FetchResult(**json.loads(marker.read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError):
            return None
        p = Path(res.path)
        if expected_sha256 and (res.sha256 or "").lower() != expected_sha256.lower():
            return None
        return res if p.is_file() and p.stat().st_size == res.bytes else None
