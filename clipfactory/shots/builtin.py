"""The built-in CPU detector: hard cuts, dissolves and fades through black, from one pass.

Hard cuts (as :mod:`clipfactory.shots.content`): frame ``t`` starts a new shot when its
difference to ``t - 1`` is above an absolute floor, well above the activity around it (motion
and pans raise every score, a cut stands out), and the old picture does not come back within a
few frames (flash, strobe).

Gradual transitions: for every frame ``c`` and half-widths ``h`` the frames ``c - h .. c + h``
are tested as a mix of the two end frames (:mod:`clipfactory.shots.gradual`). A window passes
when its ends differ as much as a cut would (and in colour, not only in layout, which a pan
changes too), the frames between lie close to the segment
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
from clipfactory.shots.base import merge_close_cuts
from clipfactory.shots.features import (
    Features,
    batch_features,
    cut_distance,
    cut_distances,
    hist_distance,
    recall_distance,
    same_picture,
)
from clipfactory.shots.gradual import (
    BLACK_LUMA,
    BLACK_SPREAD,
    MAX_BLACK,
    chain_fades,
    fit_mix,
    ramp_extent,
)

__all__ = ["BuiltinDetector"]

_BATCH = 16  # frames whose features are computed together
_SCALES = (3, 5, 8, 12, 16)  # half-widths of the windows tested for a gradual transition
_STRIDE = 2  # window centres tested: every other frame (a transition has several)


@dataclass
class _Run:
    """Consecutive window centres that passed the mix test: one gradual transition."""

    first: int
    last: int
    lo: int  # leftmost window start
    hi: int  # rightmost window end
    way: int = 0  # 1: fading out to black, -1: fading in from black, 0: a dissolve


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
        self._ring = self.max_gradual_frames + 4 * h + self._cut_delay + _BATCH + 8
        self._feats: list[Features | None] = [None] * self._ring
        self._coarse = np.zeros((self._ring, 432), np.float32)
        self.scores = array("f")  # scores[t - first] = cut_distance(t - 1, t)
        self._luma, self._spread = array("f"), array("f")
        self._black = bytearray()  # 1 where the frame is black
        self.first, self._last, self._seen = 0, -1, -1  # last frame with features / received
        self._buf = np.empty((0, 0, 0, 0), np.uint8)  # frames waiting for their batch
        self._pending: list[int] = []
        self._next_cut, self._next_centre = 1, 0
        self._cuts: list[tuple[int, float]] = []
        self._gradual: list[Transition] = []
        self._run: _Run | None = None
        self._done_until = -1  # no gradual transition may start before this frame

    # -- streaming ------------------------------------------------------------------------

    @property
    def cuts(self) -> list[tuple[int, float]]:
        """Hard cuts decided so far, ``(first frame of the new shot, score)`` (read only)."""
        return self._cuts

    @property
    def graduals(self) -> list[Transition]:
        """Dissolves and fades decided so far (read only)."""
        return self._gradual

    def coarse(self, i: int) -> np.ndarray | None:
        """The 16x9 colour thumbnail of frame ``i`` (432 float32), while the ring holds it."""
        return self._coarse[i % self._ring] if self._feat(i) is not None else None

    def is_black(self, i: int) -> bool:
        """Whether frame ``i`` is black (any frame outside the stream counts as black)."""
        return self._dark(i)

    def process(self, index: int, frame: np.ndarray) -> list[Transition]:
        """Take frame ``index`` (copied); every transition is reported by :meth:`finish`."""
        if self._seen < 0 and self._last < 0:
            self.first, self._last, self._seen = index, index - 1, index - 1
            self._next_cut, self._next_centre = index + 1, index
        if index != self._seen + 1:
            raise ValueError(f"frames must arrive in order: got {index} after {self._seen}")
        if self._pending and self._buf.shape[1:] != frame.shape:
            self._flush()  # the frame size changed: finish the batch of the old size
        if not self._pending and self._buf.shape[1:] != frame.shape:
            self._buf = np.empty((_BATCH, *frame.shape), np.uint8)
        self._buf[len(self._pending)] = frame
        self._pending.append(index)
        self._seen = index
        if len(self._pending) == _BATCH:
            self._flush()
        return []

    def finish(self) -> list[Transition]:
        """The stream ended: decide the remaining frames and return every transition."""
        self._flush()
        while self._next_cut <= self._last:
            self._decide_cut(self._next_cut)
            self._next_cut += 1
        if self.gradual:
            while self._next_centre <= self._last:
                self._scan(self._next_centre, self._last)
                self._next_centre += _STRIDE
            self._close_run(force=True)
        return self._merge()

    def _flush(self) -> None:
        """Features of the pending frames, computed together, then every decision they allow."""
        if not self._pending:
            return
        feats = batch_features(self._buf[:len(self._pending)])
        prev = self._feat(self._pending[0] - 1)
        dists = cut_distances([prev, *feats]).tolist() if prev is not None else \
            [0.0, *cut_distances(feats).tolist()]
        for index, f, dist in zip(self._pending, feats, dists, strict=True):
            self.scores.append(dist)
            self._luma.append(f.luma)
            self._spread.append(f.spread)
            self._black.append(f.luma <= BLACK_LUMA and f.spread <= BLACK_SPREAD)
            self._feats[index % self._ring] = f
            self._coarse[index % self._ring] = f.coarse
            self._last = index
        self._pending.clear()
        index = self._last
        while self._next_cut <= index - self._cut_delay:
            self._decide_cut(self._next_cut)
            self._next_cut += 1
        if self.gradual:
            while self._next_centre <= index - _SCALES[-1]:
                self._scan(self._next_centre, index)
                self._next_centre += _STRIDE

    def _feat(self, i: int) -> Features | None:
        if i < self.first or i > self._last or i <= self._last - self._ring:
            return None
        return self._feats[i % self._ring]

    def _dark(self, i: int) -> bool:
        k = i - self.first
        if k < 0 or k >= len(self._black):
            return True  # before the first / after the last frame: nothing to show
        return self._black[k] == 1

    # -- hard cuts ------------------------------------------------------------------------

    def _decide_cut(self, t: int) -> None:
        first, s = self.first, self.scores[t - self.first]
        if s < self.threshold:
            return
        lo = max(first + 1, t - self.window)
        hi = min(first + len(self.scores), t + self.window + 1)
        left = [self.scores[i - first] for i in range(lo, t - 1)]
        right = [self.scores[i - first] for i in range(t + 2, hi)]
        if left or right:  # medians: a strobe next to a cut does not hide it
            ratio = self.adaptive_ratio
            if s < ratio * float(np.median(left + right)) and not (
                    # out of (or into) a fast pan: the cut stands out against the calm side,
                    # and the colours changed (motion alone does not change them)
                    left and right and s >= ratio * min(np.median(left), np.median(right))
                    and hist_distance(self._feat(t - 1), self._feat(t)) >= self.threshold):
                return
        if self._returns(t - 1, t, s) or same_picture(self._feat(t - 1), self._feat(t)):
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
        k0, c, k1 = s - self.first, (s + e) // 2 - self.first, e - self.first
        spread, luma = self._spread, self._luma
        if self._dark(s) != self._dark(e):  # a fade is monotone in brightness
            if not min(luma[k0], luma[k1]) - 2 <= luma[c] <= max(luma[k0], luma[k1]) + 2:
                return False
        elif spread[c] > 0.9 * min(spread[k0], spread[k1]):
            return False  # two unrelated pictures superimposed lose contrast; motion does not
        fs, fe = self._feat(s), self._feat(e)
        if fs is None or fe is None or cut_distance(fs, fe) < self.threshold:
            return False
        if hist_distance(fs, fe) < 0.5 * self.threshold:
            return False  # the colours barely changed: a pan over one scene, not a new shot
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
            way = self._dark(passed[1]) - self._dark(passed[0])  # 1 out to black, -1 in from it
            if run is not None and c - run.last <= 2 * _STRIDE and way in (0, run.way):
                run.last, run.lo, run.hi = c, min(run.lo, passed[0]), max(run.hi, passed[1])
            else:
                self._close_run()
                self._run = _Run(c, c, passed[0], passed[1], way)
        elif run is not None and c - run.last > 2 * _STRIDE:
            self._close_run()
        run = self._run
        if run is not None and run.last - run.first > self.max_gradual_frames:
            self._run = None  # too long for a transition: a slow change inside a shot
            self._done_until = c + _SCALES[-1]

    def _close_run(self, force: bool = False) -> None:
        run, self._run = self._run, None
        if run is None:
            return
        floor = max(self.first, self._done_until - 1, self._last - self._ring + 1)
        lo, hi = max(run.lo, floor), min(run.hi, self._last)
        extent = None
        for _ in range(3):  # the windows that passed may sit inside a long transition: widen
            if hi - lo < 3:
                break
            ext = ramp_extent(fit_mix(self._coarse[np.arange(lo, hi + 1) % self._ring]).alpha)
            if ext is None:
                break
            extent = (max(lo, int(np.floor(lo + ext[0] + 0.25))),
                      min(hi, int(np.ceil(lo + ext[1] - 0.25))))
            pad = max(3, (extent[1] - extent[0]) // 3)
            wlo, whi = max(floor, extent[0] - pad), min(self._last, extent[1] + pad)
            # never across black: a fade-out ends there, a fade-in starts there
            whi = next((i for i in range(extent[1], whi + 1) if self._dark(i)), whi)
            wlo = next((i for i in range(extent[0], wlo - 1, -1) if self._dark(i)), wlo)
            wider = wlo, whi
            if wider[0] >= lo and wider[1] <= hi:
                break
            lo, hi = min(lo, wider[0]), max(hi, wider[1])
        if extent is None or extent[1] - extent[0] < 3:
            return
        start, end = extent
        black = any(self._dark(i) for i in range(start, end + 1))
        if not black and self._flashback(start, end):
            return
        score = cut_distance(self._feat(start), self._feat(end))  # type: ignore[arg-type]
        self._gradual.append(Transition("fade" if black else "dissolve", start, end,
                                        round(score, 4)))
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
        kept = merge_close_cuts(self._cuts, self.min_shot_frames)
        events = list(self._gradual)
        # a cut in the last few frames is kept: whether they are a new shot or a flash whose
        # end is past the video's (or the span's), no clip may hold them; dropping it let the
        # last clip run 1-3 frames into the next shot. A cut inside a gradual transition is
        # its part.
        for t, s in kept:
            if not any(g.start_frame < t <= g.end_frame - 1 for g in self._gradual):
                events.append(Transition("cut", t - 1, t, round(s, 4)))
        events.sort(key=lambda tr: (tr.start_frame, tr.end_frame))
        return chain_fades(events, self._dark, MAX_BLACK)
