"""The analysis pass's per-frame signals, computed a batch of frames at a time.

Each small RGB analysis frame gives its luma (BT.601, integer weights), brightness (mean
luma), sharpness (variance of the Laplacian of the 2x2-pooled luma), motion (mean absolute luma
change from the previous analysed frame) and a 64-bit perceptual hash. On a 160x90 frame each
numpy call costs more in overhead than in arithmetic, so :class:`SignalBatch` keeps the frames
of a batch and computes these over all of them at once: about 30 % less CPU per frame.

The values are bit-identical to computing them one frame at a time (tests hold both to
:func:`clipfactory.testing.compare.reference_signals`): luma, the pooling and the Laplacian are exact in float32 (integers,
and multiples of 1/4 below 2**12), and each mean or variance is numpy's own reduction over one
frame's contiguous row of the batch, which adds in the same order as the reduction of that
frame on its own.
"""

from __future__ import annotations

from array import array

import numpy as np

from clipfactory.dedup.perceptual import phash64
from clipfactory.media import stagetime
from clipfactory.media.motion import phase_motion

__all__ = ["BATCH", "NAN5", "SignalBatch", "luma", "sharpness"]

BATCH = 16  # frames: 0.7 MB of 160x90 RGB; larger batches fall out of the cache
NAN5 = (float("nan"),) * 5
_WEIGHTS = np.array([77, 150, 29], dtype=np.float32)  # BT.601 * 256
# OpenBLAS runs a matrix-vector product of 9,216 elements or more on all cores, and its idle
# threads then spin: in a one-core-per-video pipeline that doubled the analysis pass's CPU.
# Below the threshold it stays on the caller's thread.
_GEMV_ROWS = 3000


def luma(rgb: np.ndarray) -> np.ndarray:
    """float32 luma (0-255, integer valued) of RGB uint8 pixels ``(..., 3)``:
    ``(77 R + 150 G + 29 B) >> 8``. The weighted sum is an integer below 2**16, exact in
    float32, and scaling by 1/256 is exact, so the floor is the integer shift."""
    x = rgb.reshape(-1, 3)
    v = np.empty(len(x), np.float32)
    part = np.empty((min(len(x), _GEMV_ROWS), 3), np.float32)  # converted a cache-full at a time
    for i in range(0, len(x), _GEMV_ROWS):
        p = part[:len(x) - i]  # the last piece may be shorter
        p[...] = x[i:i + _GEMV_ROWS]
        np.matmul(p, _WEIGHTS, out=v[i:i + _GEMV_ROWS])
    v *= np.float32(1 / 256)
    np.floor(v, out=v)
    return v.reshape(rgb.shape[:-1])


def sharpness(gray: np.ndarray) -> np.ndarray:
    """Variance of the Laplacian of the 2x2-pooled luma, one float32 per frame of ``gray``
    (``(n, h, w)`` float32). Pooling first makes the measure about the
    picture rather than the codec: block edges and mosquito noise of a low-quality encode
    (which a Laplacian at full analysis resolution mistakes for detail) average out."""
    n, h, w = gray.shape[0], gray.shape[1] & ~1, gray.shape[2] & ~1
    if h >= 6 and w >= 6:
        g = gray[:, :h, :w]
        gray = g[:, 0::2, 0::2] + g[:, 1::2, 0::2]
        gray += g[:, 0::2, 1::2]
        gray += g[:, 1::2, 1::2]
        gray *= np.float32(0.25)
    lap = gray[:, 1:-1, 1:-1] * np.float32(4)
    lap -= gray[:, :-2, 1:-1]
    lap -= gray[:, 2:, 1:-1]
    lap -= gray[:, 1:-1, :-2]
    lap -= gray[:, 1:-1, 2:]
    return lap.reshape(n, -1).var(axis=1)


class SignalBatch:
    """Collects the analysed frames of one video and appends their signals, in frame order,
    to its arrays (``brightness``, ``sharpness``, ``motion``, ``phash``, ``camera``) every
    :data:`BATCH` frames and at :meth:`flush`.

    A frame's camera motion comes with it to :meth:`add`: the decoder's vectors are read while
    the frame is at hand, or ``None`` to ask for phase correlation of its luma against the
    previous analysed frame's, which happens here once the luma exists. ``rotation`` (degrees)
    turns the luma upright for the perceptual hash only."""

    def __init__(self, height: int, width: int, rotation: int = 0, *, camera: bool = False,
                 size: int = BATCH) -> None:
        self._rgb = np.empty((size, height, width, 3), np.uint8)
        self._cam: list[tuple[float, ...] | None] = []
        self._rot = rotation // 90
        self._camera = camera
        self._prev: np.ndarray | None = None  # luma of the last analysed frame
        self.brightness, self.sharpness, self.motion = array("f"), array("f"), array("f")
        self.phash = array("Q")
        self.camera = array("f")  # 5 per frame

    @property
    def has_prev(self) -> bool:
        """Whether a frame was analysed before the next one (its motion has a reference)."""
        return self._prev is not None or bool(self._cam)

    def add(self, rgb: np.ndarray, cam: tuple[float, ...] | None = NAN5) -> None:
        """One analysed frame (``(height, width, 3)`` uint8); ``cam`` as the class says."""
        k = len(self._cam)
        self._rgb[k] = rgb
        self._cam.append(cam)
        if k + 1 == len(self._rgb):
            self.flush()

    def skip(self) -> None:
        """A frame outside the analysed span: zeros (and no camera motion) in its place."""
        self.flush()
        for arr in (self.brightness, self.sharpness, self.motion):
            arr.append(0.0)
        self.phash.append(0)
        if self._camera:
            self.camera.extend(NAN5)

    def flush(self) -> None:
        """Compute and append the signals of the frames held. Meant to run inside the caller's
        ``signals`` lap of the :mod:`~clipfactory.media.stagetime` clock: the perceptual hashes'
        time is re-charged from there to ``hashing``."""
        k = len(self._cam)
        if not k:
            return
        gray = luma(self._rgb[:k])
        n = gray[0].size
        flat = gray.reshape(k, n)
        self.brightness.extend(flat.mean(axis=1).tolist())
        self.sharpness.extend(sharpness(gray).tolist())
        diff = np.empty((k, n), np.float32)
        if self._prev is not None:
            np.subtract(flat[0], self._prev.reshape(n), out=diff[0])
        else:
            diff[0] = 0.0
        np.subtract(flat[1:], flat[:-1], out=diff[1:])
        np.abs(diff, out=diff)
        self.motion.extend(diff.mean(axis=1).tolist())
        if self._camera:
            for j, cam in enumerate(self._cam):
                ref = gray[j - 1] if j else self._prev
                if cam is None and ref is not None:  # phase correlation, asked for by the caller
                    m = phase_motion(ref, gray[j])
                    cam = (m.tx, m.ty, m.zoom, m.rot, m.residual)
                self.camera.extend(cam or NAN5)
        clock = stagetime.active()
        mark = clock.now()
        rot = self._rot
        self.phash.extend(phash64(np.rot90(g, rot) if rot else g) for g in gray)
        clock.move("signals", "hashing", clock.now() - mark)
        self._prev = gray[-1].copy()
        self._cam.clear()
