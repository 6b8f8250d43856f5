"""Global (camera) motion per frame, and a camera-motion label per clip.

Two sources of per-frame motion, both reduced to one :class:`GlobalMotion` (a similarity model
about the frame centre plus a residual for what moves against it):

* the decoder's motion vectors (H.264, HEVC, MPEG-2/4 with ``flags2 +export_mvs``):
  :func:`enable_motion_vectors`, :func:`frame_vectors`, :func:`fit_global_motion`;
* phase correlation of the small gray analysis frames, for codecs without vectors (VP9, AV1):
  :func:`phase_motion`, or :class:`PhaseTracker` which reuses the previous frame's spectra.

Sign convention everywhere: a motion is how the picture CONTENT moved from the previous frame
to this one, in image coordinates (x right, y down). A camera panning right makes content move
left (tx < 0); tilting up makes it move down (ty > 0); zooming in makes it grow (zoom > 0).
:func:`classify_clip` turns a clip's per-frame motions into per-second medians and a label.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import av
import numpy as np

__all__ = [
    "CONSISTENCY", "DOMINANCE", "LABELS", "STATIC_SPEED", "CameraMotion", "GlobalMotion",
    "PhaseTracker", "classify_clip", "enable_motion_vectors", "fit_global_motion",
    "frame_vectors", "phase_motion",
]

LABELS = ("static", "pan_left", "pan_right", "tilt_up", "tilt_down", "zoom_in", "zoom_out",
          "complex")
# Below 3 % of the frame per second a move needs over 30 s to cross the frame: a 5-s clip
# drifts by less than a sixth of the picture, which viewers read as a locked-off shot.
STATIC_SPEED = 0.03
# One component names the move only when it is at least twice every other one (a pan with a
# zoom half as fast is still a pan; equal pan and zoom is not one thing).
DOMINANCE = 2.0
# ...and when three quarters of the frames that move along it agree on the direction (a shake,
# or a pan that turns back, flips sign often).
CONSISTENCY = 0.75
_TRIM = 2.5  # inliers: residual within 2.5x the median residual (about 1.7 sigma if Gaussian)
_FLOOR_PX = 0.5  # ...but never below half a pixel: H.264 vectors are quarter-pel, rounded


@dataclass(frozen=True)
class GlobalMotion:
    """One frame's content motion since the previous frame: ``tx``/``ty`` as fractions of the
    frame width/height, ``zoom`` the divergence and ``rot`` the rotation (radians, clockwise on
    screen as y points down) in coordinates normalised by the half-diagonal, ``residual`` the
    mean motion against the model (objects moving), like ``tx``; ``inliers`` vectors or tiles
    the model rests on."""

    tx: float
    ty: float
    zoom: float
    rot: float
    residual: float
    inliers: int


_STILL = GlobalMotion(0.0, 0.0, 0.0, 0.0, 0.0, 0)


def enable_motion_vectors(stream: av.VideoStream) -> None:
    """Ask the decoder of ``stream`` to attach its motion vectors to each frame
    (``flags2 +export_mvs``). Call before the first decode; harmless for codecs without them."""
    cc = stream.codec_context
    cc.flags2 = cc.flags2 | int(av.codec.context.Flags2.export_mvs)


def frame_vectors(frame: av.VideoFrame) -> np.ndarray | None:
    """The frame's motion vectors as float32 ``(N, 4)`` rows ``[x, y, dx, dy]``: block centre
    in this frame (pixels) and the content motion there, from past to present; ``None`` when the
    frame carries none (intra frames, codecs without export).

    FFmpeg's ``AVMotionVector`` says the block at ``dst`` is predicted from ``src`` in a
    reference frame, ``src = dst + motion / motion_scale``. From a past reference (``source <
    0``) the content went src -> dst, a motion of ``-motion / scale``; from a future one it goes
    dst -> src, so the sign flips: both are ``sign(source) * motion / scale`` (checked on
    encoded pans, both directions and B-frames). ``source`` is only a direction, so vectors to
    references several frames away (P-frames after B-frames, B-pyramids) are not divided by
    that distance: with x264's default 3 B-frames a per-frame median reads about 1.5x fast.
    Directions, and so labels, are unaffected.
    """
    side = frame.side_data.get("MOTION_VECTORS")
    if side is None:
        return None
    a = side.to_ndarray()
    if len(a) == 0:
        return None
    sign = np.where(a["source"] > 0, 1.0, -1.0) / np.maximum(a["motion_scale"], 1)
    out = np.empty((len(a), 4), np.float32)
    out[:, 0], out[:, 1] = a["dst_x"], a["dst_y"]
    out[:, 2], out[:, 3] = a["motion_x"] * sign, a["motion_y"] * sign
    return out


def _similarity(x: np.ndarray, y: np.ndarray, u: np.ndarray, v: np.ndarray,
                w: np.ndarray | None = None) -> tuple[float, float, float, float]:
    """Weighted least squares of ``u = tx + s*x - r*y, v = ty + s*y + r*x`` in closed form:
    about the weighted centroid the translation decouples, and ``s``/``r`` are two ratios of
    sums (no matrix, no BLAS)."""
    if w is None:
        w = np.ones_like(x)
    sw = float(w.sum()) or 1.0
    mx, my, mu, mv = ((w * a).sum() / sw for a in (x, y, u, v))
    xc, yc, uc, vc = x - mx, y - my, u - mu, v - mv
    den = float((w * (xc * xc + yc * yc)).sum())
    if den <= 1e-12:  # one position only: translation alone
        return float(mu), float(mv), 0.0, 0.0
    s = float((w * (xc * uc + yc * vc)).sum()) / den
    r = float((w * (xc * vc - yc * uc)).sum()) / den
    return float(mu - s * mx + r * my), float(mv - s * my - r * mx), s, r


def _errors(x: np.ndarray, y: np.ndarray, u: np.ndarray, v: np.ndarray,
            m: tuple[float, float, float, float]) -> np.ndarray:
    tx, ty, s, r = m
    return np.hypot(u - (tx + s * x - r * y), v - (ty + s * y + r * x))


def fit_global_motion(vec: np.ndarray | None, width: int, height: int) -> GlobalMotion:
    """Robust similarity fit of ``(N, 4)`` vectors from :func:`frame_vectors` (pixels).

    Positions are taken about the frame centre and, like the motions, divided by the
    half-diagonal, so ``zoom``/``rot`` do not depend on the resolution. The fit starts from the
    median translation, then three times keeps vectors within ``_TRIM`` times the median error
    (at least half a pixel) and refits. Exactly-zero vectors (still or skipped blocks, or flat
    areas where the encoder found nothing better) stay in the fit, where they are right for a
    still camera or near a zoom's centre and are trimmed as outliers in a moving shot; but they
    count as agreeing with the model in ``residual``, the mean error over all blocks (the
    objects' motion), since a flat area in a pan is not an object.
    """
    if vec is None or len(vec) == 0 or width <= 0 or height <= 0:
        return _STILL
    hd = 0.5 * float(np.hypot(width, height))
    v64 = vec.astype(np.float64)
    moving = (v64[:, 2] != 0) | (v64[:, 3] != 0)
    x, y = (v64[:, 0] - width / 2) / hd, (v64[:, 1] - height / 2) / hd
    u, v = v64[:, 2] / hd, v64[:, 3] / hd
    model = (float(np.median(u)), float(np.median(v)), 0.0, 0.0)
    inl = np.ones(len(u), bool)
    for _ in range(3):
        e = _errors(x, y, u, v, model)
        keep = e <= max(_TRIM * float(np.median(e)), _FLOOR_PX / hd)
        if keep.sum() < 3:
            break
        inl = keep
        model = _similarity(x[inl], y[inl], u[inl], v[inl])
    e = _errors(x, y, u, v, model) * moving
    tx, ty, s, r = model
    return GlobalMotion(tx * hd / width, ty * hd / height, s, r,
                        float(e.mean()) * hd / width, int(inl.sum()))


@lru_cache(maxsize=8)
def _window(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """(Hann window, frequency-domain Gaussian of 1 px) for (h, w) tiles. The Gaussian makes
    the correlation peak a smooth blob (sub-pixel fits to ~0.03 px instead of ~0.15) and damps
    codec noise."""
    fy, fx = np.fft.fftfreq(h)[:, None], np.fft.rfftfreq(w)[None, :]
    return (np.outer(np.hanning(h), np.hanning(w)).astype(np.float32),
            np.exp(-2 * np.pi**2 * (fx * fx + fy * fy)).astype(np.float32))


_Prepared = tuple[np.ndarray, np.ndarray, np.ndarray]


def _prepare(gray: np.ndarray) -> _Prepared:
    """(frame, its spectra per quadrant, smoothed 2x2-pooled frame): each quadrant less its mean
    and Hann-windowed; the pooled frame is what the residual is measured on."""
    g = np.asarray(gray, np.float32)
    h, w = g.shape[0] // 2, g.shape[1] // 2
    q = g[: 2 * h, : 2 * w].reshape(2, h, 2, w).transpose(0, 2, 1, 3).reshape(4, h, w)
    q = q - q.mean(axis=(1, 2), keepdims=True)
    pooled = (g[0 : 2 * h : 2, 0 : 2 * w : 2] + g[1 : 2 * h : 2, 0 : 2 * w : 2]
              + g[0 : 2 * h : 2, 1 : 2 * w : 2] + g[1 : 2 * h : 2, 1 : 2 * w : 2])
    for _ in range(2):  # [1, 4, 6, 4, 1] / 16: what aliases at this size is not motion
        pooled[1:-1] = pooled[1:-1] * np.float32(0.5) + (pooled[:-2] + pooled[2:]) * np.float32(0.25)
        pooled[:, 1:-1] = (pooled[:, 1:-1] * np.float32(0.5)
                           + (pooled[:, :-2] + pooled[:, 2:]) * np.float32(0.25))
    return g, np.fft.rfft2(q * _window(h, w)[0]), pooled * np.float32(0.25)


def _vertex(fm: float, f0: float, fp: float) -> float:
    """Vertex offset (within +-0.5) of the parabola through the logs of three samples around a
    peak: exact for a Gaussian peak, which the smoothed correlation is."""
    if min(fm, f0, fp) <= 0:
        return 0.0
    lm, l0, lp = math.log(fm), math.log(f0), math.log(fp)
    den = lm - 2 * l0 + lp
    return min(0.5, max(-0.5, 0.5 * (lm - lp) / den)) if den < 0 else 0.0


def _peaks(c: np.ndarray) -> list[tuple[float, float, float]]:
    """(dx, dy, height) of the highest peak of each (h, w) correlation surface, sub-pixel,
    wrapped to signed shifts."""
    n, h, w = c.shape
    flat = c.reshape(-1)
    idx = []
    for k, j in enumerate(c.reshape(n, -1).argmax(axis=1).tolist()):
        py, px, b = j // w, j % w, k * h * w
        idx += [b + j, b + py * w + (px - 1) % w, b + py * w + (px + 1) % w,
                b + (py - 1) % h * w + px, b + (py + 1) % h * w + px]
    f = flat[idx].tolist()
    out = []
    for k in range(n):
        j, (p0, left, right, up, down) = idx[5 * k] - k * h * w, f[5 * k : 5 * k + 5]
        dx, dy = j % w + _vertex(left, p0, right), j // w + _vertex(up, p0, down)
        out.append(((dx + w / 2) % w - w / 2, (dy + h / 2) % h - h / 2, p0))
    return out


def _residual_px(a: np.ndarray, b: np.ndarray, tx: float, ty: float, s: float) -> float:
    """Change from ``a`` to ``b`` (same-size images) the model does not explain, as a
    displacement in pixels. The whole-pixel part of the shift is undone by slicing; the rest,
    ``d`` (with the zoom, per row and column), by meeting halfway to first order:
    ``b - a + grad * d`` with the gradient of ``(a + b) / 2``, which is exact to second order
    (no interpolation blur). Rotation is not undone. ``|dI/dt| / |grad I|`` is the normal flow,
    and ``2 * mean|dI| / mean(|Ix| + |Iy|)`` averages it for isotropic texture."""
    h, w = b.shape
    ix, iy = round(tx), round(ty)
    mx, my = abs(ix) + 1 + int(abs(s) * w / 2), abs(iy) + 1 + int(abs(s) * h / 2)
    if 2 * mx + 4 >= w or 2 * my + 4 >= h:
        return 0.0
    bb = b[my - 1 : h - my + 1, mx - 1 : w - mx + 1]  # with a 1-px border for the gradient
    aa = a[my - 1 - iy : h - my + 1 - iy, mx - 1 - ix : w - mx + 1 - ix]
    both = aa + bb
    gx = (both[1:-1, 2:] - both[1:-1, :-2]) * np.float32(0.25)
    gy = (both[2:, 1:-1] - both[:-2, 1:-1]) * np.float32(0.25)
    cols = np.arange(mx, w - mx, dtype=np.float32) - np.float32((w - 1) / 2)
    rows = np.arange(my, h - my, dtype=np.float32) - np.float32((h - 1) / 2)
    dx, dy = np.float32(tx - ix) + np.float32(s) * cols, np.float32(ty - iy) + np.float32(s) * rows
    r = bb[1:-1, 1:-1] - aa[1:-1, 1:-1] + gx * dx + gy * dy[:, None]
    grad = float(np.abs(gx).mean() + np.abs(gy).mean())
    return 2.0 * float(np.abs(r).mean()) / max(grad, 1e-3)


def _similarity4(pts: list[tuple[float, float, float, float, float]]
                 ) -> tuple[float, float, float, float]:
    """:func:`_similarity` for a handful of (x, y, u, v, weight) points, in plain floats."""
    sw = sum(p[4] for p in pts) or 1.0
    mx, my, mu, mv = (sum(p[i] * p[4] for p in pts) / sw for i in range(4))
    den = sxu = sxv = 0.0
    for x, y, u, v, wt in pts:
        xc, yc, uc, vc = x - mx, y - my, u - mu, v - mv
        den += wt * (xc * xc + yc * yc)
        sxu += wt * (xc * uc + yc * vc)
        sxv += wt * (xc * vc - yc * uc)
    s, r = (sxu / den, sxv / den) if den > 1e-12 else (0.0, 0.0)
    return mu - s * mx + r * my, mv - s * my - r * mx, s, r


def _phase(prev: _Prepared, cur: _Prepared) -> GlobalMotion:
    (_, fa, pa), (g, fb, pb) = prev, cur
    h, w = g.shape
    th, tw = h // 2, w // 2
    r = fb * np.conj(fa)
    r *= _window(th, tw)[1] / (np.abs(r) + 1e-6)  # phase only: every frequency votes alike
    hd = 0.5 * math.hypot(w, h)
    pts = [(((k % 2 + 0.5) * tw - w / 2) / hd, ((k // 2 + 0.5) * th - h / 2) / hd, dx / hd,
            dy / hd, max(p0, 1e-3))
           for k, (dx, dy, p0) in enumerate(_peaks(np.fft.irfft2(r, s=(th, tw))))]
    model = _similarity4(pts)

    def err(p: tuple[float, ...], m: tuple[float, float, float, float]) -> float:
        return hd * math.hypot(p[2] - m[0] - m[2] * p[0] + m[3] * p[1],
                               p[3] - m[1] - m[2] * p[1] - m[3] * p[0])

    e = sorted((err(p, model), k) for k, p in enumerate(pts))
    if e[-1][0] > max(0.5, 2.0 * e[-2][0]):  # one quadrant on a moving object: drop it
        pts.pop(e[-1][1])
        model = _similarity4(pts)
    tx, ty, s, rot = model
    res = _residual_px(pa, pb, tx * hd / 2, ty * hd / 2, s) * 2  # pooled -> full pixels
    return GlobalMotion(tx * hd / w, ty * hd / h, s, rot, res / w, len(pts))


def phase_motion(prev_gray: np.ndarray, gray: np.ndarray) -> GlobalMotion:
    """Global motion from ``prev_gray`` to ``gray`` (2-D float arrays of one size, e.g. the
    160x90 analysis luma) by phase correlation, for codecs without motion vectors.

    Each quadrant is phase-correlated with its predecessor (Hann window, Gaussian-smoothed
    phase-only cross spectrum, sub-pixel peaks); the four shifts at the quadrant centres go
    through the same similarity fit as the vectors, a lone disagreeing quadrant (an object)
    being dropped. ``residual`` is the change left after undoing the model, on 2x2-pooled
    frames (see :func:`_residual_px`). Shifts beyond about a quarter of the frame per frame
    alias. In a decode loop use :class:`PhaseTracker`, which prepares each frame once.
    """
    if gray.shape != prev_gray.shape or min(gray.shape) < 16:
        return _STILL
    return _phase(_prepare(prev_gray), _prepare(gray))


class PhaseTracker:
    """:func:`phase_motion` over consecutive frames, each frame prepared once."""

    def __init__(self) -> None:
        self._prev: _Prepared | None = None

    def update(self, gray: np.ndarray) -> GlobalMotion | None:
        """Motion from the previous frame to ``gray``; ``None`` for the first frame and after a
        size change."""
        if min(gray.shape) < 16:
            self._prev = None
            return _STILL
        cur, prev = _prepare(gray), self._prev
        self._prev = cur
        return _phase(prev, cur) if prev is not None and prev[0].shape == gray.shape else None


@dataclass(frozen=True)
class CameraMotion:
    """A clip's camera motion: ``label`` (one of :data:`LABELS`), ``camera`` the median speed
    of the global motion (``hypot(tx, ty, zoom, rot)`` per second: about the fraction of the
    frame crossed per second), ``object`` the median residual per second, and the per-second
    medians of the model; ``frames`` motions it rests on."""

    label: str
    camera: float
    object: float
    tx: float
    ty: float
    zoom: float
    rot: float
    frames: int

    def scores(self, prefix: str = "camera") -> dict[str, float]:
        """The numbers as a flat namespaced dict (``camera.speed``, ``camera.object``...)."""
        return {f"{prefix}.speed": self.camera, f"{prefix}.object": self.object,
                f"{prefix}.tx": self.tx, f"{prefix}.ty": self.ty, f"{prefix}.zoom": self.zoom,
                f"{prefix}.rot": self.rot}


def classify_clip(motions: Sequence[GlobalMotion | None] | np.ndarray, fps: float,
                  times: Sequence[float] | np.ndarray | None = None) -> CameraMotion:
    """Label a clip from its per-frame motions (``None`` for frames without one, e.g. intra
    frames), or an ``(N, 5)`` array of ``tx, ty, zoom, rot, residual`` rows.

    Each motion is divided by its frame's duration: ``times[i] - times[i - 1]`` when
    ``times`` (seconds, one per motion) are given, else ``1 / fps``. Then: ``static`` when the
    median speed is under :data:`STATIC_SPEED`; a pan, tilt or zoom when that component of the
    per-second medians is at least :data:`DOMINANCE` times every other one, at least
    :data:`STATIC_SPEED`, and has the median's sign on :data:`CONSISTENCY` of the frames that
    move along it; else ``complex`` (mixed moves, rotation, shake, direction changes).
    """
    if isinstance(motions, np.ndarray):
        m = np.asarray(motions, np.float64).reshape(-1, 5)
    else:
        m = np.array([(g.tx, g.ty, g.zoom, g.rot, g.residual) if g is not None else
                      (np.nan,) * 5 for g in motions], np.float64).reshape(-1, 5)
    dt = np.full(len(m), 1.0 / fps if fps > 0 else 1 / 30)
    if times is not None and len(m) > 1:
        t = np.asarray(times, np.float64)[: len(m)]
        dt[1 : len(t)] = np.where(np.diff(t) > 0, np.diff(t), np.nan)
    m = m / dt[:, None]
    m = m[np.isfinite(m).all(axis=1)]
    if len(m) == 0:
        return CameraMotion("static", 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0)
    med = np.median(m, axis=0)
    speed = float(np.median(np.sqrt((m[:, :4] ** 2).sum(axis=1))))
    label = "static" if speed < STATIC_SPEED else "complex"
    order = np.argsort(-np.abs(med[:4]))
    top, second = int(order[0]), float(abs(med[order[1]]))
    if label == "complex" and top < 3 and abs(med[top]) >= max(STATIC_SPEED,
                                                                 DOMINANCE * second):
        signs = np.sign(m[:, top])
        agree = float((signs == np.sign(med[top])).sum()) / max(int((signs != 0).sum()), 1)
        if agree >= CONSISTENCY:
            label = (("pan_left", "pan_right"), ("tilt_down", "tilt_up"),
                     ("zoom_out", "zoom_in"))[top][int(med[top] < 0) if top == 0 else
                                                   int(med[top] > 0)]
    return CameraMotion(label, speed, float(np.median(m[:, 4])), *map(float, med[:4]),
                        len(m))
