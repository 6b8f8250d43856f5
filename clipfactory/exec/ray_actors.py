"""The actor path of the Ray executor: a pool of long-lived video workers.

Used when per-video work needs something loaded once (a model) or a GPU. Each actor declares
``cpus_per_video`` CPUs and ``gpus_per_video`` GPUs (a fraction shares one GPU between actors;
Ray sets ``CUDA_VISIBLE_DEVICES``), runs :func:`setup_worker` in its constructor and then one
video at a time. This module never imports ray: :mod:`clipfactory.exec.ray` hands it the module.

The pool follows the cluster: it starts as many actors as the alive nodes fit, tops up when the
cluster grows, and when an actor dies (its node left, or a decoder crashed the process) its
video is queued again, up to ``max_retries`` times. Idle actors are ended once the input is
exhausted, so a replacement for a lost one always finds room.
"""

from __future__ import annotations

import logging
import math
import socket
import time
from collections import deque
from collections.abc import Iterator
from types import ModuleType
from typing import Any

from clipfactory.config import Config
from clipfactory.exec.ray import (
    REFRESH_S,
    RayExecutor,
    Task,
    cluster_slots,
    failed,
    setup_worker,
)
from clipfactory.records import SourceItem, VideoResult

__all__ = ["ActorPool", "VideoWorker"]

log = logging.getLogger("clipfactory.exec.ray")
_MAX_START_FAILURES = 3  # actors in a row that die in setup, with none alive: give up


class VideoWorker:
    """One actor: setup once in the constructor, then one video per call."""

    def __init__(self, task: Task, cfg: Config) -> None:
        setup_worker(cfg)
        self.task, self.cfg = task, cfg

    def ready(self) -> str:
        """Where this actor lives (returns once the constructor is done)."""
        return socket.gethostname()

    def run(self, item: SourceItem, staging: str) -> VideoResult:
        """Process one video."""
        return self.task(item, self.cfg, staging)


class ActorPool:
    """Feed items to idle actors; retry the videos of actors that died (see module doc)."""

    def __init__(self, ray: ModuleType, ex: RayExecutor, cfg: Config, staging: str) -> None:
        self.ray, self.ex, self.cfg, self.staging, self.r = ray, ex, cfg, staging, cfg.ray
        self.cls = ray.remote(VideoWorker).options(
            num_cpus=self.r.cpus_per_video, num_gpus=self.r.gpus_per_video, max_restarts=0,
            max_task_retries=0)
        self.idle: list[Any] = []
        self.starting: dict[Any, Any] = {}  # ready ref -> actor
        self.busy: dict[Any, tuple[Any, SourceItem, float]] = {}  # run ref -> (actor, item, t)
        self.retry: deque[SourceItem] = deque()
        self.attempts: dict[str, int] = {}
        self.start_failures = 0
        self.target_at = -math.inf
        self._top_up()

    def _top_up(self) -> None:
        """Start actors until the pool is as large as the alive nodes fit (or num_actors)."""
        if time.monotonic() - self.target_at < REFRESH_S:
            return
        self.target_at = time.monotonic()
        target = self.r.num_actors or max(1, cluster_slots(self.ray, self.r))
        self.ex.workers = max(self.ex.workers, target)
        for _ in range(target - len(self.idle) - len(self.starting) - len(self.busy)):
            self._spawn()

    def _spawn(self) -> None:
        actor = self.cls.remote(self.ex.task, self.cfg)
        self.starting[actor.ready.remote()] = actor

    def run(self, items: Iterator[SourceItem]) -> Iterator[VideoResult]:
        exhausted = False
        while True:
            cap = self.r.max_in_flight if self.r.max_in_flight > 0 else math.inf
            while self.idle and len(self.busy) < cap and (self.retry or not exhausted):
                item = self.retry.popleft() if self.retry else next(items, None)
                if item is None:
                    exhausted = True
                    break
                actor = self.idle.pop()
                self.busy[actor.run.remote(item, self.staging)] = (actor, item, time.monotonic())
            if exhausted and not self.retry:
                self._retire()  # frees room for a replacement, should a busy actor die
                if not self.busy:
                    return
            elif not (self.busy or self.starting):
                self.target_at = -math.inf
                self._top_up()
            else:
                self._top_up()
            waiting = [*self.busy, *self.starting]
            ready, _ = self.ray.wait(waiting, num_returns=1, timeout=self._wait_s())
            for ref in ready:
                if ref in self.starting:
                    self._started(ref)
                else:
                    yield from self._finished(ref)
            yield from self._expire()

    def _started(self, ref: Any) -> None:
        actor = self.starting.pop(ref)
        try:
            log.debug("video worker ready on %s", self.ray.get(ref))
        except self.ray.exceptions.RayError as e:
            self.start_failures += 1
            log.warning("a video worker failed to start: %s", e)
            if self.start_failures >= _MAX_START_FAILURES and not (self.idle or self.busy):
                raise RuntimeError(f"video workers fail in setup (model, GPU?): {e}") from e
            return
        self.start_failures = 0
        self.idle.append(actor)

    def _finished(self, ref: Any) -> Iterator[VideoResult]:
        actor, item, _ = self.busy.pop(ref)
        try:
            self.ray.get(ref)  # raises if the actor died; the result is fetched below
        except self.ray.exceptions.RayActorError as e:
            n = self.attempts[item.item_key] = self.attempts.get(item.item_key, 0) + 1
            log.warning("video worker lost while on %s (attempt %d): %s", item.source, n,
                        type(e).__name__)
            self.ray.kill(actor)
            self.target_at = -math.inf
            if n <= self.r.max_retries:
                self.retry.append(item)
                return
            yield failed(item, "worker_lost", f"{type(e).__name__} after {n} attempts")
            return
        except self.ray.exceptions.RayError:
            pass  # the task itself failed: the executor turns it into a result
        self.idle.append(actor)
        yield self.ex.result(self.ray, ref, item)

    def _wait_s(self) -> float:
        if self.ex.timeout_s is None or not self.busy:
            return REFRESH_S
        oldest = min(t for _, _, t in self.busy.values())
        return max(0.05, min(REFRESH_S, oldest + self.ex.timeout_s - time.monotonic()))

    def _expire(self) -> Iterator[VideoResult]:
        if self.ex.timeout_s is None:
            return
        now = time.monotonic()
        for ref, (actor, item, t) in list(self.busy.items()):
            if now - t >= self.ex.timeout_s:
                del self.busy[ref]
                self.ray.kill(actor, no_restart=True)  # a stuck decoder: end the process
                self.target_at = -math.inf
                yield failed(item, "timeout",
                             f"no result after {self.ex.timeout_s:.0f} s; the worker was stopped")

    def _retire(self) -> None:
        for actor in [*self.idle, *self.starting.values()]:
            self.ray.kill(actor)
        self.idle.clear()
        self.starting.clear()

    def close(self) -> None:
        """End every actor of the pool."""
        for actor, _, _ in self.busy.values():
            self.ray.kill(actor)
        self.busy.clear()
        self._retire()
