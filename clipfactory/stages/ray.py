"""Model stages on Ray: an actor pool per stage, each actor declaring the stage's resources.

An actor runs ``setup()`` in its constructor and then one batch per call, so the model loads
once per actor. GPUs are declared per actor (fractions share one GPU; Ray sets
``CUDA_VISIBLE_DEVICES``); a stage left at ``gpus: None`` asks for one GPU per actor when the
cluster has any and none on a CPU-only cluster, which still works. An actor that dies fails
the batch it held (``<stage>_crashed``) and is replaced; the run goes on. Same interface as
:class:`clipfactory.stages.local.StageRunner`. This module is handed the ray module; it never
imports it.
"""

from __future__ import annotations

import logging
from types import ModuleType
from typing import Any

from clipfactory.stages.base import ClipInput, ModelStage, StageOutput
from clipfactory.stages.batching import BatchingRunner
from clipfactory.stages.local import failed_outputs, run_batch

__all__ = ["RayStageRunner", "StageActor"]

log = logging.getLogger("clipfactory.stages")


class StageActor:
    """One actor of a stage's pool."""

    def __init__(self, stage: ModelStage) -> None:
        self.stage = stage
        self.setup_error: str | None = None
        try:
            stage.setup()
        except Exception as e:  # reported per batch: the driver's clips carry the reason
            self.setup_error = f"{type(e).__name__}: {e}"

    def process(self, clips: list[ClipInput]) -> list[StageOutput]:
        if self.setup_error is not None:
            return failed_outputs(clips, f"{self.stage.name}_setup_failed", self.setup_error)
        return run_batch(self.stage, clips)


class RayStageRunner(BatchingRunner):
    """An actor pool for one stage (see module doc)."""

    poll_s = 1.0

    def __init__(self, ray: ModuleType, stage: ModelStage, workers: int | None = None) -> None:
        super().__init__()
        self.ray, self.stage = ray, stage
        gpus = stage.resources.gpus
        if getattr(stage, "gpus_auto", False):
            gpus = 1.0 if ray.cluster_resources().get("GPU", 0) >= 1 else 0.0
        self.gpus = gpus
        self._cls = ray.remote(StageActor).options(num_cpus=stage.resources.cpus, num_gpus=gpus,
                                                   max_restarts=0, max_task_retries=0)
        self.workers = max(1, workers or stage.workers)
        self._actors: list[Any] = [self._cls.remote(stage) for _ in range(self.workers)]
        self._queues: list[list[Any]] = [[] for _ in range(self.workers)]  # refs, oldest first
        self._refs: dict[Any, tuple[int, list[ClipInput]]] = {}
        self.per_worker = 2
        self.batches = self.crashes = 0

    def _dispatch(self, batch: list[ClipInput], new: bool = True) -> None:
        while min(len(q) for q in self._queues) >= self.per_worker:
            self._collect(timeout=1.0)
        i = min(range(self.workers), key=lambda j: len(self._queues[j]))
        ref = self._actors[i].process.remote(batch)
        self._refs[ref] = (i, batch)
        self._queues[i].append(ref)
        self.batches += new

    def _busy(self) -> bool:
        return bool(self._refs)

    @property
    def pending(self) -> int:
        return len(self._buffer) + sum(len(b) for _, b in self._refs.values())

    def _collect(self, timeout: float) -> None:
        if not self._refs:
            return
        ready, _ = self.ray.wait(list(self._refs), num_returns=len(self._refs), timeout=timeout)
        for ref in ready:
            if ref not in self._refs:  # settled with its dead actor below
                continue
            i, batch = self._refs[ref]
            try:
                outs = self.ray.get(ref)
            except self.ray.exceptions.RayActorError as e:
                self._actor_died(i, e)
                continue
            except self.ray.exceptions.RayError as e:
                outs = failed_outputs(batch, f"{self.stage.name}_failed",
                                      f"{type(e).__name__}: {e}")
            del self._refs[ref]
            self._queues[i].remove(ref)
            self._ready.extend(outs)

    def _actor_died(self, i: int, err: Exception) -> None:
        """Calls run in order on an actor: the oldest unfinished one was running when it
        died and fails; the ones queued behind it go to the replacement."""
        self.crashes += 1
        queued = [self._refs.pop(r)[1] for r in self._queues[i]]
        self._queues[i] = []
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        self._ready.extend(failed_outputs(
            queued[0], f"{self.stage.name}_crashed",
            f"the {self.stage.name} actor died while processing this batch: {first}"[:500]))
        self._replace(i)
        for b in queued[1:]:
            self._dispatch(b, new=False)

    def _replace(self, i: int) -> None:
        log.warning("%s actor %d died; starting another", self.stage.name, i)
        self._actors[i] = self._cls.remote(self.stage)

    def close(self) -> None:
        for a in self._actors:
            self.ray.kill(a)
        self._actors = []
        self._refs.clear()
