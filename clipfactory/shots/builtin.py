"""The built-in CPU detector: hard cuts, dissolves and fades through black, from one pass.

Hard cuts (as :mod:`clipfactory.shots.content`): frame ``t`` starts a new shot when its
difference to ``t - 1`` is above an absolute floor, well above the activity around it (motion
and pans raise every score, a cut stands out), and the old picture does not come back within a
few frames (flash, strobe).

Gradual transitions: for every frame ``c`` and half-widths ``h`` the frames ``c - h .. c + h``
are tested as a mix of the two end frames (:mod:`clipfactory.shots.gradual`). A window passes
when its ends differ as much as a cut would, the frames between lie close to the segment
joining the ends, the mix weight climbs through the middle without jumping, and the picture
either loses contrast in the middle (two unrelated pictures superimposed: a dissolve) or one
end is black (a fade). Consecutive passing windows form one transition, whose first and last
frames come from a line fitted through the mix weights. A fade-out, the black frames after it
and the fade-in (or cut) that follows become one ``fade``.

Memory is bounded: a ring of the last few hundred frames' small features plus three floats per
frame; every transition is reported by :meth:`finish`.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass

import numpy as np

from clipfactory.records import Transition
from clipfactory.shots.features import Features, cut_distance, frame_features, recall_distance
from clipfactory.shots.gradual import chain_fades, fit_mix, ramp_extent

__all__ = ["BuiltinDetector"]

_SCALES = (3, 5, 8, 12, 16)  # half-widths of the windows tested for a gradual transition
_BLACK_LUMA = 24.0  # a frame this dark on average ...
_BLACK_SPREAD = 8.0  # ... and this flat (16x9 luma std) is black, as at the bottom of a fade
_MAX_BLACK = 24  # frames of black that a fade-out and a fade-in (or cut) may hold between them


@dataclass
class _Run:
    """Consecutive window centres that passed the mix test: one gradual transition."""

    first: int
    last: int
    lo: int  # leftmost window start
    hi: int  # rightmost window end


class BuiltinDetector:
    """Hard cuts, dissolves and fades (see the module docstring)."""

    name = "builtin"

    def __init__(self, threshold: float = 0.3, adaptive_ratio: float = 3.0, window: int = 8,
                 flash_lookahead: int = 4, min_shot_frames: int = 4, gradual: bool = True,
                 max_residual: float = 0.35, max_gradual_frames: int = 60) -> None:
        self.threshold = threshold
        self.adaptive_ratio = adaptive_ratio
        self.window = max(1, window)
        self.flash_lookahead = max(0, flash_lookahead)
        self.min_shot_frames = max(1, min_shot_frames)
        self.gradual = gradual
        self.max_residual = max_residual
        self.max_gradual_frames = max(4, max_gradual_frames)
        self._cut_delay = max(self.window, self.flash_lookahead) + 1
        h = _SCALES[-1]
        self._ring = self.max_gradual_frames + 4 * h + self._cut_delay + 8
        self._feats: list[Features | None] = [None] * self._ring
        self._coarse = np.zeros((self._ring, 432), np.float32)
        self.scores = array("f")  # scores[t - first] = cut_distance(t - 1, t)
        self._luma, self._spread = array("f"), array("f")
        self.first, self._last = 0, -1
        self._next_cut, self._next_centre = 1, 0
        self._cuts: list[tuple[int, float]] = []
        self._gradual: list[Transition] = []
        self._run: _Run | None = None
        self._done_until = -1  # no gradual transition may start before this frame

    # -- streaming ------------------------------------------------------------------------

    def process(self, index: int, frame: np.ndarray) -> list[Transition]:
        """Take frame ``index``; every transition is reported by :meth:`finish`."""
        if self._last < 0:
            self.first, self._last = index, index - 1
            self._next_cut, self._next_centre = index + 1, index
        if index != self._last + 1:
            raise ValueError(f"frames must arrive in order: got {index} after {self._last}")
        self._last = index
        f = frame_features(frame)
        prev = self._feat(index - 1)
        self.scores.append(cut_distance(prev, f) if prev is not None else 0.0)
        self._luma.append(f.luma)
        self._spread.append(f.spread)
        self._feats[index % self._ring] = f
        self._coarse[index % self._ring] = f.coarse
        while self._next_cut <= index - self._cut_delay:
            self._decide_cut(self._next_cut)
            self._next_cut += 1
        if self.gradual:
            while self._next_centre <= index - _SCALES[-1]:
                self._scan(self._next_centre, index)
                self._next_centre += 1
        return []

    def finish(self) -> list[Transition]:
        """The stream ended: decide the remaining frames and return every transition."""
        while self._next_cut <= self._last:
            self._decide_cut(self._next_cut)
            self._next_cut += 1
        if self.gradual:
            while self._next_centre <= self._last:
                self._scan(self._next_centre, self._last)
                self._next_centre += 1
            self._close_run(force=True)
        return self._merge()

    def _feat(self, i: int) -> Features | None:
        if i < self.first or i > self._last or i <= self._last - self._ring:
            return None
        return self._feats[i % self._ring]

    def _dark(self, i: int) -> bool:
        k = i - self.first
        if k < 0 or k >= len(self._luma):
            return True  # before the first / after the last frame: nothing to show
        return self._luma[k] <= _BLACK_LUMA and self._spread[k] <= _BLACK_SPREAD

    # -- hard cuts ------------------------------------------------------------------------

    def _decide_cut(self, t: int) -> None:
        first, s = self.first, self.scores[t - self.first]
        if s < self.threshold:
            return
        lo = max(first + 1, t - self.window)
        hi = min(first + len(self.scores), t + self.window + 1)
        around = [self.scores[i - first] for i in range(lo, hi) if abs(i - t) > 1]
        if around and s < self.adaptive_ratio * float(np.median(around)):
            return  # the median: a strobe next to a cut does not hide it
        if self._returns(t - 1, t, s):
            return
        self._cuts.append((t, s))

    def _returns(self, before: int, now: int, score: float) -> bool:
        """True when the change between frames ``before`` and ``now`` is an interruption, not
        a new shot: some picture of the few frames up to ``before`` is back within a few frames
        from ``now`` (a flash, a strobe, a flash decaying over several frames). A shot boundary
        separates the past from the future."""
        limit = min(0.5 * score, self.threshold)
        n = self.flash_lookahead
        past = [f for k in range(n + 1) if (f := self._feat(before - k)) is not None]
        future = [f for k in range(n + 1) if (f := self._feat(now + k)) is not None]
        return any(recall_distance(a, b) < limit for a in past for b in future)

    # -- gradual transitions ----------------------------------------------------------------

    def _window_passes(self, s: int, e: int) -> bool:
        fs, fe = self._feat(s), self._feat(e)
        if fs is None or fe is None or cut_distance(fs, fe) < self.threshold:
            return False
        k0, c = s - self.first, (s + e) // 2 - self.first
        k1 = e - self.first
        fade = self._dark(s) != self._dark(e)
        if not fade and self._spread[c] > 0.9 * min(self._spread[k0], self._spread[k1]):
            return False  # two unrelated pictures superimposed lose contrast; motion does not
        idx = np.arange(s, e + 1) % self._ring
        fit = fit_mix(self._coarse[idx])
        return (fit.residual <= self.max_residual and fit.jump <= 0.5 and fit.wander <= 1.5
                and fit.middle >= max(1, (e - s) // 4))

    def _scan(self, c: int, last: int) -> None:
        passed = None
        if c >= self._done_until:
            for h in _SCALES:
                s, e = c - h, c + h
                if s < self.first or e > last:
                    break
                if self._window_passes(s, e):
                    passed = (s, e)
                    break
        run = self._run
        if passed is not None:
            if run is not None and c - run.last <= 2:
                run.last, run.lo, run.hi = c, min(run.lo, passed[0]), max(run.hi, passed[1])
            else:
                self._close_run()
                self._run = _Run(c, c, passed[0], passed[1])
        elif run is not None and c - run.last > 2:
            self._close_run()
        run = self._run
        if run is not None and run.last - run.first > self.max_gradual_frames:
            self._run = None  # too long for a transition: a slow change inside a shot
            self._done_until = c + _SCALES[-1]

    def _close_run(self, force: bool = False) -> None:
        run, self._run = self._run, None
        if run is None:
            return
        lo, hi = max(run.lo - 3, self.first, self._done_until - 1), min(run.hi + 3, self._last)
        if lo <= self._last - self._ring or hi - lo < 3:
            return
        fit = fit_mix(self._coarse[np.arange(lo, hi + 1) % self._ring])
        ext = ramp_extent(fit.alpha)
        if ext is None:
            return
        start = max(lo, min(run.first, int(np.floor(lo + ext[0] + 0.25))))
        end = min(hi, max(run.last, int(np.ceil(lo + ext[1] - 0.25))))
        if end - start < 3:
            return
        if self._dark(start) == self._dark(end) and self._flashback(start, end):
            return
        kind = "fade" if self._dark(start) or self._dark(end) else "dissolve"
        score = cut_distance(self._feat(start), self._feat(end))  # type: ignore[arg-type]
        self._gradual.append(Transition(kind, start, end, round(score, 4)))
        self._done_until = end

    def _flashback(self, start: int, end: int) -> bool:
        """The picture after a supposed transition was already there just before it: a flash
        decaying, or lighting that changed and came back."""
        fe = self._feat(end)
        limit = self.threshold
        for k in range(0, self.flash_lookahead + 1):
            fb = self._feat(start - k)
            if fb is not None and fe is not None and recall_distance(fb, fe) < limit:
                return True
        return False

    # -- putting it together --------------------------------------------------------------

    def _merge(self) -> list[Transition]:
        kept: list[tuple[int, float]] = []
        for t, s in self._cuts:
            if kept and t - kept[-1][0] < self.min_shot_frames:
                if s > kept[-1][1]:
                    kept[-1] = (t, s)
                continue
            kept.append((t, s))
        events = list(self._gradual)
        for t, s in kept:  # a cut inside a gradual transition is part of it
            if not any(g.start_frame < t <= g.end_frame - 1 for g in self._gradual):
                events.append(Transition("cut", t - 1, t, round(s, 4)))
        events.sort(key=lambda tr: (tr.start_frame, tr.end_frame))
        return chain_fades(events, self._dark, _MAX_BLACK)
