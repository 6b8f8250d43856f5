"""The ONE decode pass: every per-frame signal and the shot boundaries from a single decode.

Each decoded frame is (1) hashed at full resolution for exact dedup, then (2) scaled once to a
small RGB analysis frame from which everything else comes: brightness, sharpness (variance of
the Laplacian), motion (mean absolute luma change), a 64-bit perceptual hash, and the shot
detector's features. Only scalars per frame are kept; pixels are dropped as soon as they are
used, so memory stays small for any video length.

Frames the decoder reports as corrupt, and frames after a packet that failed to decode until the
next keyframe (the decoder conceals errors by guessing), are flagged as damaged; clip planning
treats them like a transition, so no clip contains them.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass, field
from fractions import Fraction

import av
import numpy as np
from av.video.reformatter import Interpolation, VideoReformatter

from clipfactory.config import AnalysisConfig
from clipfactory.dedup.perceptual import phash64
from clipfactory.errors import MediaError
from clipfactory.media import stagetime
from clipfactory.media.digest import plane_digest
from clipfactory.media.motion import (
    enable_motion_vectors,
    fit_global_motion,
    frame_vectors,
    phase_motion,
)
from clipfactory.media.nvdec import decoder_of
from clipfactory.media.probe import open_video
from clipfactory.records import Transition, VideoInfo
from clipfactory.shots.base import ShotDetector

__all__ = ["Signals", "analyse", "analysis_size"]

_LUMA = np.array([77, 150, 29], dtype=np.uint16)  # BT.601 weights * 256


def _luma(rgb: np.ndarray) -> np.ndarray:
    """float32 luma (0-255, integer valued) of an RGB uint8 frame: ``(77 R + 150 G + 29 B) >> 8``
    (BT.601), per channel in uint16 (the largest sum, 255 * 256, fits)."""
    x = rgb.astype(np.uint16)
    return ((x[..., 0] * _LUMA[0] + x[..., 1] * _LUMA[1] + x[..., 2] * _LUMA[2]) >> 8
            ).astype(np.float32)


@dataclass
class Signals:
    """Per-frame signals of one video (index = decoded frame number, presentation order)."""

    fps: float
    time_base: Fraction
    pts: np.ndarray | None  # int64 per frame, None when the stream has no usable pts
    times: np.ndarray  # float64 seconds from the stream start
    keyframe: np.ndarray  # bool
    damaged: np.ndarray  # bool
    analysed: np.ndarray  # bool: inside the requested span (signals valid)
    brightness: np.ndarray  # float32 mean luma 0-255
    sharpness: np.ndarray  # float32 variance of the Laplacian of the pooled luma
    motion: np.ndarray  # float32 mean |luma(t) - luma(t-1)|, 0 for the first frame
    phash: np.ndarray  # uint64
    digest: np.ndarray  # uint64: xxh3-64 of the full-resolution decoded planes
    # float32 (frames, 5): content motion since the previous frame (tx, ty, zoom, rot,
    # residual; see clipfactory.media.motion), nan where unknown; None with motion off
    camera: np.ndarray | None = None
    motion_source: str = ""  # "vectors" | "phase" | ""
    transitions: list[Transition] = field(default_factory=list)
    decode_errors: int = 0
    end_time: float | None = None  # time of the first frame past a requested end, if any
    decoder: str = "software"  # "software" | "nvdec" (AnalysisConfig.gpu)

    @property
    def frames(self) -> int:
        return len(self.times)


def analysis_size(width: int, height: int, cfg: AnalysisConfig) -> tuple[int, int]:
    """Analysis frame size: ``cfg.width`` wide (capped by ``cfg.max_height``), even, >= 16."""
    w = min(cfg.width, max(width, 16))
    h = max(16, round(height * w / max(width, 1)))
    if h > cfg.max_height:
        h, w = cfg.max_height, max(16, round(width * cfg.max_height / max(height, 1)))
    return w - (w % 2), h - (h % 2)


_NAN5 = (float("nan"),) * 5
# decoders whose exported motion vectors (flags2 +export_mvs) we trust; others use phase
# correlation. MPEG-4 Part 2 exports all-zero vectors for its (direct-mode) B-frames, which
# would read as a still camera; H.264 is checked on pans, tilts and zooms with B-frames.
_MV_CODECS = {"h264"}
_MV_PATIENCE = 48  # frames without a single vector (all-intra streams): switch to phase
# motion measurements per second: vectors come with the decode (the fit is ~0.2 ms), phase
# correlation is ours to pay for (~0.45 ms, as much as decoding a small frame): fewer of those
_PER_SECOND = {"vectors": 4.0, "phase": 3.0}
_MAX_VECTORS = 512  # a frame's vectors are thinned to about this many before the fit
_I_FRAME, _P_FRAME = 1, 2  # AVPictureType
_MAX_REF_DISTANCE = 16  # a P-frame further than this from its reference is not measured


class _Motion:
    """Per-frame content motion for the analysis pass (see :mod:`clipfactory.media.motion`):
    the decoder's vectors where the codec exports them, else phase correlation of the gray
    analysis frames. Measured a few times a second (``_PER_SECOND``): a clip's label and
    speeds are medians over its frames, and a measurement costs about as much as decoding a
    small frame, so every frame would cost a third of the pass.

    Vectors are read from P-frames only, divided by the distance (in frames) to the previous
    I- or P-frame, which is the reference they point to: B-frames export unusable vectors
    (non-reference B-frames in a pyramid export their direct-mode blocks as zeros, which
    would read as a still camera), and a P-frame after B-frames spans several frames."""

    def __init__(self, stream: av.VideoStream, info: VideoInfo) -> None:
        # NVDEC skips the software macroblock decode whose vectors +export_mvs exports
        hw = stream.codec_context.is_hwaccel
        self.source = "vectors" if info.codec in _MV_CODECS and not hw else "phase"
        self.fps = info.fps or 30.0
        self.stride = max(1, round(self.fps / _PER_SECOND[self.source]))
        self.seen = self.frames = 0
        self.last_ref = self.last_measured = -(10 ** 9)
        if self.source == "vectors":
            enable_motion_vectors(stream)

    def update(self, frame: av.VideoFrame, prev_gray: np.ndarray | None,
               gray: np.ndarray) -> tuple[float, ...]:
        n = self.frames
        self.frames += 1
        if self.source == "vectors":
            kind = int(frame.pict_type)
            if kind in (_I_FRAME, _P_FRAME):
                dist, self.last_ref = n - self.last_ref, n
                if kind == _P_FRAME and n - self.last_measured >= self.stride \
                        and dist <= _MAX_REF_DISTANCE:
                    vec = frame_vectors(frame)
                    if vec is not None:
                        self.seen += 1
                        self.last_measured = n
                        g = fit_global_motion(vec[:: max(1, len(vec) // _MAX_VECTORS)],
                                              frame.width, frame.height)
                        return (g.tx / dist, g.ty / dist, g.zoom / dist, g.rot / dist,
                                g.residual / dist)
            if self.seen or self.frames < _MV_PATIENCE:
                return _NAN5
            self.source = "phase"  # no P-frame vectors at all (all-intra): measure ourselves
            self.stride = max(1, round(self.fps / _PER_SECOND["phase"]))
        if n - self.last_measured < self.stride or prev_gray is None or \
                prev_gray.shape != gray.shape or min(gray.shape) < 16:
            return _NAN5
        self.last_measured = n
        g = phase_motion(prev_gray, gray)
        return (g.tx, g.ty, g.zoom, g.rot, g.residual)


def _laplacian_var(gray: np.ndarray) -> float:
    """Variance of the Laplacian of the 2x2-pooled luma. Pooling first makes the measure
    about the picture rather than the codec: block edges and mosquito noise of a low-quality
    encode (which a Laplacian at full analysis resolution mistakes for detail) average out."""
    h, w = gray.shape[0] & ~1, gray.shape[1] & ~1
    if h >= 6 and w >= 6:
        g = gray[:h, :w]
        gray = (g[0::2, 0::2] + g[1::2, 0::2] + g[0::2, 1::2] + g[1::2, 1::2]) * 0.25
    c = gray[1:-1, 1:-1]
    lap = 4 * c - gray[:-2, 1:-1] - gray[2:, 1:-1] - gray[1:-1, :-2] - gray[1:-1, 2:]
    return float(lap.var())


def analyse(info: VideoInfo, cfg: AnalysisConfig, detector: ShotDetector | None = None, *,
            start_s: float | None = None, end_s: float | None = None,
            threads: int = 1) -> Signals:
    """Decode ``info.path`` once and return its :class:`Signals`.

    ``start_s``/``end_s`` restrict the analysed span: earlier frames are decoded (to keep frame
    numbers absolute) but not analysed, and decoding stops at ``end_s``.
    """
    try:
        container, stream = open_video(info.path, threads=threads, gpu=cfg.gpu)
    except av.FFmpegError as e:
        raise MediaError("analyse", "open_failed", str(e)) from e
    tb = stream.time_base or Fraction(1, 1)
    t0 = stream.start_time
    aw, ah = analysis_size(info.width, info.height, cfg)
    scaler = VideoReformatter()
    pts, times = array("q"), array("d")
    key, damaged, inspan = array("b"), array("b"), array("b")
    bright, sharp, luma_motion = array("f"), array("f"), array("f")
    phashes, digests = array("Q"), array("Q")
    cam = array("f")  # 5 per frame
    motion = _Motion(stream, info) if cfg.motion else None
    prev_gray: np.ndarray | None = None
    found: list[Transition] = []
    pts_ok, errors, conceal = True, 0, False
    fps = info.fps or 0.0
    n = 0
    past_end, end_time = False, None
    clock = stagetime.active()  # per-stage CPU split (a no-op unless a bench measures)
    tb_num, tb_den = tb.numerator, tb.denominator  # int arithmetic: float(Fraction) exactly
    rot = info.rotation // 90
    mark = clock.now()
    try:
        for packet in container.demux(stream):
            if past_end:
                break
            try:
                frames = packet.decode()
            except av.FFmpegError:
                errors += 1
                conceal = True  # frames until the next keyframe are guesses of the decoder
                continue
            mark = clock.lap("decode", mark)
            for frame in frames:
                fpts = frame.pts
                if fpts is None:
                    pts_ok = False
                if t0 is None and fpts is not None:
                    t0 = fpts
                t = (((fpts - (t0 or 0)) * tb_num) / tb_den if fpts is not None and pts_ok
                     else n / (fps or 30.0))
                if end_s is not None and t >= end_s - 1e-6:
                    past_end = True  # the rest of the file is outside the requested span
                    end_time = t  # ...and this frame's time is where the last kept one ends
                    break
                is_key = frame.key_frame
                if is_key:
                    conceal = False
                pts.append(fpts if fpts is not None else -1)
                times.append(t)
                key.append(1 if is_key else 0)
                damaged.append(1 if (conceal or frame.is_corrupt) else 0)
                inside = start_s is None or t >= start_s - 1e-6
                inspan.append(1 if inside else 0)
                if not inside:
                    for arr in (bright, sharp, luma_motion):
                        arr.append(0.0)
                    if motion is not None:
                        cam.extend(_NAN5)
                    phashes.append(0)
                    digests.append(0)
                    n += 1
                    continue
                mark = clock.lap("other", mark)
                digests.append(plane_digest(frame) if cfg.exact_hash else 0)
                mark = clock.lap("hashing", mark)
                # threads=1: PyAV's default lets swscale start its own threads, which cost
                # more CPU than they save on a frame this size (and hide it from the split)
                small = scaler.reformat(frame, width=aw, height=ah, format="rgb24",
                                        interpolation=Interpolation.AREA, threads=1).to_ndarray()
                mark = clock.lap("scale", mark)
                gray = _luma(small)
                bright.append(float(gray.mean()))
                sharp.append(_laplacian_var(gray))
                luma_motion.append(float(np.abs(gray - prev_gray).mean())
                                   if prev_gray is not None and prev_gray.shape == gray.shape
                                   else 0.0)
                if motion is not None:
                    cam.extend(motion.update(frame, prev_gray, gray))
                prev_gray = gray
                mark = clock.lap("signals", mark)
                phashes.append(phash64(np.rot90(gray, rot) if rot else gray))
                mark = clock.lap("hashing", mark)
                if detector is not None:
                    found.extend(detector.process(n, small))  # decided early
                    mark = clock.lap("shot_rules", mark)
                n += 1
    except av.FFmpegError as e:
        errors += 1
        if n == 0:
            raise MediaError("analyse", "undecodable", f"decoding failed: {e}") from e
    finally:
        container.close()
    if n == 0:
        raise MediaError("analyse", "undecodable", "no frame could be decoded")
    mark = clock.now()
    transitions = found + (detector.finish() if detector is not None else [])
    clock.lap("shot_rules", mark)
    times_np = np.frombuffer(times, dtype=np.float64).copy()
    pts_np = np.frombuffer(pts, dtype=np.int64).copy() if pts_ok else None
    if pts_np is not None and len(np.unique(pts_np)) != len(pts_np):
        pts_np = None  # duplicate pts cannot identify frames; the cutter counts instead
    if not fps and n > 1 and times_np[-1] > times_np[0]:
        fps = (n - 1) / (times_np[-1] - times_np[0])
    return Signals(
        fps=fps or 30.0,
        time_base=tb,
        pts=pts_np,
        times=times_np,
        keyframe=np.frombuffer(key, dtype=np.int8).astype(bool),
        damaged=np.frombuffer(damaged, dtype=np.int8).astype(bool),
        analysed=np.frombuffer(inspan, dtype=np.int8).astype(bool),
        brightness=np.frombuffer(bright, dtype=np.float32).copy(),
        sharpness=np.frombuffer(sharp, dtype=np.float32).copy(),
        motion=np.frombuffer(luma_motion, dtype=np.float32).copy(),
        camera=(np.frombuffer(cam, dtype=np.float32).reshape(-1, 5).copy()
                if motion is not None else None),
        motion_source=motion.source if motion is not None else "",
        phash=np.frombuffer(phashes, dtype=np.uint64).copy(),
        digest=np.frombuffer(digests, dtype=np.uint64).copy(),
        transitions=transitions,
        decode_errors=errors,
        end_time=end_time,
        decoder=decoder_of(stream),
    )
