"""Synthetic camera moves with known motion, for testing camera-motion labels.

A virtual camera looks at a large deterministic texture (smooth noise at several scales under
hard-edged discs and boxes, so block matching and phase correlation both lock on) through a
window that pans, tilts, zooms or stays put; each frame is the window resampled to the output
size. Motion is a function of the frame's TIME, so low frame rates and irregular timestamps
(``vfr``) show the same per-second motion as 30 fps.

Conventions (those of :mod:`clipfactory.media.motion`): ``pan_right`` moves the window right,
so the content moves left; ``tilt_up`` moves it up, so the content moves down; ``zoom_in``
shrinks it about the centre, so the content grows. ``speed`` is a fraction of the frame per
second for pans and tilts, and the relative growth rate of the content per second for zooms.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import av
import numpy as np

from clipfactory.testing.synth import VFR_TIME_BASE, _rate, _upscale, frame_times

__all__ = ["MOVES", "write_camera_move"]

MOVES = ("static", "pan_left", "pan_right", "tilt_up", "tilt_down", "zoom_in", "zoom_out")


def _texture(h: int, w: int, seed: int) -> np.ndarray:
    """(h, w, 3) float32 RGB: 1/f-like smooth noise in luma, hard-edged shapes, soft chroma."""
    rng = np.random.default_rng([seed, 31337])
    luma = np.zeros((h, w), np.float32)
    for cell in (96, 48, 24, 12, 6):  # octaves, coarse to fine; amplitude ~ sqrt(cell)
        grid = rng.standard_normal((h // cell + 2, w // cell + 2, 1))
        luma += _upscale(grid, h, w)[..., 0] * (math.sqrt(cell) * 3.0)
    for _ in range(h * w // 900):  # one shape per 30x30 px: edges everywhere, some large
        r = 2 + int(26 * rng.random() ** 2)  # mostly small, a few large
        y, x = int(rng.integers(0, h)), int(rng.integers(0, w))
        y0, y1, x0, x1 = max(0, y - r), min(h, y + r + 1), max(0, x - r), min(w, x + r + 1)
        level = float(rng.uniform(-70, 70))
        if rng.random() < 0.5:
            yy, xx = np.ogrid[y0 - y : y1 - y, x0 - x : x1 - x]
            luma[y0:y1, x0:x1][yy * yy + xx * xx <= r * r] = level
        else:
            luma[y0:y1, x0:x1] = level
    chroma = _upscale(rng.standard_normal((h // 64 + 2, w // 64 + 2, 2)), h, w) * 18
    y = np.clip(luma + 128, 24, 232)
    return np.stack((y + chroma[..., 0], y - 0.4 * (chroma[..., 0] + chroma[..., 1]),
                     y + chroma[..., 1]), axis=2).astype(np.float32)


def _sample(tex: np.ndarray, cx: float, cy: float, z: float, w: int, h: int) -> np.ndarray:
    """The window centred at (cx, cy), ``z`` texture pixels per output pixel, bilinearly
    resampled to (h, w) uint8."""
    out = tex
    for axis, n, c in ((0, h, cy), (1, w, cx)):
        pos = c + (np.arange(n) + 0.5 - n / 2) * z - 0.5
        pos = np.clip(pos, 0, tex.shape[axis] - 1.001)
        i0 = pos.astype(np.intp)
        f = (pos - i0).astype(np.float32).reshape((-1, 1, 1) if axis == 0 else (-1, 1))
        lo, hi = np.take(out, i0, axis), np.take(out, i0 + 1, axis)
        out = lo + (hi - lo) * f
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def _camera(move: str, speed: float, tc: float, w: int, h: int) -> tuple[float, float, float]:
    """(dx, dy, scale) of the window at ``tc`` seconds from the clip's middle; ``move`` may
    join several moves with ``+`` (``pan_right+zoom_in``)."""
    dx = dy = 0.0
    scale = 1.0
    for part in move.split("+"):
        if part not in MOVES:
            raise ValueError(f"unknown move {part!r}; expected one of {MOVES} (joined by +)")
        if part.startswith("pan"):
            dx += speed * w * tc * (1 if part == "pan_right" else -1)
        elif part.startswith("tilt"):
            dy += speed * h * tc * (-1 if part == "tilt_up" else 1)
        elif part.startswith("zoom"):
            scale *= math.exp(speed * tc * (-1 if part == "zoom_in" else 1))
    return dx, dy, scale


def _add_stream(out: av.container.OutputContainer, codec: str, fps: float, width: int,
                height: int, crf: int, bframes: int, vfr: bool) -> av.VideoStream:
    """A video stream as :func:`clipfactory.testing.synth.write_video` makes one, except that
    x264 runs ``superfast`` (quarter-pel motion search, as real encoders do; ``ultrafast`` only
    finds whole-pixel vectors) with ``bframes`` B-frames."""
    opts = {"crf": str(crf)}
    if codec == "libx264":
        opts["preset"] = "superfast"
    elif codec == "libvpx-vp9":
        opts.update({"b": "0", "deadline": "realtime", "cpu-used": "8"})
    elif codec == "libsvtav1":
        os.environ.setdefault("SVT_LOG", "1")  # errors only
        opts["preset"] = "10"
    stream = out.add_stream(codec, rate=_rate(fps), options=opts)
    stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
    if codec == "libx264":
        stream.codec_context.thread_count = 2  # fixed: the bytes do not depend on the machine
        stream.codec_context.max_b_frames = bframes
    if vfr:
        stream.codec_context.time_base = stream.time_base = VFR_TIME_BASE
    return stream


def write_camera_move(path: str | os.PathLike[str], move: str, *, speed: float = 0.2,
                      seconds: float = 3.0, fps: float = 30, width: int = 320,
                      height: int = 180, codec: str = "libx264", vfr: bool = False,
                      moving_object: bool = False, seed: int = 0, crf: int = 18,
                      bframes: int = 0) -> Path:
    """Render and encode a camera ``move`` (one of :data:`MOVES`, or several joined by ``+``)
    at ``speed``; the container follows the extension (.mp4, .mkv, .webm for VP9/AV1).

    ``moving_object`` adds a textured disc (a fifth of the height in radius) crossing the frame
    left to right over the clip, whatever the camera does. ``vfr`` writes irregular timestamps
    (see :func:`clipfactory.testing.synth.frame_times`). ``bframes`` applies to x264 (whose
    B- and P-frames then predict from 2-4 frames away). Deterministic for given arguments.
    """
    if width % 2 or height % 2:
        raise ValueError(f"need even dimensions, got {width}x{height}")
    n = max(2, round(seconds * fps))
    times = frame_times(n, fps, vfr)
    span = times[-1] / 2
    extent = [_camera(move, speed, tc, width, height) for tc in (-span, span)]  # monotone moves
    zmax = max(e[2] for e in extent)
    tw = int(width * zmax + 2 * max(abs(e[0]) for e in extent)) + 16
    th = int(height * zmax + 2 * max(abs(e[1]) for e in extent)) + 16
    tex = _texture(th, tw, seed)
    r = height // 5
    disc = None
    if moving_object:
        yy, xx = np.ogrid[-r : r, -r : r]
        mask = ((yy + 0.5) ** 2 + (xx + 0.5) ** 2 < r * r)[..., None]
        disc = (np.clip(255 - _texture(2 * r, 2 * r, seed + 1), 0, 255).astype(np.uint8), mask)
    path = Path(path)
    tb = VFR_TIME_BASE if vfr else 1 / _rate(fps)
    with av.open(str(path), "w") as out:
        stream = _add_stream(out, codec, fps, width, height, crf, bframes, vfr)
        for t in times:
            dx, dy, z = _camera(move, speed, t - span, width, height)
            img = _sample(tex, tw / 2 + dx, th / 2 + dy, z, width, height)
            if disc is not None:  # crosses from just off the left edge to just off the right
                x = round(-2 * r + (width + 2 * r) * t / max(times[-1], 1e-9))
                y, lo, hi = height // 2 - r // 2, max(0, x), min(width, x + 2 * r)
                if hi > lo:
                    sub, patch = img[y : y + 2 * r, lo:hi], disc[0][:, lo - x : hi - x]
                    np.copyto(sub, patch, where=disc[1][:, lo - x : hi - x])
            frame = av.VideoFrame.from_ndarray(img, "rgb24")
            frame.pts, frame.time_base = round(t / tb), tb
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path
