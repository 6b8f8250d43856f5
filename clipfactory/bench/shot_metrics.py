"""Scoring found transitions against the truth: precision, recall and F1 per transition type.

A transition is the open span of frames between its ``start_frame`` and ``end_frame`` (for a
hard cut, the point between two frames). A found transition matches a true one when their spans
are at most ``tolerance`` frames apart (overlapping spans are 0 apart); each truth and each
found transition is matched at most once, closest pairs first. A match counts for the true
transition's type; a found transition that matches nothing is a false positive of the type it
claims (every transition of a detector that does not name types is a cut).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

__all__ = ["TYPES", "Tally", "dirty_clips", "match", "span_gap", "tally"]

TYPES = ("cut", "dissolve", "fade")


def _span(t: tuple[str, int, int]) -> tuple[float, float]:
    return t[1] + 0.5, t[2] - 0.5


def span_gap(a: tuple[str, int, int], b: tuple[str, int, int]) -> float:
    """Frames between the spans of two transitions ``(type, start_frame, end_frame)``."""
    (alo, ahi), (blo, bhi) = _span(a), _span(b)
    return max(0.0, alo - bhi, blo - ahi)


def match(truth: Sequence[tuple[str, int, int]], found: Sequence[tuple[str, int, int]],
          tolerance: float = 2) -> list[tuple[int, int]]:
    """One-to-one (truth index, found index) pairs, closest first."""
    pairs = []
    for i, t in enumerate(truth):
        for j, f in enumerate(found):
            g = span_gap(t, f)
            if g <= tolerance:
                centre = abs(sum(_span(t)) - sum(_span(f))) / 2
                pairs.append((g, centre, i, j))
    used_t, used_f, out = set(), set(), []
    for _, _, i, j in sorted(pairs):
        if i not in used_t and j not in used_f:
            used_t.add(i)
            used_f.add(j)
            out.append((i, j))
    return out


@dataclass
class Tally:
    """Counts over a corpus; ``covered`` and ``typed`` are over matched transitions."""

    tp: Counter = field(default_factory=Counter)  # by true type
    fn: Counter = field(default_factory=Counter)  # by true type
    fp: Counter = field(default_factory=Counter)  # by claimed type
    fp_where: Counter = field(default_factory=Counter)  # false positives by shot kind
    covered: Counter = field(default_factory=Counter)  # found span covers the truth (±tol)
    typed: Counter = field(default_factory=Counter)  # found type == true type

    def prf(self, types: Iterable[str]) -> tuple[float, float, float]:
        """(precision, recall, F1) over ``types``."""
        types = list(types)
        tp = sum(self.tp[t] for t in types)
        fp = sum(self.fp[t] for t in types)
        fn = sum(self.fn[t] for t in types)
        p = tp / (tp + fp) if tp + fp else 1.0
        r = tp / (tp + fn) if tp + fn else 1.0
        return p, r, (2 * p * r / (p + r) if p + r else 0.0)


def _where(frame: float, shots: Sequence[dict]) -> str:
    for s in shots:
        if s["first"] <= frame <= s["last"]:
            return s["kind"]
    return "transition"


def tally(into: Tally, truth: Sequence[tuple[str, int, int]],
          found: Sequence[tuple[str, int, int]], shots: Sequence[dict] = (),
          tolerance: float = 2) -> Tally:
    """Add one video's counts to ``into`` and return it."""
    pairs = match(truth, found, tolerance)
    hit_t = {i for i, _ in pairs}
    hit_f = {j for _, j in pairs}
    for i, j in pairs:
        t, f = truth[i], found[j]
        into.tp[t[0]] += 1
        into.typed[t[0]] += int(f[0] == t[0])
        into.covered[t[0]] += int(f[1] <= t[1] + tolerance and f[2] >= t[2] - tolerance)
    for i, t in enumerate(truth):
        if i not in hit_t:
            into.fn[t[0]] += 1
    for j, f in enumerate(found):
        if j not in hit_f:
            into.fp[f[0] if f[0] in TYPES else "cut"] += 1
            into.fp_where[_where((f[1] + f[2]) / 2, shots)] += 1
    return into


def dirty_clips(truth: Sequence[tuple[str, int, int]], found: Sequence[tuple[str, int, int]],
                frames: int, fps: float) -> tuple[int, int]:
    """(clips holding a transition frame, clips) when one video is planned into clips from the
    ``found`` transitions with the default clip settings (``gradual_margin`` included), as
    ``clipfactory run`` would: a clip is dirty when it holds a frame strictly inside a true
    transition, or both sides of a true cut."""
    import numpy as np

    from clipfactory.config import ClipConfig
    from clipfactory.plan import plan_spans, shots_from_transitions
    from clipfactory.records import Transition

    cfg = ClipConfig()
    shots = shots_from_transitions(0, frames, [Transition(k, a, b) for k, a, b in found],
                                   cfg.gradual_margin)
    clips, _ = plan_spans(shots, np.arange(frames) / fps, fps, cfg)
    dirty = 0
    for c in clips:
        last = c.end_frame - 1
        if any(c.start_frame <= a and last >= b if b - a == 1
               else c.start_frame < b and last > a for _, a, b in truth):
            dirty += 1
    return dirty, len(clips)
