"""Per-frame features of the small analysis frame, shared by the built-in detectors.

Each frame gives a 32x18 colour thumbnail (block means), a 16x9 thumbnail pooled from it (the
space in which gradual transitions are tested: coarse enough that ordinary motion moves little
from cell to cell), a 64-bin joint colour histogram of the thumbnail's cells, and the mean and
spread of the 16x9 luma. Everything is a handful of numpy calls on ~14k pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "Features", "batch_features", "cut_distance", "cut_distances", "frame_features",
    "hist_distance",
    "recall_distance", "same_picture",
]

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


def _thumbnails(frames: np.ndarray) -> np.ndarray:
    """(n, 18, 32, 3) float32 block means of (n, H, W, 3) uint8 frames."""
    n, h, w = frames.shape[:3]
    rows, cols = THUMB
    if h % rows == 0 and w % cols == 0 and (h // rows) * (w // cols) <= 256:  # 160x90
        bh, bw = h // rows, w // cols
        a = np.add.reduce(frames.reshape(n, rows, bh, w * 3), axis=2, dtype=np.uint16)
        a = a.reshape(n, rows, cols, bw, 3)
        t = a[:, :, :, 0] + a[:, :, :, 1] if bw > 1 else a[:, :, :, 0].copy()
        for k in range(2, bw):
            t += a[:, :, :, k]  # uint16: at most 255 * bh * bw, fine below 16x16 blocks
        return t.astype(np.float32) * np.float32(1.0 / (bh * bw))
    return np.stack([_thumbnail_any(f) for f in frames])


def _thumbnail_any(frame: np.ndarray) -> np.ndarray:
    h, w = frame.shape[:2]
    rows, cols = THUMB
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


def batch_features(frames: np.ndarray) -> list[Features]:
    """Features of (n, H, W, 3) uint8 frames, computed together: on frames this small, numpy's
    per-call overhead costs more than the arithmetic, so a batch is several times cheaper per
    frame than one frame at a time."""
    n = len(frames)
    thumb = _thumbnails(frames)
    rows = thumb.reshape(n, 9, 2, 96)
    pairs = (rows[:, :, 0] + rows[:, :, 1]).reshape(n, 9, 16, 2, 3)
    coarse = pairs[:, :, :, 0] + pairs[:, :, :, 1]
    coarse *= np.float32(0.25)
    luma = (coarse @ _LUMA).reshape(n, -1)
    mean = luma.mean(axis=1)
    spread = np.sqrt(np.maximum(0.0, (luma * luma).mean(axis=1) - mean * mean))
    # colours of the 576 thumbnail cells, 4 levels per channel: blind to motion, cheap
    q = (thumb * np.float32(4 / 256)).astype(np.uint8)
    idx = ((q[..., 0] << 4) | (q[..., 1] << 2) | q[..., 2]).reshape(n, -1).astype(np.int64)
    idx += (np.arange(n) * 64)[:, None]
    hist = np.bincount(idx.ravel(), minlength=64 * n).astype(np.float32).reshape(n, 64)
    hist *= np.float32(1.0 / idx.shape[1])
    coarse = coarse.reshape(n, -1)
    return [Features(thumb[k], coarse[k], hist[k], float(mean[k]), float(spread[k]))
            for k in range(n)]


def frame_features(frame: np.ndarray) -> Features:
    """Features of an RGB uint8 ``(H, W, 3)`` frame."""
    return batch_features(frame[None])[0]


def cut_distance(a: Features, b: Features) -> float:
    """How different two frames look, in [0, 1]: the mean of the thumbnail difference (any
    change) and the histogram difference (blind to motion). Two frames of different shots
    usually score 0.4-1, consecutive frames of one shot under 0.15."""
    pix = float(np.abs(a.thumb - b.thumb).sum()) / (255.0 * a.thumb.size)
    hist = 0.5 * float(np.abs(a.hist - b.hist).sum())
    # 0.15 of full scale is about where PySceneDetect's default content threshold sits
    return 0.5 * (min(1.0, pix / 0.15) + hist)


def cut_distances(feats: list[Features]) -> np.ndarray:
    """:func:`cut_distance` of each frame to the one before it, for a list of frames at once
    (``len(feats) - 1`` values)."""
    if len(feats) < 2:
        return np.zeros(0)
    thumbs = np.stack([f.thumb for f in feats])
    hists = np.stack([f.hist for f in feats])
    pix = np.abs(np.diff(thumbs, axis=0)).reshape(len(feats) - 1, -1).sum(axis=1)
    pix *= 1.0 / (255.0 * thumbs[0].size * 0.15)
    hist = 0.5 * np.abs(np.diff(hists, axis=0)).sum(axis=1)
    return 0.5 * (np.minimum(1.0, pix) + hist)


def recall_distance(a: Features, b: Features) -> float:
    """:func:`cut_distance` on the 16x9 thumbnail: is this the same picture again, a few
    frames later? Tolerant of the motion in between, which a 32x18 comparison is not."""
    pix = float(np.abs(a.coarse - b.coarse).sum()) / (255.0 * a.coarse.size)
    hist = 0.5 * float(np.abs(a.hist - b.hist).sum())
    return 0.5 * (min(1.0, pix / 0.15) + hist)


def hist_distance(a: Features | None, b: Features | None) -> float:
    """Half the L1 distance of the colour histograms, in [0, 1]: how much the colours changed,
    whatever moved. 0 when a frame is missing."""
    if a is None or b is None:
        return 0.0
    return 0.5 * float(np.abs(a.hist - b.hist).sum())


_LUMA3 = _LUMA.astype(np.float64)


def same_picture(a: Features | None, b: Features | None, min_corr: float = 0.9) -> bool:
    """True when two frames show the same picture at another brightness or contrast (a step
    of a fade, a flash, an exposure change): their 16x9 lumas are strongly correlated. Never
    true of a black or flat frame, whose correlation means nothing."""
    if a is None or b is None or min(a.spread, b.spread) < 2.0:
        return False
    la = a.coarse.reshape(-1, 3) @ _LUMA3
    lb = b.coarse.reshape(-1, 3) @ _LUMA3
    la -= la.mean()
    lb -= lb.mean()
    den = float(np.sqrt((la @ la) * (lb @ lb)))
    return den > 0 and float(la @ lb) / den >= min_corr
