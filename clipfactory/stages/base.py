"""The model-stage contract: clip-level work that needs a model loaded once per worker.

A stage declares what it needs (:class:`Resources`: CPUs and GPUs, fractions allowed) and a
batch size, loads its model in :meth:`ModelStage.setup` (once per worker process or Ray actor)
and handles :meth:`ModelStage.process_batch`. It is built from config in the driver, where it
must stay cheap (no model load, no heavy import), and is pickled to its workers.

A stage gets :class:`ClipInput` (where the clip's bytes are: a staged file, or a member of a
shard) and returns one :class:`StageOutput` per clip: scores and fields to merge into the clip
record, an optional vector, or the reason that clip failed. A batch that raises fails every
clip of it with ``<stage>_failed``; the run goes on (docs/annotate.md).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["ClipInput", "ModelStage", "Resources", "StageOutput", "StageStatus"]


@dataclass(frozen=True)
class Resources:
    """What one worker of a stage needs: Ray reserves this per actor."""

    cpus: float = 1.0
    gpus: float = 0.0


@dataclass(frozen=True)
class ClipInput:
    """One clip handed to a stage: a path, never pixels (records travel between processes).

    ``member`` is None for a staged clip file at ``path``; for a clip already in a shard,
    ``path`` is the shard and ``member`` the tar member (``KEY.mp4``).
    """

    clip_id: str
    path: str
    member: str | None = None
    num_frames: int = 0
    fps: float = 0.0
    width: int = 0
    height: int = 0


@dataclass
class StageOutput:
    """What a stage says about one clip.

    ``scores`` merge into the clip's namespaced scores (``category.nature``); ``fields`` into
    its top-level annotations (``category``), where a None value removes the annotation (a
    caption model that writes no windows removes an earlier model's); ``vector`` is stored
    by the driver (embeddings).
    ``reason`` set means this clip failed in this stage (``detail`` says how); ``drop`` set
    means the stage judged the clip out (``filter/<drop>``; applied to clips not yet sharded).
    """

    clip_id: str
    scores: dict[str, float] = field(default_factory=dict)
    fields: dict[str, Any] = field(default_factory=dict)
    vector: np.ndarray | None = None
    reason: str | None = None
    detail: str = ""
    drop: str | None = None  # a filter decision (e.g. low_aesthetic): the clip leaves the set

    @property
    def ok(self) -> bool:
        return self.reason is None


@dataclass(frozen=True)
class StageStatus:
    """What ``clipfactory models`` prints about one configured stage before a run."""

    stage: str
    model: str
    source: str  # folder | hf-cache | download | builtin
    path: str
    revision: str
    device: str
    missing: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.missing


class ModelStage(ABC):
    """Base of clip-level model stages (see module doc)."""

    name: str = "stage"
    resources: Resources = Resources()
    batch_size: int = 16
    workers: int = 1  # local worker processes (Ray: actors, capped by the cluster)

    def check(self) -> StageStatus:
        """Resolve the model without loading it: where it is, its revision, what is missing.
        Runs in the driver before any work starts; must not download anything."""
        return StageStatus(self.name, self.model_id, "builtin", "", self.revision, "cpu")

    @property
    def model_id(self) -> str:
        """The model outputs are tagged with (a path or a hub id)."""
        return ""

    @property
    def revision(self) -> str:
        """The resolved model revision that outputs are tagged with (known after
        :meth:`check`)."""
        return ""

    def card_info(self) -> dict[str, Any] | None:
        """What the dataset card records about this stage (model, prompt...), if anything."""
        return None

    @abstractmethod
    def setup(self) -> None:
        """Load the model; called once in each worker before its first batch."""

    @abstractmethod
    def process_batch(self, clips: list[ClipInput]) -> list[StageOutput]:
        """One output per input clip, in any order."""
