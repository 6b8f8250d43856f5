"""The driver's fetch step: what :func:`clipfactory.pipeline.run` calls around the executor.

The driver owns fetching because politeness needs one view of every host. Pending items with
URLs go through the :class:`~clipfactory.fetch.prefetch.Prefetcher`; the executor gets local
paths. A failed fetch is recorded at once as a failed input (stage ``fetch``, a specific reason,
the attempts, the last error and a next retry time) and nothing else: no clip rows, no files.
A refusal by a site's consent signals is stage ``consent``, with its evidence in the ledger.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from clipfactory.config import Config
from clipfactory.consent.store import record_consent
from clipfactory.errors import StorageRefused, storage_refusal
from clipfactory.fetch.base import sources_dir
from clipfactory.fetch.prefetch import STORAGE_REFUSED, FetchFailure, Prefetcher
from clipfactory.fetch.router import needs_fetch
from clipfactory.ledger import Ledger
from clipfactory.records import SourceItem, VideoResult

__all__ = ["FetchStage", "next_retry_at"]

log = logging.getLogger("clipfactory")


def next_retry_at(failure: FetchFailure, attempts_before: int, base_s: float,
                  now: float | None = None) -> float | None:
    """When a failed item may be fetched again (epoch seconds), or None when retrying cannot
    help (a 404, a body over the size limit, HTML instead of a video, ...). The delay doubles
    with each failed run and is never shorter than the server's Retry-After or a host pause."""
    e = failure.error
    if not e.retryable:
        return None
    now = time.time() if now is None else now
    delay = base_s * 2 ** min(max(0, attempts_before), 10)
    return now + max(delay, e.retry_after or 0.0)


class FetchStage:
    """Wraps the pending items for the executor and records fetch failures in the ledger."""

    def __init__(self, cfg: Config, out: Path, ledger: Ledger,
                 on_failure: Callable[[VideoResult], None] | None = None) -> None:
        self.cfg = cfg
        self.dir = sources_dir(out, cfg.fetch.sources_dir)
        self.ledger = ledger
        self.on_failure = on_failure
        self.prefetcher: Prefetcher | None = None
        self.failed = 0

    def wrap(self, pending: Iterable[SourceItem]) -> Iterator[SourceItem]:
        """``pending`` as it comes until an item needs fetching, then the prefetcher's stream
        of that item and the rest. Pulled lazily: ``pending`` may be the ledger's cursor over
        millions of inputs, so it is never looked through ahead of the executor."""
        items = iter(pending)
        for item in items:
            if not needs_fetch(item.source):
                yield item
                continue
            self.prefetcher = Prefetcher(self.cfg.fetch, self.dir,
                                         consent=self.cfg.policy.consent)
            yield from self._with_evidence(self.prefetcher.items(
                itertools.chain([item], items), on_failure=self._record_failure))
            return

    def _with_evidence(self, items: Iterable[SourceItem]) -> Iterator[SourceItem]:
        """Store what the sites said about each fetched item (signals recorded, not enforced,
        or an empty list that clears an earlier refusal)."""
        for item in items:
            if needs_fetch(item.source):
                record_consent(self.ledger, item.item_key,
                               item.provenance.get("consent") or [], enforced=False)
            yield item

    def _record_failure(self, failure: FetchFailure) -> None:
        if failure.error.reason == STORAGE_REFUSED:  # not the item's fault: it stays pending
            raise StorageRefused(f"fetching {failure.item.source}: {failure.error.detail}",
                                 storage_refusal(failure.error) or "full") from failure.error
        if failure.error.stage == "consent":
            record_consent(self.ledger, failure.item.item_key, failure.error.evidence,
                           enforced=True)
        row = self.ledger.db.execute("SELECT attempts FROM videos WHERE item_key = ?",
                                     (failure.item.item_key,)).fetchone()
        result = failure.result()
        self.ledger.record(result, next_retry_at(failure, row[0] if row else 0,
                                                 self.cfg.fetch.retry_delay_s))
        self.failed += 1
        if self.on_failure is not None:
            self.on_failure(result)

    def done(self, result: VideoResult) -> None:
        """The video is recorded: its fetched file may go."""
        if self.prefetcher is not None:
            self.prefetcher.release(result.item)

    def close(self) -> dict[str, Any] | None:
        """Stop fetching; report host pauses (log and ledger events); return the fetch stats."""
        if self.prefetcher is None:
            return None
        self.prefetcher.close()
        for failure in self.prefetcher.failures():  # finished while the run was stopping
            if failure.error.reason != STORAGE_REFUSED:  # (those stay pending)
                self._record_failure(failure)
        stats = self.prefetcher.stats()
        for pause in self.prefetcher.polite.pauses():
            self.ledger.event("host_paused", dataclasses.asdict(pause))
            log.warning("host %s was paused after %d consecutive HTTP %d answers; its items "
                        "failed with host_paused_%d and are retried by `clipfactory retry` "
                        "after %s", pause.host, pause.refusals, pause.status, pause.status,
                        time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(pause.until)))
        log.info("fetch: %d fetched (%d bytes), %d reused, %d failed", stats["fetched"],
                 stats["bytes"], stats["reused"], stats["failed"])
        return stats
