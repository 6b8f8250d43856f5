"""CLIP and SigLIP image/text embeddings: embed frames and texts with a resolved checkpoint and
score zero-shot labels. Finding the checkpoint is :mod:`clipfactory.annotate.model_files`, the
numpy + Pillow image preprocessing :mod:`clipfactory.annotate.preprocess`; their public names
are re-exported here.

Pure model module: no pipeline types. torch and transformers are imported when a
:class:`ClipEmbedder` is built, never at import time. Nothing is downloaded unless the caller
passes ``allow_download=True`` to :func:`resolve_model`.
"""

from __future__ import annotations

import itertools
import json
import re
from typing import Any

import numpy as np

from clipfactory.annotate.model_files import (
    ModelLoadError,
    ResolvedModel,
    folder_fingerprint,
    hub_cache_dir,
    resolve_model,
)
from clipfactory.annotate.preprocess import ImageTransform
from clipfactory.annotate.taxonomy import DEFAULT_CATEGORIES, DEFAULT_PROMPTS, DEFAULT_TEMPLATES

__all__ = ["DEFAULT_CATEGORIES", "DEFAULT_PROMPTS", "DEFAULT_TEMPLATES", "ClipEmbedder",
           "ImageTransform", "ModelLoadError", "ResolvedModel", "folder_fingerprint",
           "hub_cache_dir", "pick_device", "resolve_model"]


def pick_device(device: str) -> str:
    """``"auto"`` → ``"cuda"`` when torch sees a GPU, else ``"cpu"``; ``"cpu"``, ``"cuda"``
    and ``"cuda:N"`` pass through when usable."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        return device
    m = re.fullmatch(r"cuda(?::(\d+))?", device)
    if m is None:
        raise ModelLoadError(f"unknown device {device!r}: use auto, cpu, cuda or cuda:N")
    if not torch.cuda.is_available():
        raise ModelLoadError(f"device {device!r} was asked for but torch sees no CUDA GPU "
                             f"(torch {torch.__version__}); use device: auto or cpu")
    if int(m.group(1) or 0) >= torch.cuda.device_count():
        raise ModelLoadError(f"device {device!r}: only {torch.cuda.device_count()} GPU(s)")
    return device


def _unit(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, np.float32)
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), np.float32(1e-12))


def _mean_per_group(vecs: np.ndarray, sizes: list[int]) -> np.ndarray:
    """Unit mean of each run of ``sizes`` consecutive rows."""
    if not sizes:
        return vecs[:0]
    bounds = itertools.pairwise(np.cumsum([0, *sizes]))
    return _unit(np.stack([vecs[a:b].mean(axis=0) for a, b in bounds]))


class ClipEmbedder:
    """A loaded CLIP or SigLIP checkpoint: L2-normalised image and text embeddings and
    zero-shot label probabilities. Build once per worker (in a stage's ``setup()``)."""

    def __init__(self, resolved: ResolvedModel, device: str = "auto", threads: int = 0, *,
                 batch_size: int = 32) -> None:
        try:
            import PIL  # noqa: F401  (resizing, at the first frame)
            import torch
            import transformers  # noqa: F401
        except ImportError as e:
            raise ModelLoadError(f"CLIP/SigLIP models need torch, transformers and Pillow: "
                                 f"{e}") from e
        if threads > 0:
            torch.set_num_threads(threads)
        self._torch = torch
        self.resolved = resolved
        self.device = pick_device(device)
        self.batch_size = max(1, batch_size)
        path = resolved.path
        cfg_path = path / "preprocessor_config.json"
        try:
            self.transform = ImageTransform.from_config(json.loads(cfg_path.read_text()),
                                                        resolved.kind)
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ModelLoadError(f"{cfg_path}: cannot use it ({type(e).__name__}: {e})") from e
        self._model = self._load_model()
        self._tokenizer = self._load_tokenizer()
        cfg = self._model.config
        clip = resolved.kind == "clip"
        self._dim = int(cfg.projection_dim if clip else cfg.vision_config.hidden_size)
        self._max_len = int(cfg.text_config.max_position_embeddings)
        image_size = int(cfg.vision_config.image_size)
        if self.transform.out_hw != (image_size, image_size):
            raise ModelLoadError(f"{cfg_path} makes images of {self.transform.out_hw or 'varying'}"
                                 f" size but the model expects {image_size}x{image_size}")
        self._scale = float(self._model.logit_scale.detach().exp().item())
        self._bias = 0.0 if clip else float(self._model.logit_bias.detach().item())

    def _load_model(self) -> Any:
        from transformers import CLIPModel, SiglipModel

        cls = CLIPModel if self.resolved.kind == "clip" else SiglipModel
        try:
            model, info = cls.from_pretrained(str(self.resolved.path), local_files_only=True,
                                              output_loading_info=True)
        except Exception as e:
            raise ModelLoadError(f"cannot load the {self.resolved.kind} weights in "
                                 f"{self.resolved.path}: {type(e).__name__}: {e}") from e
        if info.get("missing_keys"):  # transformers would fill them with random values
            keys = sorted(info["missing_keys"])
            raise ModelLoadError(f"{self.resolved.path}: the weights do not match config.json; "
                                 f"{len(keys)} tensors missing (e.g. {keys[:3]})")
        return model.to(self.device).eval()

    def _load_tokenizer(self) -> Any:
        from transformers import AutoTokenizer

        try:
            tok = AutoTokenizer.from_pretrained(str(self.resolved.path), local_files_only=True)
        except Exception as e:
            raise ModelLoadError(f"cannot load the tokenizer in {self.resolved.path}: "
                                 f"{type(e).__name__}: {e}") from e
        if tok.pad_token is None and tok.eos_token is not None:
            tok.pad_token = tok.eos_token
        return tok

    @property
    def dim(self) -> int:
        """Length of every embedding vector."""
        return self._dim

    @property
    def model_id(self) -> str:
        """The spec the model was resolved from (a hub id or a folder)."""
        return self.resolved.spec

    @property
    def revision(self) -> str:
        """The hub commit hash, or the folder's fingerprint."""
        return self.resolved.revision

    def _run(self, fn: Any, **inputs: Any) -> np.ndarray:
        with self._torch.inference_mode():
            out = fn(**{k: v.to(self.device) for k, v in inputs.items()})
        return out.float().cpu().numpy()

    def embed_images(self, frames: list[np.ndarray]) -> np.ndarray:
        """One unit vector per HxWx3 uint8 RGB frame: (N, dim) float32."""
        out = [np.zeros((0, self.dim), np.float32)]
        for i in range(0, len(frames), self.batch_size):
            pixels = self._torch.from_numpy(self.transform(frames[i:i + self.batch_size]))
            out.append(self._run(self._model.get_image_features, pixel_values=pixels))
        return _unit(np.concatenate(out))

    def embed_frames_pooled(self, groups: list[list[np.ndarray]]) -> np.ndarray:
        """One unit vector per group of frames (a clip): the mean of its frames' vectors."""
        if any(len(g) == 0 for g in groups):
            raise ValueError("every group needs at least one frame")
        return _mean_per_group(self.embed_images([f for g in groups for f in g]),
                               [len(g) for g in groups])

    def embed_texts(self, texts: list[str]) -> np.ndarray:
        """One unit vector per text: (N, dim) float32, truncated to the model's positions."""
        clip = self.resolved.kind == "clip"
        out = [np.zeros((0, self.dim), np.float32)]
        for i in range(0, len(texts), self.batch_size):
            # SigLIP was trained on texts padded to full length, without an attention mask
            enc = self._tokenizer(list(texts[i:i + self.batch_size]), truncation=True,
                                  padding=True if clip else "max_length",
                                  max_length=self._max_len, return_tensors="pt")
            inputs = {"input_ids": enc["input_ids"]}
            if clip and "attention_mask" in enc:
                inputs["attention_mask"] = enc["attention_mask"]
            out.append(self._run(self._model.get_text_features, **inputs))
        return _unit(np.concatenate(out))

    def label_vectors(self, labels: list[str], templates: list[str],
                      prompts: dict[str, list[str]] | None = None) -> np.ndarray:
        """One unit vector per label: the mean over its prompts (its own in ``prompts``, else
        every template formatted with the label)."""
        texts = [(prompts or {}).get(lab) or [t.format(lab) for t in templates] for lab in labels]
        return _mean_per_group(self.embed_texts([t for ts in texts for t in ts]),
                               [len(ts) for ts in texts])

    def zero_shot(self, image_vecs: np.ndarray, label_vecs: np.ndarray) -> np.ndarray:
        """(N images, L labels) probabilities: CLIP a softmax over the labels (rows sum to 1),
        SigLIP an independent sigmoid per label, both with the model's own logit scale."""
        logits = self._scale * (np.asarray(image_vecs, np.float32)
                                @ np.asarray(label_vecs, np.float32).T) + self._bias
        if self.resolved.kind == "siglip":
            return (1 / (1 + np.exp(-logits))).astype(np.float32)
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)
