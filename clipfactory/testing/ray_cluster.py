"""A real multi-node Ray cluster on this machine, for tests and benchmarks of the Ray paths."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

__all__ = ["local_cluster", "skip_unless_ray_asked", "two_node_cluster"]


@contextlib.contextmanager
def local_cluster(nodes: int = 2, cpus: int = 1, store_bytes: int = 80 << 20) -> Iterator[str]:
    """A head without CPUs (it keeps the driver's objects, as on a real cluster) and ``nodes``
    worker nodes of ``cpus`` CPUs each, each its own raylet and object store, so task
    arguments and results really cross between nodes. Connected for the block; yields the
    address."""
    import ray
    from ray.cluster_utils import Cluster

    c = Cluster(initialize_head=True, connect=False,
                head_node_args={"num_cpus": 0, "include_dashboard": False,
                                "object_store_memory": store_bytes})
    try:
        for _ in range(nodes):
            c.add_node(num_cpus=cpus, object_store_memory=store_bytes)
        ray.init(address=c.address, logging_level=logging.WARNING, configure_logging=False)
        c.wait_for_nodes()
        yield c.address
    finally:
        ray.shutdown()
        c.shutdown()


def skip_unless_ray_asked(request: Any) -> None:
    """A cluster costs CPU time: its tests run only under ``-m ray`` (as .ci/run does)."""
    import pytest

    if "ray" not in (request.config.getoption("markexpr") or "").replace("not ray", ""):
        pytest.skip("Ray cluster tests run with -m ray")


def two_node_cluster() -> Iterator[str]:
    """For a module fixture: a head without CPUs and two 1-CPU nodes, its address."""
    with local_cluster(nodes=2, cpus=1) as address:
        yield address
