"""The test behind gradual transitions: are the frames between two endpoints a mix of them?

A dissolve from shot A to shot B shows ``(1 - a) * A + a * B`` with ``a`` rising from 0 to 1, and
a fade is the same with black for one of the two. So the frames between two endpoint frames
``s`` and ``e`` of a transition lie on the straight segment between their features, in order.
Motion does not: a pan or a moving object leaves the segment (the residual is large) and
wanders along it (the mix weights go back and forth). A hard cut lies on the segment too, but
jumps from one end to the other in one frame; a gradual transition passes through the middle.

These are pure functions on feature arrays (rows = frames), tested without any video.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from clipfactory.records import Transition

__all__ = ["BLACK_LUMA", "BLACK_SPREAD", "MAX_BLACK", "MixFit", "chain_fades", "fit_mix",
           "ramp_extent"]

BLACK_LUMA = 24.0  # a frame this dark on average ...
BLACK_SPREAD = 8.0  # ... and this flat (16x9 luma std) is black, as at a fade's bottom
MAX_BLACK = 24  # frames of black a fade-out and a fade-in (or cut) may hold between them


@dataclass(frozen=True)
class MixFit:
    """How well the frames between two endpoints are explained as their mix."""

    alpha: np.ndarray  # mix weight of the end frame, per frame from s to e (0 at s, 1 at e)
    residual: float  # mean distance off the segment, relative to the endpoints' distance
    wander: float  # total variation of alpha: 1 for a monotone ramp, more when it wanders
    jump: float  # the largest change of alpha between two consecutive frames
    middle: int  # frames with alpha in [0.2, 0.8]


def fit_mix(feats: np.ndarray) -> MixFit:
    """Fit every row of ``feats`` (frames s..e, features in columns) as a mix of the first and
    the last row."""
    a, b = feats[0], feats[-1]
    d = b - a
    nd = float(d @ d)
    if nd <= 1e-6:
        z = np.zeros(len(feats), np.float32)
        return MixFit(z, float("inf"), float("inf"), 0.0, 0)
    x = feats - a
    alpha = (x @ d) / nd
    res = x - alpha[:, None] * d
    rel = np.sqrt(np.einsum("ij,ij->i", res, res) / nd)
    steps = np.abs(np.diff(alpha))
    inner = alpha[1:-1]
    return MixFit(
        alpha=alpha,
        residual=float(rel[1:-1].mean()) if len(feats) > 2 else 0.0,
        wander=float(steps.sum()),
        jump=float(steps.max()),
        middle=int(np.count_nonzero((inner >= 0.2) & (inner <= 0.8))),
    )


def ramp_extent(alpha: np.ndarray) -> tuple[float, float] | None:
    """Where a rising ramp of mix weights leaves 0 and reaches 1, in fractional positions of
    ``alpha``: a straight line fitted through the frames in the middle of the ramp (robust to
    motion, which mostly disturbs the ends), extrapolated to 0 and 1. ``None`` when fewer than
    two frames are in the middle or the line does not rise."""
    pos = np.flatnonzero((alpha >= 0.15) & (alpha <= 0.85))
    if len(pos) < 2:
        return None
    slope, icept = np.polyfit(pos.astype(np.float64), alpha[pos].astype(np.float64), 1)
    if slope <= 1e-3:
        return None
    return (0.0 - icept) / slope, (1.0 - icept) / slope


def _through_black(prev: Transition, ev: Transition, dark: Callable[[int], bool]) -> bool:
    """``prev`` and ``ev`` meet in black: the frames strictly between them are black where
    there are any (the two ends are the transitions' own last steps, often a step from
    black), else their touching ends are; overlapping ones only where one is a fade."""
    inner = range(prev.end_frame + 1, ev.start_frame)
    ends = range(prev.end_frame, ev.start_frame + 1)
    if len(inner) or len(ends):
        return all(dark(i) for i in (inner if len(inner) else ends))
    return "fade" in (prev.kind, ev.kind)


def chain_fades(events: Sequence[Transition], dark: Callable[[int], bool],
                max_black: int) -> list[Transition]:
    """Join a fade-out, the black frames after it and the fade-in or cut that follows (or a cut
    to black and the fade-in after it) into one ``fade``: the black belongs to no shot. A
    gradual transition into or out of black is a fade whatever it was called (the network
    only sees a mix); two cuts around black frames stay two cuts (a dark shot).
    ``events`` are sorted; ``dark(i)`` says whether frame ``i`` is black."""
    out: list[Transition] = []
    for ev in events:
        prev = out[-1] if out else None
        if (prev is not None and (prev.kind, ev.kind) != ("cut", "cut")
                and -3 <= ev.start_frame - prev.end_frame < max_black
                and _through_black(prev, ev, dark)):
            out[-1] = Transition("fade", prev.start_frame, max(prev.end_frame, ev.end_frame),
                                 max(prev.score, ev.score))
            continue
        out.append(ev)
    return out
