"""A model stage for tests of the stage contract: no model, real frames, scripted failures.

It reads each clip's frames through the same path the embedding stage uses and returns their
mean colour as a unit vector (or, with ``vector="thumb"``, their 8x8 grey thumbnails, which
tell textures apart and match re-encodes of the same frames), so tests can check that vectors
belong to the right clips. It can
raise on chosen clips, kill its own process, sleep, or fail in ``setup()``.
"""

from __future__ import annotations

import os
import time

import numpy as np

from clipfactory.annotate.frames import FrameError, sample_frames
from clipfactory.stages.base import ClipInput, ModelStage, Resources, StageOutput

__all__ = ["MeanColourStage"]


def _thumb(frame: np.ndarray) -> np.ndarray:
    g = frame.mean(axis=2)
    h, w = g.shape[0] // 8 * 8, g.shape[1] // 8 * 8
    t = g[:h, :w].reshape(8, h // 8, 8, w // 8).mean(axis=(1, 3)).ravel()
    return t - t.mean()


class MeanColourStage(ModelStage):
    """Mean RGB of a few frames per clip (see module doc)."""

    name = "colour"

    def __init__(self, *, batch_size: int = 2, frames: int = 2, raise_on: frozenset[str] = frozenset(),
                 crash_on: frozenset[str] = frozenset(), sleep_s: float = 0.0,
                 fail_setup: bool = False, workers: int = 1, vector: str = "colour",
                 revision: str = "v1") -> None:
        self.batch_size, self.frames, self.workers = batch_size, frames, workers
        self.vector, self._revision = vector, revision
        self.raise_on, self.crash_on = raise_on, crash_on
        self.sleep_s, self.fail_setup = sleep_s, fail_setup
        self.resources = Resources(cpus=0.5)
        self._pid = 0

    @property
    def model_id(self) -> str:
        return "mean-colour"

    @property
    def revision(self) -> str:
        return self._revision

    def setup(self) -> None:
        if self.fail_setup:
            raise RuntimeError("weights file is corrupt (scripted)")
        self._pid = os.getpid()

    def process_batch(self, clips: list[ClipInput]) -> list[StageOutput]:
        if self.sleep_s:
            time.sleep(self.sleep_s)
        ids = {c.clip_id for c in clips}
        if ids & self.crash_on:
            os._exit(3)  # a native crash: no exception, no clean-up
        if ids & self.raise_on:
            raise ValueError("model server said 500 (scripted)")
        outs = []
        for c in clips:
            try:
                frames = sample_frames(c, self.frames, short_side=64)
            except FrameError as e:
                outs.append(StageOutput(c.clip_id, reason="frames_unreadable", detail=str(e)))
                continue
            mean = np.mean([f.reshape(-1, 3).mean(axis=0) for f in frames], axis=0)
            vec = (mean + 1.0) / np.linalg.norm(mean + 1.0)
            if self.vector == "thumb":  # 8x8 grey thumbnails, centred: tells textures apart
                vec = np.concatenate([_thumb(f) for f in frames])
                vec = vec / max(float(np.linalg.norm(vec)), 1e-9)
            outs.append(StageOutput(c.clip_id, vector=vec.astype(np.float32),
                                    scores={"colour.luma": float(mean.mean())},
                                    fields={"colour_pid": self._pid, "colour_at": time.time()}))
        return outs
