"""Feeding kept clips to the model stages while the videos are being cut.

The pipeline calls :meth:`StageFeeder.start` before the first video (clips an earlier run left
unannotated go first), :meth:`feed` as each video's outcome is recorded, and :meth:`finish`
before the global steps, which need every vector. Outputs are saved as they come back
(:class:`~clipfactory.stages.store.AnnotationStore`), so a killed run keeps what was
committed and the next one redoes the rest.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Any

from clipfactory.config import Config
from clipfactory.ledger import Ledger
from clipfactory.records import VideoResult
from clipfactory.stages.base import ClipInput, ModelStage
from clipfactory.stages.store import AnnotationStore, clip_input

__all__ = ["StageFeeder"]

log = logging.getLogger("clipfactory")


class StageFeeder:
    """One runner per stage, one store for all of them."""

    def __init__(self, stages: list[ModelStage], out: str | Path, ledger: Ledger,
                 cfg: Config) -> None:
        self.stages, self.cfg = stages, cfg
        self.store = AnnotationStore(out, ledger, part_rows=cfg.annotate.part_rows)
        self.runners: dict[str, Any] = {}
        self._ray: Any = None
        self._owns_ray = False
        swept = self.store.sweep()
        if swept:
            log.info("removed %d embedding part(s) a killed run left unregistered", swept)

    def start(self) -> None:
        """Start the workers and send them what earlier runs left undone."""
        for stage in self.stages:
            info = stage.card_info()
            if info:
                self.store.ledger.set_meta(f"stage.{stage.name}", info)
            self.runners[stage.name] = self._runner(stage)
            backlog = self.store.pending(stage.name)
            if backlog:
                log.info("%s: %d clips from earlier runs to annotate", stage.name, len(backlog))
            self._submit(stage, backlog)

    def _runner(self, stage: ModelStage) -> Any:
        if self.cfg.executor != "ray":
            from clipfactory.stages.local import StageRunner

            return StageRunner(stage)
        from clipfactory.exec.ray import _init_private, import_ray
        from clipfactory.stages.ray import RayStageRunner

        ray = import_ray()
        if not ray.is_initialized():  # the executor then joins this instance
            address = self.cfg.ray_address or os.environ.get("RAY_ADDRESS")
            if address:
                ray.init(address=address, logging_level=logging.WARNING, configure_logging=False)
            else:
                cpus = self.cfg.worker_count * max(self.cfg.ray.cpus_per_video, 1e-3) + sum(
                    s.resources.cpus * s.workers for s in self.stages)
                _init_private(ray, math.ceil(cpus))
            self._owns_ray = True
        self._ray = ray
        return RayStageRunner(ray, stage)

    def _submit(self, stage: ModelStage, clips: list[ClipInput]) -> None:
        runner = self.runners[stage.name]
        step = max(1, stage.batch_size)
        for i in range(0, len(clips), step):  # save as we go: a big backlog stays bounded
            runner.submit(clips[i:i + step])
            self._save(stage, runner.poll())

    def _save(self, stage: ModelStage, outs: list[Any]) -> None:
        if outs:
            self.store.add(stage.name, stage.model_id, stage.revision, outs)

    def feed(self, result: VideoResult) -> None:
        """Send a recorded video's staged clips to every stage, and save what came back."""
        clips = [clip_input(c.to_dict(), c.staged_path, None) for c in result.clips
                 if c.state == "staged" and c.staged_path]
        for stage in self.stages:
            if clips:
                self._submit(stage, clips)
            else:
                self._save(stage, self.runners[stage.name].poll())

    def finish(self) -> dict[str, dict[str, int]]:
        """Wait for every stage to finish its clips, commit, and say what each did."""
        stats = {}
        for stage in self.stages:
            runner = self.runners[stage.name]
            self._save(stage, runner.drain())
            stats[stage.name] = {"batches": runner.batches, "crashes": runner.crashes}
        self.store.flush()
        stats["saved"] = {"ok": self.store.saved, "failed": self.store.failed}
        return stats

    def close(self) -> None:
        """Stop the workers; commit whatever finished (a killed run redoes the rest)."""
        try:
            self.store.flush()
        finally:
            for runner in self.runners.values():
                runner.close()
            self.runners.clear()
            if self._owns_ray and self._ray is not None:
                self._ray.shutdown()
