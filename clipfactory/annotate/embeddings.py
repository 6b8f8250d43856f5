"""The embedding stage: clip vectors from a CLIP/SigLIP image tower, and zero-shot categories
from the same model's text tower.

Thin stage over :mod:`clipfactory.annotate.clip_model` (the model maths) and
:mod:`clipfactory.annotate.frames` (frames from the clip). Each clip: ``frames`` frames uniform
over its span, embedded, mean-pooled and L2-normalised. With categories on, each clip gets
``scores["category.<label>"]`` (the label's probability) and ``category`` (the top label).
A clip whose frames cannot be read fails alone (``embed/frames_unreadable``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from clipfactory.annotate.frames import FrameError, sample_frames
from clipfactory.config import AnnotateConfig
from clipfactory.stages.base import ClipInput, ModelStage, Resources, StageOutput, StageStatus

__all__ = ["EmbeddingStage"]


def _unreadable_weights(folder: Any) -> tuple[str, ...]:
    """Check each safetensors file's header against its size (nothing is loaded), so a
    truncated or corrupt weights file stops the run before it starts, not in every worker."""
    problems = []
    for f in sorted(Path(folder).glob("*.safetensors")):
        size = f.stat().st_size
        try:
            with open(f, "rb") as fh:
                n = int.from_bytes(fh.read(8), "little")
                if not 0 < n <= size - 8:
                    raise ValueError("bad header length")
                meta = json.loads(fh.read(n))
            end = max((v["data_offsets"][1] for k, v in meta.items() if k != "__metadata__"),
                      default=0)
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
            problems.append(f"{f.name} is not a readable safetensors file ({err})")
            continue
        if 8 + n + end > size:
            problems.append(f"{f.name} is truncated: {size} bytes, its header needs {8 + n + end}")
    return tuple(problems)


def _embedding_dim(folder: Path) -> int | None:
    """The image embedding size a CLIP/SigLIP folder's config declares, if it says."""
    try:
        cfg = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return None
    if "projection_dim" in cfg:
        return int(cfg["projection_dim"])
    vision = cfg.get("vision_config") or {}
    return int(vision["hidden_size"]) if "hidden_size" in vision else None


class EmbeddingStage(ModelStage):
    """Embeddings (+ categories) for every kept clip."""

    name = "embed"

    def __init__(self, cfg: AnnotateConfig, *, min_aesthetic: float | None = None) -> None:
        e = cfg.embeddings
        self.cfg, self.min_aesthetic = cfg, min_aesthetic
        self._aesthetic: Any = None
        self.batch_size = e.batch
        self.workers = e.workers
        self.resources = Resources(cpus=e.cpus, gpus=e.gpus if e.gpus is not None else 0.0)
        self.gpus_auto = e.gpus is None
        self._resolved: Any = None
        self._model: Any = None
        self._labels: list[str] = []
        self._label_vecs: np.ndarray | None = None

    @property
    def model_id(self) -> str:
        return self.cfg.embeddings.model

    @property
    def revision(self) -> str:
        return self._resolved.revision if self._resolved is not None else ""

    def resolve(self) -> Any:
        """Find the weights (no download unless allowed); cached on the stage so workers load
        exactly the revision the driver checked."""
        from clipfactory.annotate.clip_model import resolve_model

        if self._resolved is None:
            e = self.cfg.embeddings
            self._resolved = resolve_model(e.model, allow_download=e.allow_download,
                                           revision=e.revision)
        return self._resolved

    def check(self) -> StageStatus:
        from clipfactory.annotate.clip_model import ModelLoadError, pick_device

        e = self.cfg.embeddings
        try:
            r = self.resolve()
        except ModelLoadError as err:
            return StageStatus(self.name, e.model, "?", "", "", e.device, (str(err),))
        try:
            device = pick_device(e.device)
            deps: tuple[str, ...] = ()
        except Exception as err:  # cuda asked for and absent, or torch missing
            device, deps = e.device, (str(err),)
        return StageStatus(self.name, e.model, r.source, str(r.path), r.revision, device,
                           tuple(r.missing) + deps + _unreadable_weights(r.path)
                           + self._check_aesthetic(r.path))

    def _check_aesthetic(self, folder: Any) -> tuple[str, ...]:
        from clipfactory.annotate.aesthetic import AestheticError, AestheticPredictor

        if not self.cfg.aesthetic.model:
            return ()
        try:
            dim = AestheticPredictor(self.cfg.aesthetic.model).dim
        except AestheticError as err:
            return (str(err),)
        want = _embedding_dim(Path(folder))
        if want is not None and want != dim:
            return (f"aesthetic predictor {self.cfg.aesthetic.model} takes {dim}-d embeddings,"
                    f" the embedding model gives {want}-d (LAION's needs CLIP ViT-L/14)",)
        return ()

    def setup(self) -> None:
        from clipfactory.annotate.clip_model import ClipEmbedder

        e = self.cfg.embeddings
        self._model = ClipEmbedder(self.resolve(), device=e.device, threads=e.threads)
        if self.cfg.aesthetic.model:
            from clipfactory.annotate.aesthetic import AestheticPredictor

            self._aesthetic = AestheticPredictor(self.cfg.aesthetic.model)
        c = self.cfg.categories
        if c.enabled and c.labels:
            self._labels = list(c.labels)
            self._label_vecs = self._model.label_vectors(self._labels, c.templates, c.prompts)

    def process_batch(self, clips: list[ClipInput]) -> list[StageOutput]:
        outs: list[StageOutput] = []
        groups, ok = [], []
        for clip in clips:
            try:
                groups.append(sample_frames(clip, self.cfg.embeddings.frames))
                ok.append(clip)
            except FrameError as err:
                outs.append(StageOutput(clip.clip_id, reason="frames_unreadable",
                                        detail=str(err)))
        if not ok:
            return outs
        vecs = self._model.embed_frames_pooled(groups)
        probs = (self._model.zero_shot(vecs, self._label_vecs)
                 if self._label_vecs is not None else None)
        beauty = self._aesthetic(vecs) if self._aesthetic is not None else None
        for i, clip in enumerate(ok):
            o = StageOutput(clip.clip_id, vector=vecs[i].astype(np.float32))
            if probs is not None:
                o.scores = {f"category.{lab}": round(float(p), 6)
                            for lab, p in zip(self._labels, probs[i], strict=True)}
                o.fields = {"category": self._labels[int(np.argmax(probs[i]))]}
            if beauty is not None:
                o.scores["aesthetic"] = round(float(beauty[i]), 4)
                if self.min_aesthetic is not None and beauty[i] < self.min_aesthetic:
                    o.drop = "low_aesthetic"
            outs.append(o)
        return outs
