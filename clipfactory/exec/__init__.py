"""Executors: map the per-video task over inputs, locally (process pool) or on Ray."""

from __future__ import annotations

from typing import TYPE_CHECKING

from clipfactory.config import Config

if TYPE_CHECKING:
    from clipfactory.pipeline import Executor

__all__ = ["make_executor"]


def make_executor(cfg: Config) -> Executor:
    """The executor ``cfg.executor`` names, built from the config."""
    if cfg.executor == "ray":
        from clipfactory.exec.ray import RayExecutor

        return RayExecutor(cfg.ray_address, workers=cfg.worker_count, timeout_s=cfg.video_timeout_s)
    from clipfactory.exec.local import LocalExecutor

    return LocalExecutor(cfg.worker_count, timeout_s=cfg.video_timeout_s)
