"""Near-duplicate grouping with its LSH tables as Ray tasks (``executor: ray``).

The hash matrix of one K (``n x K`` uint64: 40 MB for 10**6 clips of 5 frames) and its rank
go to the object store once; each (frame position, band) table is one task running
:func:`clipfactory.dedup.perceptual.table_pairs` on them and returning the pairs it joins (a
forest: at most ``n - 1`` pairs, usually a handful). The driver only unions the pairs and
builds the groups, exactly as the in-memory path does, so the groups are the same.

Workers need nothing but clipfactory and numpy: no ledger, no files.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from clipfactory.config import Config
from clipfactory.dedup.perceptual import Table, TablePairs, near_duplicate_groups, table_pairs

__all__ = ["NearGroups", "map_tables_ray", "near_duplicate_groups_ray", "near_groups_for"]

NearGroups = Callable[..., list[list[int]]]  # the signature of near_duplicate_groups


def map_tables_ray(hashes: np.ndarray, rank: np.ndarray, tables: list[Table],
                   max_hamming: float, window: int) -> Iterator[TablePairs]:
    """Every table as one Ray task on the connected cluster; results in table order.

    The tables of one K are few (K x bands, 10-20), so all are submitted at once and Ray
    spreads them over its CPUs; the driver unions each result as it is taken.
    """
    from clipfactory.exec.ray import import_ray

    ray = import_ray()
    # table_pairs is a module-level function: workers import it by name
    task = ray.remote(table_pairs).options(num_cpus=1, name="clipfactory.lsh_table")
    h_ref, r_ref = ray.put(hashes), ray.put(rank)  # once, shared by every task of this K
    refs = [task.remote(h_ref, r_ref, t, max_hamming, window) for t in tables]
    taken = 0
    try:
        for ref in refs:
            found: TablePairs = ray.get(ref)
            taken += 1
            yield found
    finally:
        for ref in refs[taken:]:  # the caller stopped early (an error): free the cluster
            ray.cancel(ref)


def near_duplicate_groups_ray(
    phashes: Sequence[Sequence[int]],
    max_hamming: float,
    *,
    window: int = 32,
    bands: int | None = None,
    stats: dict[str, Any] | None = None,
) -> list[list[int]]:
    """:func:`~clipfactory.dedup.perceptual.near_duplicate_groups` with the tables on Ray:
    the same groups, in the same order. Uses the open Ray connection, else joins
    ``RAY_ADDRESS`` or starts a private instance for the call."""
    from clipfactory.exec.ray import connected

    with connected(None, os.cpu_count() or 1):
        return near_duplicate_groups(phashes, max_hamming, window=window, bands=bands,
                                     stats=stats, map_tables=map_tables_ray)


@contextlib.contextmanager
def near_groups_for(cfg: Config) -> Iterator[NearGroups]:
    """The near-duplicate grouping a command with ``cfg`` uses: in memory, or on Ray for
    ``executor: ray``, joined (``ray_address``, ``RAY_ADDRESS`` or a private instance with
    ``workers`` CPUs) for the whole block so that later Ray steps share the connection."""
    if cfg.executor != "ray":
        yield near_duplicate_groups
        return
    from clipfactory.exec.ray import connected

    with connected(cfg.ray_address, cfg.worker_count):
        yield near_duplicate_groups_ray
