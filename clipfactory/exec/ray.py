"""Ray executor: the per-video task on an existing Ray cluster (the only module importing ray).

The driver keeps the ledger; the cluster only ever sees small records (the source item, the
config, the :class:`VideoResult`) and paths. Pixels stay in the worker that decodes them, and
clip files are written under ``staging/``, which must be on storage every node mounts at the
same path (checked before the first video).

Two ways to run a video:

* tasks (the default): one ``ray.remote`` task per video with ``cpus_per_video`` CPUs; Ray
  re-runs a task whose worker or node died up to ``max_retries`` times;
* actors, when the work needs something loaded once (a model-backed shot detector) or a GPU
  (``gpus_per_video > 0``, fractions share a GPU), or when ``ray.actors`` forces it: a pool of
  long-lived video workers that run their setup in the constructor
  (:mod:`clipfactory.exec.ray_actors`).

Either way at most ``max_in_flight`` videos are submitted and not yet recorded, so driver and
object-store memory stay flat however long the input is. A video whose worker keeps dying is
recorded as failed (``worker_lost``); one running past ``timeout_s`` is cancelled and recorded
as ``timeout``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

from clipfactory.config import Config, ConfigError, RayConfig
from clipfactory.memory import reuse_freed_memory
from clipfactory.records import Rejection, SourceItem, VideoResult
from clipfactory.worker import process_video

__all__ = ["RayExecutor", "connected", "import_ray", "needs_actors", "private_instance",
           "setup_worker"]

log = logging.getLogger("clipfactory.exec.ray")

Task = Callable[[SourceItem, Config, str], VideoResult]
_PRIVATE_STORE_BYTES = 128 << 20  # records only; Ray's floor is 75 MiB
REFRESH_S = 10.0  # how often the cluster's size is read again (autoscaling, lost nodes)


def import_ray() -> ModuleType:
    """Import ray, or say how to install it."""
    try:
        import ray
    except ImportError as e:
        raise ImportError("the ray executor needs Ray: pip install 'clipfactory[ray]'") from e
    return ray


def needs_actors(cfg: Config) -> bool:
    """Whether videos run on an actor pool (setup once, GPUs) rather than as plain tasks."""
    r = cfg.ray
    # the hybrid detector's network is small and loads in ~0.1 s, once per Ray worker process
    # (lru_cache), so plain tasks serve it; TransNetV2 on every frame is a model stage
    return r.actors or r.gpus_per_video > 0 or cfg.shots.detector == "transnet"


def setup_worker(cfg: Config) -> None:
    """Load once per worker what every video needs (an actor's constructor calls this).

    A detector with ``setup()`` (TransNetV2) loads its network there into a per-process cache,
    so the load happens when the actor starts and every video's own detector finds it warm.
    """
    from clipfactory.shots import make_detector

    reuse_freed_memory()
    detector = make_detector(cfg.shots)
    setup = getattr(detector, "setup", None)
    if callable(setup):
        setup()


def worker_config(cfg: Config) -> Config:
    """Decoder/encoder threads follow the CPUs Ray reserves per video, not the node's cores."""
    out = cfg.model_copy(deep=True)
    if out.analysis.decode_threads <= 0:
        out.analysis.decode_threads = max(1, math.ceil(cfg.ray.cpus_per_video))
    return out


def failed(item: SourceItem, reason: str, detail: str) -> VideoResult:
    """A result that records ``item`` as failed in the ``internal`` stage."""
    return VideoResult(item=item, rejection=Rejection(item.item_key, item.source, "internal",
                                                      reason, detail, video_id=item.id))


def portable(item: SourceItem) -> SourceItem:
    """``item`` with its fetched copy's path absolute: other nodes do not share our cwd."""
    if item.local_path and not os.path.isabs(item.local_path):
        return dataclasses.replace(item, local_path=os.path.abspath(item.local_path))
    return item


def run_task(task: Task, item: SourceItem, cfg: Config, staging: str) -> VideoResult:
    """The body of one Ray task (a module-level function, so workers import it by name). Ray's
    worker processes are ours to tune: their allocator keeps what a video frees for reuse."""
    reuse_freed_memory()
    return task(item, cfg, staging)


def _import_failure(e: Any) -> bool:
    cause = getattr(e, "cause", None)
    return isinstance(cause, ImportError) or "failed to import on the worker" in str(cause)


def _node_check(marker: str) -> tuple[str, bool]:
    import socket

    return socket.gethostname(), os.path.isfile(marker)


class RayExecutor:
    """Run :func:`process_video` over items on a Ray cluster (see the module docstring)."""

    def __init__(self, address: str | None = None, *, workers: int = 1,
                 timeout_s: float | None = None, task: Task = process_video) -> None:
        self.address = address
        self.local_cpus = max(1, workers)  # CPUs of a private instance (no address, no cluster)
        self.timeout_s = timeout_s if timeout_s and timeout_s > 0 else None
        self.task = task
        self.workers = 0  # videos the cluster runs at once, known once map() has started

    def map(self, items: Iterable[SourceItem], cfg: Config,
            staging: str | Path) -> Iterator[VideoResult]:
        """Yield one result per item, in completion order."""
        ray = import_ray()
        owned = self._connect(ray, cfg.ray)
        staging = Path(staging).resolve()  # workers on other nodes do not share our cwd
        try:
            check_shared_storage(ray, staging)
            wcfg = worker_config(cfg)
            if needs_actors(cfg):
                from clipfactory.exec.ray_actors import ActorPool

                runner: Any = ActorPool(ray, self, wcfg, str(staging))
            else:
                runner = _Tasks(ray, self, wcfg, str(staging))
            try:
                yield from runner.run(portable(item) for item in items)
            finally:
                runner.close()
        finally:
            if owned:
                ray.shutdown()

    def _connect(self, ray: ModuleType, r: RayConfig) -> bool:
        """Join the cluster (or start a private instance); True when we must shut it down."""
        return _join(ray, self.address, math.ceil(self.local_cpus * max(r.cpus_per_video, 1e-3)))

    def result(self, ray: ModuleType, ref: Any, item: SourceItem) -> VideoResult:
        """The task's result, or a failed one naming why the cluster could not produce it."""
        try:
            return ray.get(ref)
        except ray.exceptions.RayTaskError as e:  # process_video never raises: our harness did
            if _import_failure(e):  # every video would fail alike: stop, resume once fixed
                raise RuntimeError(f"a Ray worker cannot import clipfactory's task ({e.cause});"
                                   " install clipfactory on every node") from e
            cause = e.cause if isinstance(e.cause, BaseException) else e
            return failed(item, "unexpected_error", f"{type(cause).__name__}: {cause}")
        except ray.exceptions.RuntimeEnvSetupError:
            raise
        except ray.exceptions.RayError as e:  # worker or node died, retries spent
            reason = "worker_crashed" if isinstance(e, ray.exceptions.WorkerCrashedError) \
                else "worker_lost"
            detail = str(e).strip().splitlines()[0] if str(e).strip() else ""
            return failed(item, reason, f"{type(e).__name__} after retries: {detail}"[:500])


@contextlib.contextmanager
def private_instance(num_cpus: int) -> Iterator[None]:
    """A single-machine Ray with ``num_cpus`` CPUs for the block (benchmarks, trying things)."""
    ray = import_ray()
    _init_private(ray, num_cpus)
    try:
        yield
    finally:
        ray.shutdown()


@contextlib.contextmanager
def connected(address: str | None, num_cpus: int) -> Iterator[ModuleType]:
    """Ray, joined for the block as the executor joins it: ``address``, else ``RAY_ADDRESS``,
    else a private instance with ``num_cpus`` CPUs; a connection already open is used as is
    (and left open), so the global steps of one command share it."""
    ray = import_ray()
    owned = _join(ray, address, num_cpus)
    try:
        yield ray
    finally:
        if owned:
            ray.shutdown()


def _join(ray: ModuleType, address: str | None, num_cpus: int) -> bool:
    """Connect unless connected; True when the caller must shut Ray down."""
    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        try:
            ray.init(address=address, logging_level=logging.WARNING, configure_logging=False)
        except ConnectionError as e:  # no cluster there: one line, not Ray's traceback
            raise ConfigError(f"no Ray cluster at {address!r} ({e}); start one with "
                              "`ray start --head`, or leave --ray-address out to run on "
                              "this machine") from None
    else:
        _init_private(ray, num_cpus)
    return True


def _init_private(ray: ModuleType, num_cpus: int) -> None:
    ray.init(num_cpus=num_cpus, include_dashboard=False, object_store_memory=_PRIVATE_STORE_BYTES,
             logging_level=logging.WARNING, configure_logging=False)


def check_shared_storage(ray: ModuleType, staging: Path) -> None:
    """Fail early unless every node with CPUs sees ``staging`` (the output's shared folder)."""
    staging.mkdir(parents=True, exist_ok=True)
    marker = staging / f".ray-check-{uuid.uuid4().hex}"
    marker.write_bytes(b"")
    try:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        check = ray.remote(num_cpus=0, max_retries=0)(_node_check)
        nodes = [n for n in ray.nodes() if n.get("Alive") and n["Resources"].get("CPU", 0) > 0]
        refs = [check.options(scheduling_strategy=NodeAffinitySchedulingStrategy(
            n["NodeID"], soft=False)).remote(str(marker)) for n in nodes]
        blind = []
        for n, ref in zip(nodes, refs, strict=True):
            try:
                host, seen = ray.get(ref, timeout=120)
            except ray.exceptions.RayTaskError as e:  # cannot even import clipfactory
                raise RuntimeError(f"node {n.get('NodeManagerAddress')} cannot run "
                                   f"clipfactory ({e.cause}); install it on every node") from e
            except ray.exceptions.RayError:
                continue  # a node leaving right now: not a storage problem
            if not seen:
                blind.append(f"{host} ({n.get('NodeManagerAddress')})")
        if blind:
            raise RuntimeError(f"{staging} is not visible on node(s) {', '.join(blind)}: the "
                               "output folder (and the inputs) must be on storage every node "
                               "mounts at the same path (see docs/ray.md)")
    finally:
        marker.unlink(missing_ok=True)


def cluster_slots(ray: ModuleType, r: RayConfig) -> int:
    """Videos the alive nodes fit at once, counted per node (a video never spans nodes)."""
    total = 0
    for n in ray.nodes():
        if not n.get("Alive"):
            continue
        res = n.get("Resources", {})
        fits = [math.floor(res.get("CPU", 0) / r.cpus_per_video + 1e-9)] \
            if r.cpus_per_video > 0 else []
        if r.gpus_per_video > 0:
            fits.append(math.floor(res.get("GPU", 0) / r.gpus_per_video + 1e-9))
        total += min(fits) if fits else 1
    return total


class _Tasks:
    """Stateless tasks, at most ``max_in_flight`` submitted; Ray retries lost workers."""

    def __init__(self, ray: ModuleType, ex: RayExecutor, cfg: Config, staging: str) -> None:
        self.ray, self.ex, self.staging, self.r = ray, ex, staging, cfg.ray
        if self.r.cpus_per_video <= 0:
            raise ValueError("ray.cpus_per_video must be > 0 for tasks")
        self.cfg_ref = ray.put(cfg)  # once, not once per video
        self.fn = ray.remote(run_task).options(
            num_cpus=self.r.cpus_per_video, max_retries=max(0, self.r.max_retries),
            retry_exceptions=False, name="clipfactory.video")
        self.slots, self.slots_at = 0, -math.inf
        # ref -> [item, start]: start is None while the task likely waits in Ray's queue
        self.running: dict[Any, list[Any]] = {}

    def _limit(self) -> int:
        if time.monotonic() - self.slots_at > REFRESH_S:
            self.slots, self.slots_at = max(1, cluster_slots(self.ray, self.r)), time.monotonic()
            self.ex.workers = max(self.ex.workers, self.slots)
        return self.r.max_in_flight if self.r.max_in_flight > 0 else 2 * self.slots

    def run(self, items: Iterator[SourceItem]) -> Iterator[VideoResult]:
        running = self.running
        exhausted = False
        while True:
            while not exhausted and len(running) < self._limit():
                item = next(items, None)
                if item is None:
                    exhausted = True
                    break
                running[self.fn.remote(self.ex.task, item, self.cfg_ref, self.staging)] = \
                    [item, None]
            if not running:
                return
            self._mark_started(running)
            ready, _ = self.ray.wait(list(running), num_returns=1, timeout=self._wait_s(running))
            for ref in ready:
                item, _ = running.pop(ref)
                yield self.ex.result(self.ray, ref, item)
            yield from self._expire(running)

    def _mark_started(self, running: dict[Any, list[Any]]) -> None:
        """The oldest ``slots`` tasks are taken as running: a queued task cannot time out."""
        now = time.monotonic()
        for job in list(running.values())[:self.slots]:
            if job[1] is None:
                job[1] = now

    def _wait_s(self, running: dict[Any, list[Any]]) -> float:
        if self.ex.timeout_s is None:
            return REFRESH_S
        starts = [s for _, s in running.values() if s is not None]
        if not starts:
            return REFRESH_S
        return max(0.05, min(REFRESH_S, min(starts) + self.ex.timeout_s - time.monotonic()))

    def _expire(self, running: dict[Any, list[Any]]) -> Iterator[VideoResult]:
        if self.ex.timeout_s is None:
            return
        now = time.monotonic()
        for ref, (item, start) in list(running.items()):
            if start is not None and now - start >= self.ex.timeout_s:
                self.ray.cancel(ref, force=True)  # kills the stuck worker process
                del running[ref]
                yield failed(item, "timeout",
                             f"no result after {self.ex.timeout_s:.0f} s; the task was cancelled")

    def close(self) -> None:
        """Cancel what is still in flight (the caller stopped early; a finished run has none)."""
        for ref in self.running:
            self.ray.cancel(ref)
        self.running.clear()
