"""Plan clips from shots: no clip crosses a transition or damaged frames; too-short shots are
dropped, over-long shots are split into equal parts."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np

from clipfactory.config import ClipConfig
from clipfactory.records import Span, Transition

__all__ = ["damage_transitions", "plan_spans", "plan_windows", "shots_from_transitions",
           "span_seconds", "window_frames"]


def damage_transitions(damaged: np.ndarray) -> list[Transition]:
    """One ``damage`` transition per run of damaged frames (the run itself is excluded)."""
    out: list[Transition] = []
    idx = np.flatnonzero(damaged)
    if idx.size == 0:
        return out
    run_start = prev = int(idx[0])
    for i in [*idx[1:].tolist(), None]:
        if i is not None and i == prev + 1:
            prev = i
            continue
        out.append(Transition("damage", run_start - 1, prev + 1))
        if i is not None:
            run_start = prev = i
    return out


GRADUAL = ("dissolve", "fade")


def shots_from_transitions(first: int, end: int, transitions: Sequence[Transition],
                           gradual_margin: int = 0) -> list[Span]:
    """Split frames ``[first, end)`` into shots; transition frames belong to no shot, nor do
    ``gradual_margin`` frames on each side of a dissolve or fade (the faintest frames of a
    ramp, which no detector places to the frame)."""
    shots: list[Span] = []
    cursor = first
    for tr in sorted(transitions, key=lambda t: (t.start_frame, t.end_frame)):
        pad = gradual_margin if tr.kind in GRADUAL else 0
        stop = min(tr.start_frame + 1 - pad, end)
        if stop > cursor:
            shots.append(Span(cursor, stop))
        cursor = max(cursor, tr.end_frame + pad)
        if cursor >= end:
            break
    if cursor < end:
        shots.append(Span(cursor, end))
    return shots


def span_seconds(times: np.ndarray, fps: float, span: Span,
                 end_time: float | None = None) -> tuple[float, float]:
    """(start_s, end_s) of a span; end_s is the start time of the frame after the span:
    ``end_time`` (the first frame after ``times``, when known) or one nominal frame late."""
    start = float(times[span.start_frame])
    if span.end_frame < len(times):
        end = float(times[span.end_frame])
    elif end_time is not None:
        end = float(end_time)
    else:
        end = float(times[span.end_frame - 1]) + 1.0 / fps
    return start, end


def plan_spans(shots: Sequence[Span], times: np.ndarray, fps: float,
               cfg: ClipConfig, end_time: float | None = None
               ) -> tuple[list[Span], list[Span]]:
    """Return (clip spans, too-short shots) from the shots."""
    clips: list[Span] = []
    short: list[Span] = []
    for shot in shots:
        s = Span(shot.start_frame + cfg.trim_frames, shot.end_frame - cfg.trim_frames)
        if s.num_frames <= 0:
            short.append(shot)
            continue
        start_s, end_s = span_seconds(times, fps, s, end_time)
        duration = end_s - start_s
        if duration < cfg.min_s - 1e-9:
            short.append(s)
            continue
        # never more parts than frames: a slideshow (a frame every 100 s) or a max_s under a
        # frame's time planned clips of 0 frames, whose NaN scores stopped the ledger
        parts = min(max(1, math.ceil(duration / cfg.max_s - 1e-9)), s.num_frames)
        bounds = np.linspace(s.start_frame, s.end_frame, parts + 1).round().astype(int)
        clips.extend(Span(int(a), int(b)) for a, b in itertools.pairwise(bounds))
    return clips, short


def window_frames(times: np.ndarray, windows: Sequence[tuple[float, float]]
                  ) -> list[Span]:
    """The frames of each time window ``[start_s, end_s)``: those whose time lies inside."""
    out = []
    for start_s, end_s in windows:
        a = int(np.searchsorted(times, start_s - 1e-6, side="left"))
        b = int(np.searchsorted(times, end_s - 1e-6, side="left"))
        out.append(Span(a, max(a, b)))
    return out


def plan_windows(shots: Sequence[Span], times: np.ndarray, fps: float, cfg: ClipConfig,
                 windows: Sequence[tuple[float, float]], end_time: float | None = None
                 ) -> tuple[list[tuple[Span, int]], list[tuple[Span, int]]]:
    """Plan clips only inside the given time windows (a manifest's spans): each shot is cut to
    each window and planned as usual. Returns (clip spans, too-short pieces), each with the index
    of its window; a clip two overlapping windows both produce is kept once, for the first."""
    clips: list[tuple[Span, int]] = []
    short: list[tuple[Span, int]] = []
    seen: set[tuple[int, int]] = set()
    for i, w in enumerate(window_frames(times, windows)):
        pieces = [Span(max(s.start_frame, w.start_frame), min(s.end_frame, w.end_frame))
                  for s in shots]
        pieces = [p for p in pieces if p.num_frames > 0]
        got, too_short = plan_spans(pieces, times, fps, cfg, end_time)
        for sp in got:
            if (sp.start_frame, sp.end_frame) not in seen:
                seen.add((sp.start_frame, sp.end_frame))
                clips.append((sp, i))
        short.extend((sp, i) for sp in too_short)
    return clips, short
