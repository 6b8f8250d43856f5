"""A real multi-node Ray cluster on this machine, for tests and benchmarks of the Ray paths."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

__all__ = ["local_cluster"]


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
