"""Deterministic synthetic videos with known shot boundaries, for tests, demos and benchmarks.

A video is a sequence of :class:`ShotSpec` shots joined by hard cuts. Every shot renders from a
texture precomputed from its ``(kind, seed)`` at about twice the frame size, so a frame is a
numpy slice (fast) and :func:`render_frame` returns exactly the image handed to the encoder.
Everything is seeded: the same arguments give the same pixels on every machine and, with the
fixed encoder thread counts used here, the same file bytes from the same FFmpeg build.

Shot kinds: ``texture`` (colourful, sharp, panning, with a moving disc), ``dark`` (the same, at a
mean luma of about 8), ``static`` (one still image), ``blurry`` (a panning, heavily blurred
texture) and ``flash`` (a texture shot with two pure-white frames in the middle). The hard
negatives of shot detection: ``noisy`` (a still image under fresh sensor noise every frame),
``fastpan`` (a pan of 4-12 % of the width per frame), ``shake`` (a hand-held camera shaking by up
to ~10 % of the width), ``strobe`` (a texture shot lit by a strobe every 3-7 frames),
``photoflash`` (camera flashes that decay over four frames) and ``object`` (a large foreground
object crossing the frame in a few frames).

Shots are joined by hard cuts unless a shot says how it ``enter``s: ``dissolve`` (a cross-fade of
``enter_frames`` frames) or ``fade`` (the previous shot fades out to black over ``enter_frames``,
``black_frames`` of black, then this one fades in over ``fade_in_frames``). Both shots keep moving
through a transition. :attr:`SynthVideo.transitions` is the ground truth.
"""

from __future__ import annotations

import colorsys
import os
import struct
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from pathlib import Path

import av
import numpy as np

from clipfactory.records import Transition

__all__ = [
    "JOINS", "KINDS", "ShotSpec", "SynthVideo", "frame_times", "make_corpus", "mux_with_audio",
    "render_frame", "tone_frames", "write_audio_only", "write_broken", "write_video",
]

KINDS = ("texture", "dark", "static", "blurry", "flash",  # new kinds go last: ids seed the rng
         "noisy", "fastpan", "shake", "strobe", "photoflash", "object")
JOINS = ("cut", "dissolve", "fade")
VFR_TIME_BASE = Fraction(1, 90000)
_VFR_PATTERN = (0.5, 1.5, 1.0)  # frame durations in units of 1/fps, cycled (mean 1.0)
_DARK_LUMA = 8.0
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)


@dataclass(frozen=True)
class ShotSpec:
    """One shot: ``frames`` frames of ``kind`` content drawn from ``seed``, entered from the
    previous shot by ``enter`` (see the module docstring; ignored on the first shot). The
    transition's frames come on top of ``frames``, which count only frames wholly in the shot."""

    frames: int
    kind: str = "texture"
    seed: int = 0
    enter: str = "cut"
    enter_frames: int = 0  # dissolve length, or the fade-out length of a fade
    black_frames: int = 0  # fade: frames of black between fade-out and fade-in
    fade_in_frames: int | None = None  # fade: None = enter_frames; 0 = cut in from black

    def __post_init__(self) -> None:
        if self.frames < 1:
            raise ValueError(f"a shot needs at least one frame, got {self.frames}")
        if self.kind not in KINDS:
            raise ValueError(f"unknown shot kind {self.kind!r}; expected one of {KINDS}")
        if self.enter not in JOINS:
            raise ValueError(f"unknown join {self.enter!r}; expected one of {JOINS}")
        if self.enter != "cut" and self.transition_frames < 1:
            raise ValueError(f"a {self.enter} needs frames")
        if min(self.enter_frames, self.black_frames, self.fade_in_frames or 0) < 0:
            raise ValueError("transition lengths cannot be negative")

    @property
    def fade_in(self) -> int:
        return self.enter_frames if self.fade_in_frames is None else self.fade_in_frames

    @property
    def transition_frames(self) -> int:
        """Frames between the previous shot's last whole frame and this shot's first."""
        if self.enter == "dissolve":
            return self.enter_frames
        if self.enter == "fade":
            return self.enter_frames + self.black_frames + self.fade_in
        return 0


@dataclass(frozen=True)
class SynthVideo:
    """A written synthetic video and its ground truth."""

    path: str
    fps: float
    frames: int
    cuts: tuple[int, ...]
    width: int
    height: int
    shots: tuple[ShotSpec, ...]
    transitions: tuple[Transition, ...] = ()  # ground truth, hard cuts included


@dataclass(frozen=True)
class _Assets:
    texture: np.ndarray  # (H2, W2, 3) uint8, already dark-scaled / blurred
    velocity: tuple[int, int, int, int]  # x0, y0, vx, vy of the pan (pixels, pixels/frame)
    disc: tuple[np.ndarray, int, int, int, int] | None  # mask, x0, y0, vx, vy of a shadow disc
    params: tuple[float, ...] = ()  # what the hard-negative kinds draw (see _effects)
    patch: np.ndarray | None = None  # the foreground object of ``object``


def _tri(pos: int, span: int) -> int:
    """Triangle wave: bounce ``pos`` inside ``[0, span]``."""
    if span <= 0:
        return 0
    p = pos % (2 * span)
    return p if p <= span else 2 * span - p


def _upscale(grid: np.ndarray, h: int, w: int) -> np.ndarray:
    """Bilinear resize of a (gh, gw, c) array to (h, w, c) float32."""
    grid = grid.astype(np.float32)
    for axis, m in ((1, w), (0, h)):  # widen the small grid first: row gathers are cheap
        n = grid.shape[axis]
        pos = np.clip((np.arange(m) + 0.5) * n / m - 0.5, 0, n - 1)
        i0 = np.minimum(pos.astype(int), max(n - 2, 0))
        frac = (pos - i0).astype(np.float32).reshape((-1, 1, 1) if axis == 0 else (-1, 1))
        lo, hi = np.take(grid, i0, axis), np.take(grid, np.minimum(i0 + 1, n - 1), axis)
        grid = lo + (hi - lo) * frac
    return grid


def _blur(img: np.ndarray, f: int) -> np.ndarray:
    """Heavy blur: ``f``x``f`` block means, bilinearly upscaled back to full size."""
    h, w, _ = img.shape
    f = max(1, min(f, h, w))
    gh, gw = h // f, w // f
    cols = sum(img[: gh * f, k : gw * f : f] for k in range(f))  # strided adds beat reshape-sum
    return _upscale(sum(cols[k::f] for k in range(f)) / (f * f), h, w)


@lru_cache(maxsize=8)
def _assets(kind: str, seed: int, width: int, height: int) -> _Assets:
    """Everything a shot's frames are sliced from; independent of the shot's length."""
    kind_id = KINDS.index(kind)
    rng = np.random.default_rng([seed & 0xFFFFFFFF, kind_id, 20240601])
    th, tw = 2 * height, 2 * width
    hue = (0.11 + 0.618034 * seed + 0.29 * kind_id) % 1.0  # golden ratio: seeds far apart
    pal = np.array(
        [colorsys.hsv_to_rgb((hue + d) % 1.0, s, v) for d, s, v in zip(
            rng.normal(0, 0.05, 6), rng.uniform(0.45, 0.9, 6), rng.uniform(0.5, 1.0, 6),
            strict=True)],
        np.float32,
    ) * 255
    pal[5] = 255 - pal[0]  # one complementary accent
    v = _upscale(rng.random((5, 8, 1)), 18, 32)
    tex = _upscale(pal[0] * (1 - v) + pal[1] * v + rng.normal(0, 16, (18, 32, 3)), th, tw)
    for i in range(270):  # hard-edged rectangles, discs and striped panels; big ones first
        col = pal[rng.integers(0, 6)] * (0.35 if i % 4 == 3 else 1.0)
        big = (0.03, 0.16) if i < 70 else (0.006, 0.03)
        ch, cw = int(rng.uniform(*big) * th) + 2, int(rng.uniform(*big) * tw) + 2
        y, x = int(rng.integers(0, th - ch)), int(rng.integers(0, tw - cw))
        region = tex[y : y + ch, x : x + cw]
        if i % 3 == 0:
            yy, xx = np.ogrid[:ch, :cw]
            region[((yy - ch / 2) / (ch / 2)) ** 2 + ((xx - cw / 2) / (cw / 2)) ** 2 < 1] = col
        elif i % 10 == 1 and i < 70:
            stripes = (np.arange(cw) // int(rng.integers(3, 9))) % 2 == 0
            region[:, stripes] = col
            region[:, ~stripes] = pal[rng.integers(0, 6)] * 0.5
        else:
            region[:] = col
    # Sharp luma, smooth and bounded chroma (like camera video): survives 4:2:0 and never clips.
    luma = tex @ _LUMA
    chroma = _blur(tex - luma[..., None], 8)
    mag = np.abs(chroma)
    mag = np.maximum(np.maximum(mag[..., 0], mag[..., 1]), np.maximum(mag[..., 2], 1e-3))
    chroma *= np.minimum(1, 50 / mag)[..., None]
    tex = (50 + np.clip(luma, 0, 255) * (155 / 255))[..., None] + chroma
    if kind == "blurry":
        tex = _blur(tex, max(4, width // 32))
    if kind == "dark":
        tex *= _DARK_LUMA / max(float((np.clip(tex, 0, 255) @ _LUMA).mean()), 1.0)
    texture = np.clip(np.round(tex), 0, 255).astype(np.uint8)
    step = max(1, round(width * 0.008))
    if kind == "fastpan":
        step = max(2, round(width * float(rng.uniform(0.04, 0.12))))
    pan = (int(rng.integers(0, tw - width + 1)), int(rng.integers(0, th - height + 1)),
           step * int(rng.choice([-1, 1])), max(1, step // 2) * int(rng.choice([-1, 1])))
    disc = None
    if kind in ("texture", "dark", "flash", "fastpan", "shake", "strobe", "photoflash"):
        r = max(2, min(width, height) // 10)
        yy, xx = np.ogrid[: 2 * r, : 2 * r]
        mask = ((yy - r + 0.5) ** 2 + (xx - r + 0.5) ** 2 < r * r).astype(np.uint8)[..., None]
        disc = (mask, int(rng.integers(0, width - 2 * r + 1)),
                int(rng.integers(0, height - 2 * r + 1)), step, step)
    params: tuple[float, ...] = ()
    patch = None
    if kind == "noisy":
        params = (float(rng.uniform(4, 10)),)  # noise sigma
    elif kind == "shake":  # three sinusoids per axis: (amplitude px, cycles/frame, phase)
        params = tuple(float(v) for _ in range(6) for v in (
            rng.uniform(0.01, 0.04) * width, rng.uniform(0.03, 0.25), rng.uniform(0, 2 * np.pi)))
    elif kind == "strobe":
        params = (float(rng.integers(3, 8)), float(rng.integers(1, 3)), float(rng.integers(0, 7)))
    elif kind == "photoflash":
        params = (float(rng.integers(12, 40)), float(rng.integers(0, 12)))  # period, offset
    elif kind == "object":
        oh, ow = int(height * rng.uniform(0.4, 0.7)), int(width * rng.uniform(0.25, 0.45))
        y, x = int(rng.integers(0, th - oh)), int(rng.integers(0, tw - ow))
        yy, xx = np.ogrid[:oh, :ow]
        mask = (((yy - oh / 2) / (oh / 2)) ** 2 + ((xx - ow / 2) / (ow / 2)) ** 2 < 1)
        patch = np.where(mask[..., None], 255 - texture[y : y + oh, x : x + ow], 0).astype(np.uint8)
        params = (float(rng.uniform(0.06, 0.15) * width), float(rng.integers(0, height - oh)),
                  float(rng.integers(0, 40)), float(rng.choice([-1, 1])))
    return _Assets(texture, pan, disc, params, patch)


def _flash_frames(frames: int) -> range:
    n = 2 if frames >= 6 else 1
    return range(frames // 2 - n // 2, frames // 2 - n // 2 + n)


@dataclass(frozen=True)
class _Mix:
    """Frame ``i`` of the transition from ``out`` into ``into``."""

    out: ShotSpec
    into: ShotSpec
    i: int


def _locate(shots: Sequence[ShotSpec], index: int) -> tuple[ShotSpec, int] | _Mix:
    """(shot, frame in shot) of a frame wholly in one shot, or the :class:`_Mix` of a transition
    frame; IndexError outside the video."""
    if index >= 0:
        prev: ShotSpec | None = None
        for shot in shots:
            n = shot.transition_frames if prev is not None else 0
            if index < n and prev is not None:
                return _Mix(prev, shot, index)
            index -= n
            if index < shot.frames:
                return shot, index
            index -= shot.frames
            prev = shot
    raise IndexError("frame index outside the shots")


def _shot_frame(shot: ShotSpec, j: int, width: int, height: int) -> np.ndarray:
    frame = _view(shot, j, width, height).copy()
    _draw_disc(frame, shot, j)
    _effects(frame, shot, j)
    return frame


def _transition_frame(t: _Mix, width: int, height: int) -> np.ndarray:
    """Frame ``t.i`` of the transition into ``t.into``: both shots keep moving (the outgoing one
    past its last whole frame, the incoming one up to its first)."""
    out, into, i = t.out, t.into, t.i
    n = into.transition_frames
    a = _shot_frame(out, out.frames + i, width, height).astype(np.float32)
    b = _shot_frame(into, i - n, width, height).astype(np.float32)
    if into.enter == "dissolve":
        alpha = (i + 1) / (n + 1)
        mix = a * (1 - alpha) + b * alpha
    elif i < into.enter_frames:  # fade out
        mix = a * (1 - (i + 1) / (into.enter_frames + 1))
    elif i < into.enter_frames + into.black_frames:
        mix = np.zeros_like(a)
    else:  # fade in
        k = i - into.enter_frames - into.black_frames
        mix = b * ((k + 1) / (into.fade_in + 1))
    return np.clip(np.round(mix), 0, 255).astype(np.uint8)


def _ground_truth(shots: Sequence[ShotSpec]) -> tuple[tuple[int, ...], tuple[Transition, ...]]:
    """(hard-cut frames, every transition) of a shot list."""
    cuts, out, pos = [], [], 0
    for k, shot in enumerate(shots):
        if k:
            n = shot.transition_frames
            if n == 0:
                cuts.append(pos)
            out.append(Transition(shot.enter, pos - 1, pos + n))
            pos += n
        pos += shot.frames
    return tuple(cuts), tuple(out)


def _view(shot: ShotSpec, j: int, width: int, height: int) -> np.ndarray:
    """Frame ``j`` of ``shot`` before the disc: a read-only view into the cached texture."""
    if shot.kind == "flash" and j in _flash_frames(shot.frames):
        return np.full((height, width, 3), 255, np.uint8)
    a = _assets(shot.kind, shot.seed, width, height)
    th, tw = a.texture.shape[:2]
    x0, y0, vx, vy = a.velocity
    t = 0 if shot.kind in ("static", "noisy") else j
    x, y = x0 + vx * t, y0 + vy * t
    if shot.kind == "shake":
        p = a.params
        x += round(sum(p[k] * np.sin(2 * np.pi * p[k + 1] * j + p[k + 2]) for k in (0, 3, 6)))
        y += round(sum(p[k] * np.sin(2 * np.pi * p[k + 1] * j + p[k + 2]) for k in (9, 12, 15)))
    x, y = _tri(x, tw - width), _tri(y, th - height)
    return a.texture[y : y + height, x : x + width]


def _effects(frame: np.ndarray, shot: ShotSpec, j: int) -> None:
    """The per-frame effects of the hard-negative kinds, in place."""
    kind = shot.kind
    if kind not in ("noisy", "strobe", "photoflash", "object"):
        return
    height, width = frame.shape[:2]
    a = _assets(kind, shot.seed, width, height)
    p = a.params
    if kind == "noisy":
        rng = np.random.default_rng([shot.seed & 0xFFFFFFFF, j & 0xFFFFFFFF, 5])
        noise = rng.standard_normal(frame.shape, np.float32) * p[0]
        frame[:] = np.clip(frame + noise, 0, 255).astype(np.uint8)
    elif kind == "strobe" and (j + int(p[2])) % int(p[0]) < int(p[1]):
        frame[:] = np.clip(frame * np.float32(1.4) + 90, 0, 255).astype(np.uint8)
    elif kind == "photoflash" and (k := (j - int(p[1])) % int(p[0])) < 4:
        frame[:] = np.clip(frame + np.float32(170 * 0.5**k), 0, 255).astype(np.uint8)
    elif kind == "object" and a.patch is not None:  # enters, crosses, leaves, comes back later
        oh, ow = a.patch.shape[:2]
        period = int((width + ow) / p[0]) + 1 + int(p[2])
        x = int(-ow + p[0] * ((j % period) + 1))
        if p[3] < 0:
            x = width - ow - x
        y, lo, hi = int(p[1]), max(0, x), min(width, x + ow)
        if hi > lo:
            sub, obj = frame[y : y + oh, lo:hi], a.patch[:, lo - x : hi - x]
            np.copyto(sub, obj, where=obj.any(axis=2, keepdims=True))


def _draw_disc(frame: np.ndarray, shot: ShotSpec, j: int) -> None:
    """Darken a moving disc in place, by the same amount on R, G and B (a luma-only edge)."""
    height, width = frame.shape[:2]
    disc = _assets(shot.kind, shot.seed, width, height).disc
    if disc is None or (shot.kind == "flash" and j in _flash_frames(shot.frames)):
        return
    mask, dx0, dy0, dvx, dvy = disc
    d = mask.shape[0]
    dx, dy = _tri(dx0 + dvx * j, width - d), _tri(dy0 + dvy * j, height - d)
    sub = frame[dy : dy + d, dx : dx + d]
    sub -= sub.min(axis=2, keepdims=True) * mask


def render_frame(shots: Sequence[ShotSpec], index: int, width: int, height: int) -> np.ndarray:
    """Return frame ``index`` of ``shots`` as RGB uint8 ``(height, width, 3)``: exactly the
    image :func:`write_video` feeds to the encoder."""
    where = _locate(shots, index)
    if isinstance(where, _Mix):
        return _transition_frame(where, width, height)
    return _shot_frame(*where, width, height)


def frame_times(frames: int, fps: float, vfr: bool = False) -> list[float]:
    """Presentation time in seconds of each frame :func:`write_video` writes.

    Constant rate: ``i / fps``. VFR: durations cycle through 0.5, 1.5 and 1.0 frame periods,
    quantised to the 1/90000 time base used when writing.
    """
    if not vfr:
        return [i / fps for i in range(frames)]
    ticks, out = 0, []
    for i in range(frames):
        out.append(ticks / 90000)
        ticks += round(_VFR_PATTERN[i % len(_VFR_PATTERN)] * 90000 / fps)
    return out


def _rate(fps: float) -> Fraction:
    return Fraction(fps).limit_denominator(1001)


def _add_video_stream(out: av.container.OutputContainer, codec: str, fps: float, width: int,
                      height: int, pix_fmt: str, gop: int | None, bframes: int | None,
                      crf: int, vfr: bool, x264_params: str | None = None,
                      preset: str = "ultrafast") -> av.VideoStream:
    rate = _rate(fps)
    opts: dict[str, str] = {}
    if codec in ("libx264", "libx265"):
        opts = {"preset": preset, "crf": str(crf)}
        params = "log-level=error:" if codec == "libx265" else ""
        # keyframes every ``gop`` frames, each starting a closed GOP (x265's default is open)
        params += ("scenecut=0" + (":open-gop=0" if codec == "libx265" else "")) if gop else ""
        if x264_params:  # write_video lets it through for libx264 only
            params = ":".join(filter(None, (params, x264_params)))
        if params:
            opts[codec[3:] + "-params"] = params.rstrip(":")
    elif codec == "libvpx-vp9":
        opts = {"crf": str(crf), "b": "0", "deadline": "realtime", "cpu-used": "8"}
    elif codec == "libsvtav1":
        os.environ.setdefault("SVT_LOG", "1")  # errors only
        opts = {"crf": str(crf), "preset": "10"}
    elif codec == "mpeg4":
        opts = {"qmin": "1", "qmax": "3", **({"sc_threshold": "1000000000"} if gop else {})}
    stream = out.add_stream(codec, rate=rate, options=opts)
    stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
    cc = stream.codec_context
    if codec == "mpeg4":
        cc.bit_rate = int(width * height * float(rate) * 2)
    if codec in ("libx264", "mpeg4"):
        cc.thread_count = 2  # fixed, so the bytes do not depend on the machine's core count
    if gop:
        cc.gop_size = gop
    if bframes is not None:
        cc.max_b_frames = bframes
    if vfr:
        cc.time_base = VFR_TIME_BASE
        stream.time_base = VFR_TIME_BASE
    return stream


class _Sine:
    """A 440 Hz mono track (AAC; Opus in WebM), encoded on demand up to a given time."""

    def __init__(self, out: av.container.OutputContainer, rate: int = 48000) -> None:
        codec = "libopus" if out.format.name == "webm" else "aac"
        self.stream = out.add_stream(codec, rate=rate, layout="mono")
        self.rate, self.done = rate, 0

    def until(self, out: av.container.OutputContainer, seconds: float) -> None:
        end = round(seconds * self.rate)
        while self.done < end:
            n = min(1024, end - self.done)
            t = (self.done + np.arange(n)) / self.rate
            frame = av.AudioFrame.from_ndarray(
                (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None], format="fltp",
                layout="mono")
            frame.sample_rate, frame.pts = self.rate, self.done
            frame.time_base = Fraction(1, self.rate)
            out.mux(self.stream.encode(frame))
            self.done += n

    def close(self, out: av.container.OutputContainer) -> None:
        out.mux(self.stream.encode(None))


def write_video(path: str | os.PathLike[str], shots: Sequence[ShotSpec], *, fps: float = 30,
                width: int = 320, height: int = 180, codec: str = "libx264",
                pix_fmt: str = "yuv420p", gop: int | None = None, bframes: int | None = None,
                crf: int = 18, rotation: int = 0, vfr: bool = False, audio: bool = False,
                x264_params: str | None = None, preset: str = "ultrafast",
                _muxer_options: dict[str, str] | None = None) -> SynthVideo:
    """Render ``shots`` and encode them with PyAV; the container follows the extension.

    ``gop`` sets the keyframe interval (and turns x264/x265 scene-cut keyframes off, so
    keyframes fall exactly every ``gop`` frames, each a closed GOP's, for x265 too);
    ``bframes`` the maximum B-frames.
    ``x264_params`` (libx264 only, ``key=value:...``) goes after those, e.g. ``open-gop=1``.
    ``preset`` is x264's/x265's: ``ultrafast`` (the default, fast to write) has no B-frames,
    CAVLC and no deblocking filter, and decodes faster than a typical encode (a minute of
    360p textures: 0.15 against 0.25 ms per frame with ``veryfast``); ``veryfast`` and slower
    have B-frames, CABAC and the deblocking filter, as most footage does.
    ``rotation`` (0/90/180/270) is written as a display matrix such that decoded frames report
    ``frame.rotation % 360 == rotation`` (counter-clockwise, PyAV's convention). ``vfr`` writes
    irregular timestamps (see :func:`frame_times`); ``audio`` adds a 440 Hz AAC track (Opus
    in .webm).
    Odd sizes raise ``ValueError`` for chroma-subsampled formats (4:2:0, 4:2:2, 4:1:1).
    """
    shots = tuple(shots)
    if not shots:
        raise ValueError("need at least one shot")
    if rotation % 90 or rotation % 360 != rotation:
        raise ValueError(f"rotation must be 0, 90, 180 or 270, got {rotation}")
    sub = av.VideoFormat(pix_fmt, width, height).components
    if len(sub) > 1 and ((sub[1].width * 2 != width and sub[1].width != width)
                         or (sub[1].height * 2 != height and sub[1].height != height)):
        raise ValueError(f"{pix_fmt} needs even dimensions, got {width}x{height}")
    if x264_params and codec != "libx264":
        raise ValueError(f"x264_params is for libx264, not {codec}")
    path = os.fspath(path)
    if vfr and path.lower().endswith(".avi"):
        raise ValueError("AVI cannot carry variable frame rate")
    total = sum(s.frames for s in shots) + sum(s.transition_frames for s in shots[1:])
    times = frame_times(total, fps, vfr)
    with av.open(path, "w", options=_muxer_options or {}) as out:
        stream = _add_video_stream(out, codec, fps, width, height, pix_fmt, gop, bframes, crf,
                                   vfr, x264_params, preset)
        if rotation:
            stream.set_display_rotation(rotation)
        sine = _Sine(out) if audio else None
        tb = VFR_TIME_BASE if vfr else 1 / _rate(fps)
        for i in range(total):
            where = _locate(shots, i)  # = render_frame, drawn straight into the AVFrame
            if isinstance(where, _Mix):
                frame = av.VideoFrame.from_ndarray(_transition_frame(where, width, height), "rgb24")
            else:
                shot, j = where
                frame = av.VideoFrame.from_ndarray(_view(shot, j, width, height), "rgb24")
                plane = frame.planes[0]
                rows = np.frombuffer(plane, np.uint8).reshape(height, plane.line_size)
                img = rows[:, : width * 3].reshape(height, width, 3)
                _draw_disc(img, shot, j)
                _effects(img, shot, j)
            frame.pts = round(times[i] / tb) if vfr else i
            frame.time_base = tb
            out.mux(stream.encode(frame))
            if sine:
                sine.until(out, times[i] + (1 / fps))
        out.mux(stream.encode(None))
        if sine:
            sine.close(out)
    cuts, transitions = _ground_truth(shots)
    return SynthVideo(path, float(fps), total, cuts, width, height, shots, transitions)


def write_audio_only(path: str | os.PathLike[str], seconds: float = 2.0) -> str:
    """Write an AAC-only file (.m4a/.mp4: no video stream) and return its path."""
    path = os.fspath(path)
    with av.open(path, "w") as out:
        sine = _Sine(out)
        sine.until(out, seconds)
        sine.close(out)
    return path


def _mdat_span(data: bytes) -> tuple[int, int]:
    """(start, end) of the payload of the top-level ``mdat`` box of an MP4."""
    pos = 0
    while pos + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[pos : pos + 8])
        head = 8
        if size == 1:
            size, head = struct.unpack(">Q", data[pos + 8 : pos + 16])[0], 16
        elif size == 0:
            size = len(data) - pos
        if kind == b"mdat":
            return pos + head, pos + size
        pos += size
    raise ValueError("no mdat box")


def write_broken(directory: str | os.PathLike[str]) -> dict[str, str]:
    """Write deterministic broken inputs under ``directory``; return ``{name: path}``.

    ``zero_byte``, ``text`` and ``no_moov`` (moov-at-end MP4 cut to 40 %) fail to open;
    ``cut_payload`` (faststart MP4 cut to 50 %) opens but decodes fewer frames than its header
    says; ``garbage_middle`` has random bytes over the middle of its mdat (moov intact);
    ``audio_only`` is an AAC .m4a with no video stream.
    """
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    shots = [ShotSpec(30, seed=11), ShotSpec(30, seed=12), ShotSpec(30, seed=13)]
    paths = {k: str(d / f"{k}.mp4") for k in
             ("zero_byte", "text", "no_moov", "cut_payload", "garbage_middle")}
    Path(paths["zero_byte"]).write_bytes(b"")
    Path(paths["text"]).write_text("This is not a video, just text named .mp4.\n" * 40)
    for name, opts, keep in (("no_moov", None, 0.4), ("cut_payload", {"movflags": "faststart"},
                                                      0.5)):
        write_video(paths[name], shots, gop=30, _muxer_options=opts)
        data = Path(paths[name]).read_bytes()
        Path(paths[name]).write_bytes(data[: int(len(data) * keep)])
    write_video(paths["garbage_middle"], shots, gop=90)
    data = bytearray(Path(paths["garbage_middle"]).read_bytes())
    lo, hi = _mdat_span(bytes(data))
    mid, n = (lo + hi) // 2, min(4096, (hi - lo) // 4)
    data[mid : mid + n] = np.random.default_rng(99).integers(0, 256, n, np.uint8).tobytes()
    Path(paths["garbage_middle"]).write_bytes(bytes(data))
    paths["audio_only"] = write_audio_only(d / "audio_only.m4a")
    return paths


def _reencode_small(src: str, dst: str, fps: float, crf: int) -> str:
    """Decode ``src`` and re-encode it at half size (a near-duplicate)."""
    with av.open(src) as inp, av.open(dst, "w") as out:
        vin = inp.streams.video[0]
        w, h = (vin.width // 2) & ~1, (vin.height // 2) & ~1
        stream = _add_video_stream(out, "libx264", fps, w, h, "yuv420p", None, None, crf, False)
        for i, frame in enumerate(inp.decode(vin)):
            small = frame.reformat(width=w, height=h, format="yuv420p")
            small.pts, small.time_base = i, 1 / _rate(fps)
            out.mux(stream.encode(small))
        out.mux(stream.encode(None))
    return dst


def make_corpus(directory: str | os.PathLike[str], *, seconds: float = 60.0, videos: int = 4,
                width: int = 640, height: int = 360, fps: float = 30, seed: int = 0,
                with_broken: bool = False, with_duplicate: bool = False,
                preset: str = "ultrafast", x264_params: str | None = None) -> list[str]:
    """Write ``videos`` synthetic videos totalling about ``seconds`` under ``directory``.

    Files are ``video_000.mp4``, ``video_001.mp4``, ... except the last one (when
    ``videos >= 2``), which is named ``café clip 01.mp4``. Each has texture shots of 2-8 s with
    distinct seeds; one dark, one static and one blurry 3 s shot are spread over videos 1, 2, 3
    (wrapping past video 0, which stays all texture unless it is the only video).
    ``with_duplicate`` adds ``video_000_small.mp4`` (video 0 decoded and re-encoded at half
    size, crf 28); ``with_broken`` adds :func:`write_broken` files under ``directory/broken``.
    ``preset`` and ``x264_params``: how every video is encoded (:func:`write_video`).
    Returns every path written: the videos in order, then the duplicate, then the broken files.
    """
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([seed, 7])
    per_video = max(1, round(seconds * fps / videos))
    specials: dict[int, list[str]] = {}
    for k, kind in enumerate(("dark", "static", "blurry")):
        specials.setdefault(1 + k % (videos - 1) if videos > 1 else 0, []).append(kind)
    jobs: list[tuple[Path, list[ShotSpec]]] = []
    for v in range(videos):
        special: list[tuple[int, str]] = []
        left = per_video
        for kind in specials.get(v, []):
            special.append((min(left, round(3 * fps)), kind))
            left -= special[-1][0]
        texture: list[tuple[int, str]] = []
        while left > 0:
            n = min(left, round(rng.uniform(2, 8) * fps))
            n = left if left - n < fps else n  # no sub-second tail shot
            texture.append((n, "texture"))
            left -= n
        rest = texture[1:] + [s for s in special if s[0] > 0]
        plan = texture[:1] + [rest[i] for i in rng.permutation(len(rest))]
        shots = [ShotSpec(n, kind, seed * 1000 + v * 37 + i) for i, (n, kind) in enumerate(plan)]
        name = "café clip 01.mp4" if videos >= 2 and v == videos - 1 else f"video_{v:03d}.mp4"
        jobs.append((d / name, shots))
    with ThreadPoolExecutor(min(len(jobs), os.cpu_count() or 1)) as pool:  # PyAV drops the GIL
        paths = list(pool.map(lambda job: write_video(
            job[0], job[1], fps=fps, width=width, height=height, preset=preset,
            x264_params=x264_params).path, jobs))
    if with_duplicate:
        paths.append(_reencode_small(paths[0], str(d / "video_000_small.mp4"), fps, 28))
    if with_broken:
        paths.extend(write_broken(d / "broken").values())
    return paths


def tone_frames(rate: int, seconds: float, block: int, *, start_s: float = 0.0,
                chirp: bool = False) -> list[av.AudioFrame]:
    """Mono float frames of ``block`` samples: a 440 Hz tone, or with ``chirp`` a rising one
    (no two moments sound alike, so a cross-correlation finds where a piece belongs), starting
    at ``start_s`` on a time base of one sample."""
    frames, done = [], 0
    while done < rate * seconds:
        t = (done + np.arange(block)) / rate
        phase = 200 * t + 15 * t * t if chirp else 440 * t
        f = av.AudioFrame.from_ndarray((0.3 * np.sin(2 * np.pi * phase)).astype(np.float32)[None],
                                       format="fltp", layout="mono")
        f.sample_rate, f.time_base = rate, Fraction(1, rate)
        f.pts = round(start_s * rate) + done
        frames.append(f)
        done += block
    return frames


def mux_with_audio(out: av.container.OutputContainer, vs: av.VideoStream,
                   aus: av.AudioStream, shots: Sequence[ShotSpec], n: int,
                   audio: Sequence[av.AudioFrame], *, fps: int = 30,
                   resampler: av.AudioResampler | None = None) -> None:
    """Encode ``n`` frames of ``shots`` at ``vs``'s size and ``fps`` (pts on ``vs``'s time
    base), each followed by the ``audio`` frames that start before the next frame, as muxers
    interleave; then the rest of the audio, and flush both encoders."""
    tb = vs.time_base or Fraction(1, fps)
    step = Fraction(1, fps) / tb
    ai = 0

    def put(f: av.AudioFrame) -> None:
        for g in resampler.resample(f) if resampler is not None else (f,):
            out.mux(aus.encode(g))

    for i in range(n):
        fr = av.VideoFrame.from_ndarray(render_frame(shots, i, vs.width, vs.height), "rgb24")
        fr.pts, fr.time_base = int(i * step), tb
        out.mux(vs.encode(fr))
        while ai < len(audio) and audio[ai].pts / audio[ai].sample_rate <= (i + 1) / fps:
            put(audio[ai])
            ai += 1
    out.mux(vs.encode(None))
    for f in audio[ai:]:
        put(f)
    out.mux(aus.encode(None))
