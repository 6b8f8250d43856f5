"""Global (camera) motion per frame, and a camera-motion label per clip.

Per-frame motion is a :class:`GlobalMotion` (a similarity model about the frame centre plus a
residual for what moves against it), from the decoder's motion vectors (H.264, MPEG-1/2/4, H.263:
:func:`enable_motion_vectors`, :func:`frame_vectors`, :func:`fit_global_motion`) or, for codecs
without them (HEVC, VP8/9, AV1), from phase correlation of the small gray analysis frames
(:func:`phase_motion`, :class:`PhaseTracker`). :func:`classify_clip` labels a clip.

Sign convention: a motion is how the picture CONTENT moved from the previous frame to this one,
in image coordinates (x right, y down). A camera panning right moves content left (tx < 0);
tilting up moves it down (ty > 0); zooming in makes it grow (zoom > 0).
"""

from __future__ import annotations

import gc
import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import av
import numpy as np

__all__ = ["CONSISTENCY", "DOMINANCE", "LABELS", "STATIC_SPEED", "CameraMotion", "GlobalMotion",
           "PhaseTracker", "classify_clip", "enable_motion_vectors", "fit_global_motion",
           "frame_vectors", "phase_motion"]

LABELS = ("static", "pan_left", "pan_right", "tilt_up", "tilt_down", "zoom_in", "zoom_out",
          "complex")
# Under 3 % of the frame per second a move needs over 30 s to cross the frame: a 5-s clip
# drifts by under a sixth of the picture, which reads as a locked-off shot.
STATIC_SPEED = 0.03
# One component names the move only when it is at least twice every other one (a pan with a
# zoom half as fast is still a pan; as much pan as zoom is neither).
DOMINANCE = 2.0
# ...and when three quarters of the frames moving along it agree on the direction (a shake,
# or a pan that turns back, flips sign often).
CONSISTENCY = 0.75
_TRIM = 2.5  # inliers: error within 2.5x the median error (about 1.7 sigma if Gaussian)...
_FLOOR_PX = 0.5  # ...or within half a pixel: vectors are quarter-pel, and rounded


@dataclass(frozen=True)
class GlobalMotion:
    """Content motion since the previous frame: ``tx``/``ty`` as fractions of the frame width/
    height; ``zoom`` (divergence) and ``rot`` (radians, clockwise on screen) in coordinates
    normalised by the half-diagonal; ``residual``, the mean motion against the model (objects),
    like ``tx``; ``inliers``, the vectors or tiles the model rests on."""

    tx: float
    ty: float
    zoom: float
    rot: float
    residual: float
    inliers: int


_STILL = GlobalMotion(0.0, 0.0, 0.0, 0.0, 0.0, 0)


def enable_motion_vectors(stream: av.VideoStream) -> None:
    """Have the decoder attach motion vectors to each frame (``flags2 +export_mvs``). Call it
    before the first decode; decoders that cannot export ignore it."""
    stream.codec_context.flags2 |= int(av.codec.context.Flags2.export_mvs)


class _CycleSweeper:
    """Frees the decoded frames whose side data was read.

    PyAV's ``frame.side_data`` holds the frame and the frame holds it: a reference cycle that
    only the cyclic collector frees, and the frame (a full decoded picture) is promoted to the
    oldest generation while in use, whose collections are rare. Decoded frames piled up: the
    analysis of 30 s of 1080p H.264 grew by ~200-260 MiB, more on longer videos. Once the
    frames read since the last sweep hold ``budget`` bytes, a full collection frees them
    (10-30 ms each; at 1080p one per ~5 s of video, 0.15 s of CPU per 30 s measured).
    """

    def __init__(self, budget: int) -> None:
        self.budget, self.pending = budget, 0

    def add(self, frame: av.VideoFrame) -> None:
        size = sum(p.buffer_size for p in frame.planes)
        self.pending += size
        if self.pending >= self.budget:
            gc.collect()
            self.pending = size  # this frame is still in use


_SWEEPER = _CycleSweeper(64 << 20)


def frame_vectors(frame: av.VideoFrame) -> np.ndarray | None:
    """The frame's motion vectors as float32 ``(N, 4)`` rows ``[x, y, dx, dy]``: block centre in
    this frame (pixels) and how the content there moved, from past to present; ``None`` when
    the frame has none (intra frames; HEVC, VP8/9, AV1 decoders export none).

    ``AVMotionVector``: the block at ``dst`` is predicted from ``src = dst + motion / scale``
    in a reference frame. From a past one (``source < 0``) the content went src -> dst; from a
    future one it goes dst -> src: both are ``sign(source) * motion / scale`` (checked on
    encoded pans, P- and B-frames). ``source`` is only a direction, so vectors to references
    several frames away are not divided by the distance and read fast. Clip medians hide it
    when most frames predict from the next one (x264 defaults, adaptive B-frames and pyramid:
    no change measured), not with long fixed B runs (3, no pyramid: 2x). Labels are unaffected.
    """
    side = frame.side_data.get("MOTION_VECTORS")
    _SWEEPER.add(frame)
    if side is None or len(a := side.to_ndarray()) == 0:
        return None
    sign = np.where(a["source"] > 0, 1.0, -1.0) / np.maximum(a["motion_scale"], 1)
    return np.stack((a["dst_x"], a["dst_y"], a["motion_x"] * sign, a["motion_y"] * sign),
                    axis=1).astype(np.float32)


def _similarity(p: np.ndarray, w: np.ndarray | None = None) -> tuple[float, float, float, float]:
    """(Weighted) least squares of ``u = tx + s*x - r*y, v = ty + s*y + r*x`` over the columns
    of a ``(4, N)`` array of x, y, u, v in closed form: about the centroid the translation
    decouples and ``s``, ``r`` are ratios of sums (one einsum Gram matrix, no BLAS)."""
    m = p.mean(axis=1) if w is None else (p * w).sum(axis=1) / w.sum()
    c = p - m[:, None]
    g = np.einsum("in,jn->ij", c, c if w is None else c * w)
    den = g[0, 0] + g[1, 1]
    if den <= 1e-12:  # one position only: translation alone
        return float(m[2]), float(m[3]), 0.0, 0.0
    s, r = (g[0, 2] + g[1, 3]) / den, (g[0, 3] - g[1, 2]) / den
    return float(m[2] - s * m[0] + r * m[1]), float(m[3] - s * m[1] - r * m[0]), s, r


def _sq_errors(p: np.ndarray, m: tuple[float, float, float, float]) -> np.ndarray:
    e = p[2:] - np.einsum("ij,jn->in", np.array([[m[2], -m[3]], [m[3], m[2]]]), p[:2])
    e -= np.array([[m[0]], [m[1]]])
    return np.einsum("in,in->n", e, e)


def fit_global_motion(vec: np.ndarray | None, width: int, height: int) -> GlobalMotion:
    """Robust similarity fit of ``(N, 4)`` vectors from :func:`frame_vectors` (pixels).

    Positions (about the centre) and motions are divided by the half-diagonal, so ``zoom`` and
    ``rot`` do not depend on the resolution. From the median translation, up to three times:
    keep vectors within ``_TRIM`` times the median error or half a pixel, refit. Zero vectors
    (still or skipped blocks, flat areas) stay in the fit: right for a still camera or near a
    zoom's centre, trimmed in a moving shot; but they count as agreeing in ``residual``, the
    mean error over all blocks (the objects), as a flat area is no object.
    """
    if vec is None or len(vec) == 0 or width <= 0 or height <= 0:
        return _STILL
    hd = 0.5 * math.hypot(width, height)
    p = np.array(vec.T, np.float64, order="C")  # rows x, y, u, v; C order keeps rows fast
    moving = (p[2] != 0) | (p[3] != 0)
    p[:2] -= np.array([[width / 2], [height / 2]])
    p /= hd
    k = p.shape[1] // 2  # medians by partition: np.median is 5x slower on ~1000 values
    model = (*np.partition(p[2:], k, axis=1)[:, k].tolist(), 0.0, 0.0)
    inl = np.zeros(p.shape[1], bool)
    for _ in range(3):
        e2 = _sq_errors(p, model)
        keep = e2 <= max(_TRIM**2 * float(np.partition(e2, k)[k]), (_FLOOR_PX / hd) ** 2)
        if np.count_nonzero(keep) < 3 or np.array_equal(keep, inl):
            break  # too few to fit, or converged
        inl = keep
        model = _similarity(p.compress(inl, axis=1))  # p[:, inl] would be F-ordered: slow
    e = np.sqrt(_sq_errors(p, model)) * moving
    return GlobalMotion(model[0] * hd / width, model[1] * hd / height, model[2], model[3],
                        float(e.mean()) * hd / width, int(np.count_nonzero(inl)))


@lru_cache(maxsize=8)
def _window(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """(Hann window, 1-px Gaussian in frequency: a smooth peak, sub-pixel to ~0.02 px not 0.15)."""
    fy, fx = np.fft.fftfreq(h)[:, None], np.fft.rfftfreq(w)[None, :]
    return (np.outer(np.hanning(h), np.hanning(w)).astype(np.float32),
            np.exp(-2 * np.pi**2 * (fx * fx + fy * fy)).astype(np.float32))


_Prepared = tuple[np.ndarray, np.ndarray, np.ndarray]
_HALF, _QUARTER = np.float32(0.5), np.float32(0.25)


def _prepare(gray: np.ndarray) -> _Prepared:
    """(frame, spectra of its quadrants less their means and Hann-windowed, the frame pooled 2x2
    and smoothed by [1, 4, 6, 4, 1] / 16 for the residual: what aliases is not motion)."""
    g = np.asarray(gray, np.float32)
    h, w = g.shape[0] // 2, g.shape[1] // 2
    q = g[: 2 * h, : 2 * w].reshape(2, h, 2, w).transpose(0, 2, 1, 3).reshape(4, h, w)
    q = q - q.mean(axis=(1, 2), keepdims=True)
    sm = (g[0 : 2 * h : 2, 0 : 2 * w : 2] + g[1 : 2 * h : 2, 0 : 2 * w : 2]
          + g[0 : 2 * h : 2, 1 : 2 * w : 2] + g[1 : 2 * h : 2, 1 : 2 * w : 2]) * _QUARTER
    for _ in range(2):
        sm[1:-1] = sm[1:-1] * _HALF + (sm[:-2] + sm[2:]) * _QUARTER
        sm[:, 1:-1] = sm[:, 1:-1] * _HALF + (sm[:, :-2] + sm[:, 2:]) * _QUARTER
    return g, np.fft.rfft2(q * _window(h, w)[0]), sm


def _vertex(fm: float, f0: float, fp: float) -> float:
    """Offset (within +-0.5) of the vertex of the parabola through the logs of three samples
    around a peak: exact for a Gaussian peak, which the smoothed correlation is."""
    if min(fm, f0, fp) <= 0:
        return 0.0
    lm, l0, lp = math.log(fm), math.log(f0), math.log(fp)
    den = lm - 2 * l0 + lp
    return min(0.5, max(-0.5, 0.5 * (lm - lp) / den)) if den < 0 else 0.0


def _residual_px(a: np.ndarray, b: np.ndarray, tx: float, ty: float, s: float) -> float:
    """Change from ``a`` to ``b`` that a shift (tx, ty) and zoom ``s`` leave, as a displacement
    in pixels. Whole pixels are undone by slicing, the rest ``d`` (with the zoom's, per row and
    column) by meeting halfway to first order: ``b - a + grad((a + b) / 2) * d``, exact to
    second order and without interpolation blur. ``|dI/dt| / |grad I|`` is the normal flow;
    ``2 mean|dI| / mean(|Ix| + |Iy|)`` averages it for isotropic texture. Rotation stays."""
    h, w = b.shape
    ix, iy = round(tx), round(ty)
    mx, my = abs(ix) + 1 + int(abs(s) * w / 2), abs(iy) + 1 + int(abs(s) * h / 2)
    if 2 * mx + 4 >= w or 2 * my + 4 >= h:
        return 0.0
    bb = b[my - 1 : h - my + 1, mx - 1 : w - mx + 1]  # with a 1-px border for the gradient
    aa = a[my - 1 - iy : h - my + 1 - iy, mx - 1 - ix : w - mx + 1 - ix]
    both = aa + bb
    gx = (both[1:-1, 2:] - both[1:-1, :-2]) * _QUARTER
    gy = (both[2:, 1:-1] - both[:-2, 1:-1]) * _QUARTER
    dx = (tx - ix + s * (np.arange(mx, w - mx) - (w - 1) / 2)).astype(np.float32)
    dy = (ty - iy + s * (np.arange(my, h - my) - (h - 1) / 2)).astype(np.float32)
    r = bb[1:-1, 1:-1] - aa[1:-1, 1:-1] + gx * dx + gy * dy[:, None]
    grad = float(np.abs(gx).mean() + np.abs(gy).mean())
    return 2.0 * float(np.abs(r).mean()) / max(grad, 1e-3)


def _phase(prev: _Prepared, cur: _Prepared) -> GlobalMotion:
    (_, fa, sa), (g, fb, sb) = prev, cur
    h, w = g.shape
    th, tw = h // 2, w // 2
    r = fb * np.conj(fa)
    r *= _window(th, tw)[1] / (np.abs(r) + 1e-6)  # phase only: every frequency votes alike
    hd = 0.5 * math.hypot(w, h)
    p, wt = np.empty((4, 4)), np.empty(4)
    for k, c in enumerate(np.fft.irfft2(r, s=(th, tw))):
        py, px = divmod(int(c.argmax()), tw)
        wt[k] = p0 = float(c[py, px])
        dx = px + _vertex(float(c[py, px - 1]), p0, float(c[py, (px + 1) % tw]))
        dy = py + _vertex(float(c[py - 1, px]), p0, float(c[(py + 1) % th, px]))
        p[:, k] = ((k % 2 + 0.5) * tw - w / 2, (k // 2 + 0.5) * th - h / 2,
                   (dx + tw / 2) % tw - tw / 2, (dy + th / 2) % th - th / 2)
    p /= hd
    wt = np.maximum(wt, 1e-3)  # the peak height: how sure the quadrant is
    model = _similarity(p, wt)
    e = np.sqrt(_sq_errors(p, model)) * hd
    worst = int(e.argmax())
    if e[worst] > max(0.5, 2.0 * float(np.partition(e, 2)[2])):  # a lone quadrant on an object
        p, wt = np.delete(p, worst, axis=1), np.delete(wt, worst)
        model = _similarity(p, wt)
    tx, ty, s, _ = model
    res = 2 * _residual_px(sa, sb, tx * hd / 2, ty * hd / 2, s)  # pooled -> frame pixels
    return GlobalMotion(tx * hd / w, ty * hd / h, s, model[3], res / w, p.shape[1])


def phase_motion(prev_gray: np.ndarray, gray: np.ndarray) -> GlobalMotion:
    """Global motion from ``prev_gray`` to ``gray`` (same-size 2-D arrays, e.g. the 160x90
    analysis luma) for codecs without vectors. Each quadrant is phase-correlated with its
    predecessor (Hann window, smoothed phase-only cross spectrum, sub-pixel peak); the vectors'
    similarity fit of the four shifts, weighted by peak height, drops a lone disagreeing
    quadrant (an object). ``residual``: :func:`_residual_px`. Over 1/4 frame per frame aliases.
    """
    if gray.shape != prev_gray.shape or min(gray.shape) < 16:
        return _STILL
    return _phase(_prepare(prev_gray), _prepare(gray))


class PhaseTracker:
    """:func:`phase_motion` over consecutive frames, preparing each frame once."""

    _prev: _Prepared | None = None

    def update(self, gray: np.ndarray) -> GlobalMotion | None:
        """Motion from the previous frame to ``gray``; ``None`` first and after a resize."""
        if min(gray.shape) < 16:
            return _STILL
        cur, prev = _prepare(gray), self._prev
        self._prev = cur
        return _phase(prev, cur) if prev is not None and prev[0].shape == gray.shape else None


@dataclass(frozen=True)
class CameraMotion:
    """A clip's ``label`` (one of :data:`LABELS`); ``camera``, the median ``hypot(tx, ty, zoom,
    rot)`` per second (about the fraction of the frame crossed per second); ``object``, the
    median residual per second; per-second medians of the model; ``frames`` used."""

    label: str
    camera: float
    object: float
    tx: float
    ty: float
    zoom: float
    rot: float
    frames: int


def classify_clip(motions: Sequence[GlobalMotion | None] | np.ndarray, fps: float,
                  times: Sequence[float] | np.ndarray | None = None) -> CameraMotion:
    """Label a clip from its per-frame motions (``None`` where a frame has none, e.g. intra
    frames) or an ``(N, 5)`` array of ``tx, ty, zoom, rot, residual`` rows. Motions are divided by their frame's duration: ``times[i] - times[i - 1]`` given
    ``times`` (seconds, one per motion), else ``1 / fps``. ``static``: median speed under
    :data:`STATIC_SPEED`; a pan, tilt or zoom: that component of the per-second medians is at
    least :data:`STATIC_SPEED` and :data:`DOMINANCE` times every other one, with the median's
    sign on :data:`CONSISTENCY` of the frames moving along it; else ``complex``.
    """
    m = np.array(motions if isinstance(motions, np.ndarray) else [
        (g.tx, g.ty, g.zoom, g.rot, g.residual) if g is not None else (np.nan,) * 5
        for g in motions], np.float64).reshape(-1, 5)
    dt = np.full(len(m), 1.0 / fps if fps > 0 else 1 / 30)
    if times is not None and len(m) > 1:
        step = np.diff(np.asarray(times, np.float64)[: len(m)])
        dt[1 : len(step) + 1] = np.where(step > 0, step, np.nan)
    m = m / dt[:, None]
    m = m[np.isfinite(m).all(axis=1)]
    med = np.median(m, axis=0) if len(m) else np.zeros(5)
    speed = float(np.median(np.sqrt((m[:, :4] ** 2).sum(axis=1)))) if len(m) else 0.0
    label = "static" if speed < STATIC_SPEED else "complex"
    top, second = np.argsort(-np.abs(med[:4]))[:2]
    if label == "complex" and top < 3 and abs(med[top]) >= max(STATIC_SPEED,
                                                                 DOMINANCE * abs(med[second])):
        signs = np.sign(m[:, top])
        agree = np.count_nonzero(signs == np.sign(med[top])) / max(np.count_nonzero(signs), 1)
        if agree >= CONSISTENCY:
            names = (("pan_left", "pan_right"), ("tilt_down", "tilt_up"), ("zoom_out", "zoom_in"))
            label = names[top][int(med[top] < 0) if top == 0 else int(med[top] > 0)]
    return CameraMotion(label, speed, *map(float, med[[4, 0, 1, 2, 3]]), len(m))
