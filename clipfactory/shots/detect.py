"""Boundaries only: decode a file once at the analysis size and run a shot detector on it.

This is what ``clipfactory shots`` runs. It feeds the detector exactly the frames the analysis
pass of ``clipfactory run`` would (same size, same scaler), without the other signals.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

import av
import numpy as np
from av.video.reformatter import Interpolation, VideoReformatter

from clipfactory.config import AnalysisConfig, ShotConfig
from clipfactory.errors import MediaError
from clipfactory.media.analyse import analysis_size
from clipfactory.media.probe import open_video, probe
from clipfactory.media.streams import FrameTimes, decoded_packets
from clipfactory.records import Transition
from clipfactory.shots import make_detector
from clipfactory.shots.base import ShotDetector

__all__ = ["ShotResult", "detect_shots", "format_timecode"]


@dataclass
class ShotResult:
    """The transitions of one video, with what they cost."""

    path: str
    fps: float
    frames: int
    transitions: list[Transition]
    times: np.ndarray = field(repr=False)  # seconds of each decoded frame
    cpu_s: float = 0.0  # decode, scale and detect, CPU seconds of this process
    detector_cpu_s: float = 0.0  # the detector's share

    def time_of(self, frame: int) -> float:
        """Presentation time of ``frame`` (extrapolated past either end)."""
        if 0 <= frame < len(self.times):
            return float(self.times[frame])
        if frame < 0:
            return frame / self.fps
        return float(self.times[-1]) + (frame - len(self.times) + 1) / self.fps

    def to_json(self) -> str:
        """One line: ``{"video", "fps", "frames", "transitions": [{type, start_frame,
        end_frame}]}`` (the ``clipfactory shots --json`` format)."""
        return json.dumps({
            "video": self.path, "fps": round(self.fps, 6), "frames": self.frames,
            "transitions": [{"type": t.kind, "start_frame": t.start_frame,
                             "end_frame": t.end_frame} for t in self.transitions],
        }, ensure_ascii=False)


def format_timecode(seconds: float) -> str:
    """``HH:MM:SS.mmm``."""
    ms = max(0, round(seconds * 1000))
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, ms = divmod(rest, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}.{ms:03d}"


def detect_shots(path: str, shots: ShotConfig | None = None, analysis: AnalysisConfig | None = None,
                 *, detector: ShotDetector | None = None, threads: int = 1) -> ShotResult:
    """Decode ``path`` once and return its transitions (``detector`` overrides ``shots``)."""
    cpu0 = time.process_time()
    analysis = analysis or AnalysisConfig()
    det = detector if detector is not None else make_detector(shots or ShotConfig())
    info = probe(path)
    try:
        container, stream = open_video(path, threads=threads)
    except av.FFmpegError as e:
        raise MediaError("analyse", "open_failed", str(e)) from e
    aw, ah = analysis_size(info.width, info.height, analysis)
    scaler = VideoReformatter()
    fps = info.fps or 30.0
    clock = FrameTimes(stream, fps)  # the analysis pass's times, resets included
    times: list[float] = []
    found: list[Transition] = []
    det_s = 0.0
    try:
        # a damaged packet is passed over, as the analysis pass does: the decoder recovers at
        # the next keyframe, and the transitions after the damage are found too
        for frames in decoded_packets(container, stream):
            for frame in frames or ():
                n = len(times)
                times.append(clock(frame.pts))
                small = scaler.reformat(frame, width=aw, height=ah, format="rgb24",
                                        interpolation=Interpolation.AREA, threads=1).to_ndarray()
                d0 = time.process_time()
                found.extend(det.process(n, small))
                det_s += time.process_time() - d0
    except av.FFmpegError as e:
        if not times:
            raise MediaError("analyse", "undecodable", f"decoding failed: {e}") from e
    finally:
        container.close()
    if not times:
        raise MediaError("analyse", "undecodable", "no frame could be decoded")
    d0 = time.process_time()
    found.extend(det.finish())
    det_s += time.process_time() - d0
    found.sort(key=lambda t: (t.start_frame, t.end_frame))
    return ShotResult(path, fps, len(times), found, np.asarray(times), time.process_time() - cpu0,
                      det_s)
