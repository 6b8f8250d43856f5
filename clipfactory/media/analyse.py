"""The ONE decode pass: every per-frame signal and the shot boundaries from a single decode.

Each decoded frame is (1) hashed at full resolution for exact dedup, then (2) scaled once to a
small RGB analysis frame from which everything else comes: brightness, sharpness (variance of
the Laplacian), motion (mean absolute luma change), a 64-bit perceptual hash, and the shot
detector's features. The signals are computed a batch of small frames at a time
(:mod:`clipfactory.media.framesignals`: numpy's per-call overhead dominates on frames this
small), bit-identical to one frame at a time. Only scalars per frame are kept beyond a batch, so
memory stays small for any video length.

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
from clipfactory.errors import MediaError
from clipfactory.media import stagetime
from clipfactory.media.digest import plane_digest
from clipfactory.media.framesignals import NAN5, SignalBatch
from clipfactory.media.motion import enable_motion_vectors, fit_global_motion, frame_vectors
from clipfactory.media.nvdec import decoder_of
from clipfactory.media.probe import open_video
from clipfactory.media.streams import FrameTimes, decoded_packets
from clipfactory.records import Transition, VideoInfo
from clipfactory.shots.base import ShotDetector

__all__ = ["Signals", "analyse", "analysis_size"]

@dataclass
class Signals:
    """Per-frame signals of one video (index = decoded frame number, presentation order)."""

    fps: float
    time_base: Fraction
    pts: np.ndarray | None  # int64 per frame, None when the stream has no usable pts
    times: np.ndarray  # float64 seconds from the stream start, strictly increasing
    keyframe: np.ndarray  # bool
    interlaced: np.ndarray  # bool: the decoder says the frame is interlaced (two fields)
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
    # the picture inside letterbox/pillarbox bars, as shares of the coded frame (top, bottom,
    # left, right); brightness, sharpness, motion and camera motion are measured there. None:
    # no bars
    picture: tuple[float, float, float, float] | None = None

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

    def update(self, frame: av.VideoFrame, has_prev: bool,
               picture: tuple[float, float, float, float] | None = None
               ) -> tuple[float, ...] | None:
        """This frame's motion, or ``None``: measure it by phase correlation of its luma
        against the previous analysed frame's (``has_prev``: there is one). ``picture``:
        the part of the frame inside black bars (top, bottom, left, right, as fractions of
        its height and width), where the vectors are taken from: the bars' blocks are still,
        and where they were half the frame they won the robust fit (a pan read as static)."""
        n = self.frames
        self.frames += 1
        if self.source == "vectors":
            kind = int(frame.pict_type)
            if kind in (_I_FRAME, _P_FRAME):
                dist, self.last_ref = n - self.last_ref, n
                if kind == _P_FRAME and n - self.last_measured >= self.stride \
                        and dist <= _MAX_REF_DISTANCE:
                    vec = frame_vectors(frame)
                    w, h = frame.width, frame.height
                    if vec is not None and picture is not None:  # as measured by phase:
                        top, bottom, left, right = picture  # a share of the picture's size
                        y, x = vec[:, 1] / h, vec[:, 0] / w
                        vec = vec[(y >= top) & (y < bottom) & (x >= left) & (x < right)]
                        vec[:, 0] -= left * w
                        vec[:, 1] -= top * h
                        w, h = round((right - left) * w), round((bottom - top) * h)
                    if vec is not None:
                        self.seen += 1
                        self.last_measured = n
                        g = fit_global_motion(vec[:: max(1, len(vec) // _MAX_VECTORS)], w, h)
                        return (g.tx / dist, g.ty / dist, g.zoom / dist, g.rot / dist,
                                g.residual / dist)
            if self.seen or self.frames < _MV_PATIENCE:
                return NAN5
            self.source = "phase"  # no P-frame vectors at all (all-intra): measure ourselves
            self.stride = max(1, round(self.fps / _PER_SECOND["phase"]))
        if n - self.last_measured < self.stride or not has_prev:
            return NAN5
        self.last_measured = n
        return None


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
    aw, ah = analysis_size(info.width, info.height, cfg)
    scaler = VideoReformatter()
    pts, times = array("q"), array("d")
    key, damaged, inspan, fields = array("b"), array("b"), array("b"), array("b")
    digests = array("Q")
    motion = _Motion(stream, info) if cfg.motion else None
    batch = SignalBatch(ah, aw, info.rotation, camera=motion is not None, bars=cfg.black_bars)
    found: list[Transition] = []
    errors, conceal = 0, False
    fps = info.fps or 0.0
    clock_of = FrameTimes(stream, fps)  # increasing across timestamp resets
    n = 0
    past_end, end_time = False, None
    clock = stagetime.active()  # per-stage CPU split (a no-op unless a bench measures)
    mark = clock.now()
    try:
        for frames in decoded_packets(container, stream):
            if frames is None:
                errors += 1
                conceal = True  # frames until the next keyframe are guesses of the decoder
                continue
            mark = clock.lap("decode", mark)
            for frame in frames:
                fpts = frame.pts
                t = clock_of(fpts)
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
                fields.append(1 if frame.interlaced_frame else 0)
                damaged.append(1 if (conceal or frame.is_corrupt) else 0)
                inside = start_s is None or t >= start_s - 1e-6
                inspan.append(1 if inside else 0)
                if not inside:
                    batch.skip()
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
                # vectors are read while the frame is here; the rest waits for the batch
                cam = (motion.update(frame, batch.has_prev, batch.picture_share)
                       if motion is not None else NAN5)
                batch.add(small, cam)  # computes the signals of a full batch
                mark = clock.lap("signals", mark)
                if detector is not None:
                    found.extend(detector.process(n, small))  # decided early
                    mark = clock.lap("shot_rules", mark)
                n += 1
            if past_end:
                break
    except av.FFmpegError as e:
        errors += 1
        if n == 0:
            raise MediaError("analyse", "undecodable", f"decoding failed: {e}") from e
    finally:
        container.close()
    if n == 0:
        raise MediaError("analyse", "undecodable", "no frame could be decoded")
    mark = clock.now()
    batch.flush()  # what the decoder gave before an error stands
    mark = clock.lap("signals", mark)
    transitions = found + (detector.finish() if detector is not None else [])
    clock.lap("shot_rules", mark)
    times_np = np.frombuffer(times, dtype=np.float64).copy()
    pts_np = np.frombuffer(pts, dtype=np.int64).copy() if clock_of.pts_ok else None
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
        interlaced=np.frombuffer(fields, dtype=np.int8).astype(bool),
        damaged=np.frombuffer(damaged, dtype=np.int8).astype(bool),
        analysed=np.frombuffer(inspan, dtype=np.int8).astype(bool),
        brightness=np.frombuffer(batch.brightness, dtype=np.float32).copy(),
        sharpness=np.frombuffer(batch.sharpness, dtype=np.float32).copy(),
        motion=np.frombuffer(batch.motion, dtype=np.float32).copy(),
        camera=(np.frombuffer(batch.camera, dtype=np.float32).reshape(-1, 5).copy()
                if motion is not None else None),
        motion_source=motion.source if motion is not None else "",
        phash=np.frombuffer(batch.phash, dtype=np.uint64).copy(),
        digest=np.frombuffer(digests, dtype=np.uint64).copy(),
        transitions=transitions,
        decode_errors=errors,
        end_time=end_time,
        decoder=decoder_of(stream),
        picture=batch.picture_share,
    )
