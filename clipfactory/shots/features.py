"""Per-frame features of the small analysis frame, shared by the built-in detectors.

Each frame gives a 32x18 colour thumbnail (block means), a 16x9 thumbnail pooled from it (the
space in which gradual transitions are tested: coarse enough that ordinary motion moves little
from cell to cell), a 64-bin joint colour histogram of every other pixel, and the mean and
spread of the 16x9 luma. Everything is a handful of numpy calls on ~14k pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Features", "cut_distance", "frame_features", "recall_distance"]

THUMB = (18, 32)  # rows, cols
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)


@dataclass(frozen=True)
class Features:
    """What a detector keeps of one frame (about 9 KiB)."""

    thumb: np.ndarray  # float32 (18, 32, 3), 0-255
    coarse: np.ndarray  # float32 (432,): the 16x9 colour thumbnail, flattened
    hist: np.ndarray  # float32 (64,), sums to 1
    luma: float  # mean luma, 0-255
    spread: float  # standard deviation of the 16x9 luma: ~0 for a black or flat frame


def _block_edges(n: int, bins: int) -> np.ndarray:
    return np.linspace(0, n, bins + 1).astype(np.int64)[:-1]


def _thumbnail(frame: np.ndarray) -> np.ndarray:
    h, w = frame.shape[:2]
    rows, cols = THUMB
    if h % rows == 0 and w % cols == 0:  # the usual 160x90: sums of rows, then of columns
        bh, bw = h // rows, w // cols
        a = np.add.reduce(frame.reshape(rows, bh, w * 3), axis=1, dtype=np.uint16)
        a = a.reshape(rows, cols, bw, 3)
        t = a[:, :, 0].astype(np.float32)
        for k in range(1, bw):
            t += a[:, :, k]
        t *= np.float32(1.0 / (bh * bw))
        return t
    re, ce = _block_edges(h, min(rows, h)), _block_edges(w, min(cols, w))
    t = np.add.reduceat(np.add.reduceat(frame, re, axis=0, dtype=np.uint32), ce, axis=1,
                        dtype=np.uint32).astype(np.float32)
    nr = np.diff(np.append(re, h)).astype(np.float32)
    nc = np.diff(np.append(ce, w)).astype(np.float32)
    t /= nr[:, None, None] * nc[None, :, None]
    if t.shape[:2] != THUMB:  # frames smaller than the thumbnail: repeat cells
        t = t[np.linspace(0, t.shape[0] - 1, rows).round().astype(int)][
            :, np.linspace(0, t.shape[1] - 1, cols).round().astype(int)]
    return t


def frame_features(frame: np.ndarray) -> Features:
    """Features of an RGB uint8 ``(H, W, 3)`` frame."""
    thumb = _thumbnail(frame)
    q = thumb.reshape(9, 2, 16, 2, 3)
    coarse = q[:, 0, :, 0] + q[:, 0, :, 1]
    coarse += q[:, 1, :, 0]
    coarse += q[:, 1, :, 1]
    coarse *= np.float32(0.25)
    luma = (coarse @ _LUMA).ravel()
    mean = float(luma.sum()) / luma.size
    var = max(0.0, float(luma @ luma) / luma.size - mean * mean)
    sub = frame[::2, ::2] >> 6
    idx = (sub[..., 0] << 4) | (sub[..., 1] << 2) | sub[..., 2]
    hist = np.bincount(idx.ravel(), minlength=64).astype(np.float32)
    hist *= np.float32(1.0 / max(idx.size, 1))
    return Features(thumb, coarse.reshape(-1), hist, mean, var**0.5)


def cut_distance(a: Features, b: Features) -> float:
    """How different two frames look, in [0, 1]: the mean of the thumbnail difference (any
    change) and the histogram difference (blind to motion). Two frames of different shots
    usually score 0.4-1, consecutive frames of one shot under 0.15."""
    pix = float(np.abs(a.thumb - b.thumb).sum()) / (255.0 * a.thumb.size)
    hist = 0.5 * float(np.abs(a.hist - b.hist).sum())
    # 0.15 of full scale is about where PySceneDetect's default content threshold sits
    return 0.5 * (min(1.0, pix / 0.15) + hist)


def recall_distance(a: Features, b: Features) -> float:
    """:func:`cut_distance` on the 16x9 thumbnail: is this the same picture again, a few
    frames later? Tolerant of the motion in between, which a 32x18 comparison is not."""
    pix = float(np.abs(a.coarse - b.coarse).sum()) / (255.0 * a.coarse.size)
    hist = 0.5 * float(np.abs(a.hist - b.hist).sum())
    return 0.5 * (min(1.0, pix / 0.15) + hist)
