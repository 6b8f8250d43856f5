"""What the local and the Ray stage runners share: clips buffered into batches of the stage's
size, a full batch dispatched at once, outputs kept until the driver polls them."""

from __future__ import annotations

from abc import ABC, abstractmethod

from clipfactory.stages.base import ClipInput, ModelStage, StageOutput

__all__ = ["BatchingRunner"]


class BatchingRunner(ABC):
    """Base of the runners; a subclass sends batches (``_dispatch``), gathers what came back
    into ``_ready`` (``_collect``) and says whether batches are still out (``_busy``)."""

    stage: ModelStage
    poll_s: float = 0.2  # how long drain waits per round

    def __init__(self) -> None:
        self._buffer: list[ClipInput] = []
        self._ready: list[StageOutput] = []

    def submit(self, clips: list[ClipInput]) -> None:
        """Queue clips; full batches start at once. Blocks while every worker already has its
        share of batches (back-pressure)."""
        self._buffer.extend(clips)
        size = max(1, self.stage.batch_size)
        while len(self._buffer) >= size:
            batch = self._buffer[:size]
            del self._buffer[:size]
            self._dispatch(batch)

    def poll(self) -> list[StageOutput]:
        """Outputs finished so far (does not wait)."""
        self._collect(timeout=0.0)
        out, self._ready = self._ready, []
        return out

    def drain(self) -> list[StageOutput]:
        """Send the last partial batch, wait for every batch, return what was not polled."""
        if self._buffer:
            batch, self._buffer = self._buffer, []
            self._dispatch(batch)
        while self._busy():
            self._collect(timeout=self.poll_s)
        return self.poll()

    @abstractmethod
    def _dispatch(self, batch: list[ClipInput]) -> None: ...

    @abstractmethod
    def _collect(self, timeout: float) -> None: ...

    @abstractmethod
    def _busy(self) -> bool: ...

    @abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> BatchingRunner:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
