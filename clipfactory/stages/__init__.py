"""Clip-level model stages: the contract (:mod:`.base`), the local and Ray runners, and the
store their outputs land in (docs/annotate.md)."""

from __future__ import annotations

from clipfactory.config import Config
from clipfactory.ledger import Ledger
from clipfactory.stages.base import ClipInput, ModelStage, Resources, StageOutput, StageStatus
from clipfactory.stages.store import AnnotationStore

__all__ = ["ClipInput", "ModelStage", "Resources", "StageError", "StageOutput", "StageStatus",
           "build_stages", "check_stages"]


class StageError(Exception):
    """A configured stage cannot run (weights missing, wrong revision for this output...):
    the run stops before any work starts."""


def build_stages(cfg: Config) -> list[ModelStage]:
    """The model stages the config turns on, cheap to build (nothing is loaded)."""
    stages: list[ModelStage] = []
    if cfg.annotate.embeddings.model:
        from clipfactory.annotate.embeddings import EmbeddingStage

        stages.append(EmbeddingStage(cfg.annotate, min_aesthetic=cfg.filters.min_aesthetic
                                     if cfg.filters_on else None))
    if cfg.annotate.captions.backend:
        from clipfactory.annotate.captions import CaptionStage

        stages.append(CaptionStage(cfg.annotate.captions))
    return stages


def check_stages(stages: list[ModelStage], ledger: Ledger | None = None) -> list[StageStatus]:
    """Resolve every stage's model; raise :class:`StageError` naming what is missing, or when
    an output's stored vectors come from another model or revision."""
    statuses = [s.check() for s in stages]
    problems = [f"{st.stage} ({st.model}): " + "; ".join(st.missing)
                for st in statuses if not st.ok]
    if ledger is not None:
        store = AnnotationStore(ledger.path.parent, ledger)
        for st in statuses:
            if not st.ok:
                continue
            have = store.model_of(st.stage)
            if have is not None and have != (st.model, st.revision):
                problems.append(
                    f"{st.stage}: this output's embeddings come from {have[0]} at revision "
                    f"{have[1]}, the config asks for {st.model} at {st.revision}; vectors of "
                    "two models cannot be compared: use a new output folder, or the old model")
    if problems:
        raise StageError("model stages cannot run:\n  " + "\n  ".join(problems))
    return statuses
