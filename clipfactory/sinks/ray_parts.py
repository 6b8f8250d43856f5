"""Index parts written by Ray tasks (``executor: ray``), for finalizes that rewrite many.

The driver owns the ledger: it reads each stale shard's clip rows (JSON records, a few KB a
clip) and ships them in batches; a task rebuilds the records, builds each part's Arrow table
(:func:`clipfactory.sinks.index.index_table`), writes the part into the output folder (shared
storage on a cluster, like ``staging/``: docs/ray.md) and returns the part's statistics, which
the driver records (:func:`clipfactory.sinks.partition.refresh_parts`). Workers never open
SQLite. A part is written atomically and only recorded once written, so a task Ray re-runs, or
a finalize killed meanwhile, leaves nothing wrong behind.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from clipfactory.config import Config
from clipfactory.sinks.index import index_table
from clipfactory.sinks.partition import ClipRow, PartsMapper, StatsOf, clips_of_rows
from clipfactory.sinks.parts import INDEX_DIR, index_part, write_part

__all__ = ["map_parts_ray", "parts_mapper"]

log = logging.getLogger("clipfactory")

BATCH_SHARDS = 64  # shards per task: a part takes milliseconds, a task a few
BATCH_BYTES = 16 << 20  # and at most this much JSON per task (object-store memory)


def parts_mapper(cfg: Config) -> PartsMapper | None:
    """What finalize passes to ``refresh_parts``: Ray tasks under ``executor: ray`` (joined
    only when enough parts are stale to need them), else None (parts are written here)."""
    if cfg.executor != "ray":
        return None
    return functools.partial(map_parts_ray, address=cfg.ray_address, num_cpus=cfg.worker_count)


def write_parts(out: str, batch: list[tuple[str, list[ClipRow]]],
                stats_of: StatsOf) -> list[tuple[str, dict[str, Any]]]:
    """The body of one task: write each shard's index part; return (shard, stats) of each."""
    done = []
    for shard, rows in batch:
        clips = clips_of_rows(rows)
        write_part(index_table(clips), index_part(out, shard))
        done.append((shard, stats_of(clips)))
    return done


def _batches(jobs: Iterable[tuple[str, list[ClipRow]]]
             ) -> Iterator[list[tuple[str, list[ClipRow]]]]:
    batch: list[tuple[str, list[ClipRow]]] = []
    size = 0
    for shard, rows in jobs:
        batch.append((shard, rows))
        size += sum(len(r[0]) for r in rows)
        if len(batch) >= BATCH_SHARDS or size >= BATCH_BYTES:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


def map_parts_ray(out: Path, jobs: Iterable[tuple[str, list[ClipRow]]], stats_of: StatsOf, *,
                  address: str | None = None, num_cpus: int = 1
                  ) -> Iterator[tuple[str, dict[str, Any]]]:
    """Write the parts of ``jobs`` as Ray tasks; yield (shard, stats) as tasks complete.

    Joins Ray as the executor does (an open connection is reused) and checks first that every
    node sees the output folder. At most twice the cluster's CPUs tasks are in flight, and
    ``jobs`` is pulled only as they drain, so driver and object store hold a few batches.
    """
    from clipfactory.exec.ray import check_shared_storage, connected

    root = Path(out).resolve()  # workers on other nodes do not share our cwd
    with connected(address, num_cpus) as ray:
        check_shared_storage(ray, root / INDEX_DIR)
        task = ray.remote(write_parts).options(num_cpus=1, name="clipfactory.index_parts")
        limit = max(2, 2 * int(ray.cluster_resources().get("CPU", 1)))
        running: list[Any] = []
        tasks = 0
        try:
            for batch in _batches(jobs):
                running.append(task.remote(str(root), batch, stats_of))
                tasks += 1
                while len(running) >= limit:
                    ready, running = ray.wait(running, num_returns=1)
                    yield from ray.get(ready[0])
            while running:
                ready, running = ray.wait(running, num_returns=1)
                yield from ray.get(ready[0])
            log.info("index parts: written by %d Ray tasks", tasks)
        finally:
            for ref in running:  # stopped early (an error): free the cluster
                ray.cancel(ref)
