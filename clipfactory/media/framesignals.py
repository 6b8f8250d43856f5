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

__all__ = ["BATCH", "NAN5", "PROBE", "SignalBatch", "black_bars", "luma", "sharpness"]

BATCH = 16  # frames: 0.7 MB of 160x90 RGB; larger batches fall out of the cache
PROBE = 24  # frames searched for black bars before the first signals are computed (~1 s)
_MAX_PROBE = 10 * PROBE  # frames after which a picture that never showed is taken whole
_BAR = 24.0  # a border row or column at or below this luma in every probed frame is a bar...
_PICTURE = 40.0  # ... once the probed frames show luma above this somewhere (a picture)
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


def black_bars(gray: np.ndarray) -> tuple[int, int, int, int] | None:
    """The picture inside letterbox or pillarbox bars of frames ``gray`` (``(n, h, w)`` luma):
    ``(top, bottom, left, right)``, rows ``top:bottom`` and columns ``left:right``; None
    while the frames show no picture (black, or a fade from black: undecided).

    A bar is a run of border rows (or columns) at or below :data:`_BAR` in every frame, on
    both sides and of about the same size, as letterboxing and pillarboxing make them (a 4:3
    or 9:16 picture in a 16:9 frame, 2.39:1 in 16:9). One dark side alone (a night sky, a
    dark floor) is picture, and so is any run that would leave under a quarter of the frame."""
    rows, cols = gray.max(axis=(0, 2)), gray.max(axis=(0, 1))
    if float(rows.max(initial=0.0)) <= _PICTURE:
        return None

    def run(v: np.ndarray) -> int:
        above = np.flatnonzero(v > _BAR)
        return int(above[0]) if len(above) else len(v)

    def pair(a: int, b: int, n: int) -> tuple[int, int]:
        if min(a, b) < 2 or abs(a - b) > max(2.0, 0.25 * max(a, b)) or n - a - b < n / 4:
            return 0, 0
        return a, b

    h, w = gray.shape[1:]
    top, bottom = pair(run(rows), run(rows[::-1]), h)
    left, right = pair(run(cols), run(cols[::-1]), w)
    return top, h - bottom, left, w - right


class SignalBatch:
    """Collects the analysed frames of one video and appends their signals, in frame order,
    to its arrays (``brightness``, ``sharpness``, ``motion``, ``phash``, ``camera``) every
    :data:`BATCH` frames and at :meth:`flush`.

    A frame's camera motion comes with it to :meth:`add`: the decoder's vectors are read while
    the frame is at hand, or ``None`` to ask for phase correlation of its luma against the
    previous analysed frame's, which happens here once the luma exists. ``rotation`` (degrees)
    turns the luma upright for the perceptual hash only.

    ``bars``: brightness, sharpness, motion and phase correlation are computed on the picture
    inside letterbox or pillarbox bars (:func:`black_bars` over the first :data:`PROBE`
    frames), not on the bars: the bars' edge made a blurred shot sharp, and their black made
    a dim picture too dark. The perceptual hash stays the whole frame's."""

    def __init__(self, height: int, width: int, rotation: int = 0, *, camera: bool = False,
                 size: int = BATCH, bars: bool = True) -> None:
        self._size = size
        self._probing = bars  # still looking for black bars (the first flush waits for them)
        self._probed = 0
        self.picture: tuple[int, int, int, int] | None = None  # rows/cols inside the bars
        self._rgb = np.empty((max(size, PROBE) if bars else size, height, width, 3), np.uint8)
        self._cam: list[tuple[float, ...] | None] = []
        self._rot = rotation // 90
        self._camera = camera
        self._prev: np.ndarray | None = None  # luma of the last analysed frame
        self.brightness, self.sharpness, self.motion = array("f"), array("f"), array("f")
        self.phash = array("Q")
        self.camera = array("f")  # 5 per frame

    @property
    def picture_share(self) -> tuple[float, float, float, float] | None:
        """:attr:`picture` as fractions of the frame's height and width (top, bottom, left,
        right): the same part of a frame of any size; None while there are no bars."""
        if self.picture is None:
            return None
        h, w = self._rgb.shape[1:3]
        top, bottom, left, right = self.picture
        return top / h, bottom / h, left / w, right / w

    @property
    def has_prev(self) -> bool:
        """Whether a frame was analysed before the next one (its motion has a reference)."""
        return self._prev is not None or bool(self._cam)

    def add(self, rgb: np.ndarray, cam: tuple[float, ...] | None = NAN5) -> None:
        """One analysed frame (``(height, width, 3)`` uint8); ``cam`` as the class says."""
        k = len(self._cam)
        self._rgb[k] = rgb
        self._cam.append(cam)
        if k + 1 == (len(self._rgb) if self._probing else self._size):
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
        if self._probing:
            self._find_bars(gray)
        pic = gray
        if self.picture is not None:
            top, bottom, left, right = self.picture
            pic = np.ascontiguousarray(gray[:, top:bottom, left:right])
        n = pic[0].size
        flat = pic.reshape(k, n)
        self.brightness.extend(flat.mean(axis=1).tolist())
        self.sharpness.extend(sharpness(pic).tolist())
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
                ref = pic[j - 1] if j else self._prev
                if cam is None and ref is not None:  # phase correlation, asked for by the caller
                    m = phase_motion(ref, pic[j])
                    cam = (m.tx, m.ty, m.zoom, m.rot, m.residual)
                self.camera.extend(cam or NAN5)
        clock = stagetime.active()
        mark = clock.now()
        rot = self._rot
        self.phash.extend(phash64(np.rot90(g, rot) if rot else g) for g in gray)
        clock.move("signals", "hashing", clock.now() - mark)
        self._prev = pic[-1].copy()
        self._cam.clear()

    def _find_bars(self, gray: np.ndarray) -> None:
        """Decide the picture from the frames held (the first flush's): once they show one, or
        after :data:`_MAX_PROBE` frames without (the whole frame, then)."""
        self._probed += len(gray)
        found = black_bars(gray)
        if found is None and self._probed < _MAX_PROBE:
            return  # black so far: the next frames decide, and these are measured whole
        self._probing = False
        h, w = gray.shape[1:]
        if found is not None and found != (0, h, 0, w):
            self.picture = found
            if self._prev is not None:  # the frame before, as the ones after are measured
                self._prev = self._prev[found[0]:found[1], found[2]:found[3]].copy()
