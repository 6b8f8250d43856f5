"""A LAION-style aesthetic predictor: a small MLP on a clip's L2-normalised CLIP image
embedding, loaded from a local file, run in numpy.

The format is the one the LAION "improved aesthetic predictor" publishes (a PyTorch state dict,
``.pth``, or the same tensors as ``.safetensors``): ``layers.{i}.weight`` / ``layers.{i}.bias``
for the linear layers of ``Linear(d, 1024) -> Dropout -> Linear(1024, 128) -> Dropout ->
Linear(128, 64) -> Dropout -> Linear(64, 16) -> Linear(16, 1)``; any chain of linear layers
with matching shapes is accepted (dropout is the identity at inference). ``d`` must be the
embedding model's dimension (768 for CLIP ViT-L/14, the predictor's own backbone). The score is
on the predictor's scale (about 1-10 for LAION's).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

__all__ = ["AestheticError", "AestheticPredictor"]


class AestheticError(Exception):
    """The predictor file is missing, unreadable, or does not fit the embeddings."""


def _load_tensors(path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise AestheticError(f"aesthetic predictor {path}: no such file")
    try:
        if path.suffix == ".safetensors":
            from safetensors.numpy import load_file

            return dict(load_file(str(path)))
        if path.suffix == ".npz":
            with np.load(path) as z:
                return {k: z[k] for k in z.files}
        import torch

        sd = torch.load(str(path), map_location="cpu", weights_only=True)
        sd = sd.get("state_dict", sd) if isinstance(sd, dict) else sd
        return {k: v.float().numpy() for k, v in sd.items()}
    except AestheticError:
        raise
    except Exception as e:  # corrupt or foreign file: say which and why
        raise AestheticError(f"aesthetic predictor {path} cannot be read: "
                             f"{type(e).__name__}: {e}") from e


class AestheticPredictor:
    """The MLP of one file (see module doc); ``dim`` is the input size it expects."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        t = _load_tensors(self.path)
        idx = sorted({int(m.group(1)) for k in t if (m := re.fullmatch(
            r"(?:layers\.)?(\d+)\.weight", k))})
        if not idx:
            raise AestheticError(f"aesthetic predictor {self.path}: no `layers.N.weight` "
                                 f"tensors (found {sorted(t)[:6]})")
        prefix = "layers." if any(k.startswith("layers.") for k in t) else ""
        self.layers: list[tuple[np.ndarray, np.ndarray]] = []
        for i in idx:
            w = np.asarray(t[f"{prefix}{i}.weight"], np.float32)
            b = np.asarray(t.get(f"{prefix}{i}.bias", np.zeros(w.shape[0])), np.float32)
            if self.layers and self.layers[-1][0].shape[0] != w.shape[1]:
                raise AestheticError(f"aesthetic predictor {self.path}: layer {i} takes "
                                     f"{w.shape[1]} inputs, the previous gives "
                                     f"{self.layers[-1][0].shape[0]}")
            self.layers.append((w, b))
        if self.layers[-1][0].shape[0] != 1:
            raise AestheticError(f"aesthetic predictor {self.path}: the last layer has "
                                 f"{self.layers[-1][0].shape[0]} outputs, not 1")

    @property
    def dim(self) -> int:
        return int(self.layers[0][0].shape[1])

    def __call__(self, vecs: np.ndarray) -> np.ndarray:
        """Scores of ``(N, dim)`` L2-normalised embeddings."""
        x = np.asarray(vecs, np.float32)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise AestheticError(f"aesthetic predictor {self.path} takes {self.dim}-d "
                                 f"embeddings, got shape {x.shape}")
        for w, b in self.layers:  # linear layers only: dropout is the identity here
            x = x @ w.T + b
        return x[:, 0]
