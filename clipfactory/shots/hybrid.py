"""The default shot detector: the built-in CPU detector, and TransNetV2 where it is in doubt.

TransNetV2 finds gradual transitions in real edited footage that hand-made rules miss, but on a
CPU it costs ~10 ms per frame, 20 times the decode of a 360p frame. So the built-in detector
(:mod:`.builtin`) decides what it is sure of, and the network reads only the frames around
what it is not:

- **Dissolve proposals** (:func:`mix_proposals`): a dissolve is a mix of two pictures, so at
  its middle frame ``c`` the picture is close to the average of frames ``c - h`` and ``c + h``
  while those two differ. Motion moves things instead of mixing them, so inside a shot this
  rarely holds. Windows whose ends are the same picture at two brightnesses (a fade, an
  exposure change) or where one end is black are left to the built-in detector, which finds
  fades through black reliably.
- **The built-in detector's doubtful decisions**: hard cuts whose score is below ``sure``
  times its threshold, and every dissolve it finds.
- **The model** reads each proposed region with ``context`` frames on either side (from a ring
  of the last few hundred analysis frames). Where it finds nothing (other than at a lone cut's
  check), it reads the region again at every ``slow``-th frame: a 1-2 s dissolve at 25-30 fps,
  or a 1 s one at 50-60, changes too slowly per frame for the network, which learned shorter
  ones; at half the rate it looks like them.
- **Fusion.** A doubtful built-in cut is dropped when the network is sure there is nothing
  there (its peak below ``veto``, well under its own threshold);
  a built-in dissolve only if the network finds one overlapping it (their spans are joined).
  The network's own gradual transitions are added, unless the picture after one was already
  there before it (a flash). Built-in fades and sure cuts stand. Cuts come from the built-in
  detector only: its flash and strobe rules are better than the network's on real footage.

The built-in detector's features (16x9 colour thumbnails, black frames) serve the proposals;
the network's 48x27 input is made only for the frames it reads. Memory is bounded: the
built-in detector's own, a ring of a few hundred analysis frames (~17 MB at 160x90), and a
few numbers per region. The model loads once per process on the first region (``setup()`` loads it earlier).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from dataclasses import dataclass

import numpy as np

from clipfactory.records import Transition
from clipfactory.shots.builtin import BuiltinDetector
from clipfactory.shots.gradual import BLACK_LUMA, BLACK_SPREAD, MAX_BLACK, chain_fades
from clipfactory.shots.learned import (
    TransNetModel,
    load_model,
    to_model_frames,
)
from clipfactory.shots.transnet import transitions_from_scores

__all__ = ["HybridDetector", "mix_proposals"]

_BATCH = 16
_PAD = 4  # frames read on either side of a proposed mix centre, besides the context
_SCALES = (4, 8, 12, 16, 24)  # half-widths tested for a mix
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)


def _luma_cells(coarse: np.ndarray) -> np.ndarray:
    return coarse.reshape(len(coarse), -1, 3) @ _LUMA


def mix_proposals(coarse: np.ndarray, min_change: float, max_residual: float,
                  scales: tuple[int, ...] = _SCALES, centres: tuple[int, int] | None = None
                  ) -> list[tuple[int, int]]:
    """Windows ``(c - h, c + h)`` (indices into ``coarse``) whose middle frame looks like the
    average of its ends while the ends differ (``mean|b - a| >= 255 * min_change`` and
    ``mean|m - (a + b) / 2| <= max_residual * mean|b - a|``), except fades: windows whose ends
    are one picture at two brightnesses (``b`` within half the change of ``k * a``), with a
    black end or middle, or whose middle is darker than both ends.
    ``coarse`` is ``[n, 16 * 9 * 3]`` float32, one colour thumbnail per frame. ``centres``
    ``(first, last)`` tests only the windows centred there (a stream tests each centre once);
    each window's test is the same either way."""
    n = len(coarse)
    luma = _luma_cells(coarse)
    bright = luma.mean(axis=1)
    black = (bright <= BLACK_LUMA) & (luma.std(axis=1) <= BLACK_SPREAD)
    power = (coarse ** 2).sum(axis=1) + 1e-6
    first, last = centres if centres is not None else (0, n)
    out: list[tuple[int, int]] = []
    for h in scales:
        lo, hi = max(0, first - h), min(n - 2 * h, last - h + 1)  # window starts lo .. hi - 1
        if hi <= lo:
            continue
        ia, im, ib = slice(lo, hi), slice(lo + h, hi + h), slice(lo + 2 * h, hi + 2 * h)
        a, m, b = coarse[ia], coarse[im], coarse[ib]
        change = np.abs(b - a).mean(axis=1)
        residual = np.abs(m - 0.5 * (a + b)).mean(axis=1)
        # one picture at two brightnesses: b is close to k * a (or a to k * b)
        ab = (a * b).sum(axis=1)
        gain = np.minimum(np.abs(b - (ab / power[ia])[:, None] * a).mean(axis=1),
                          np.abs(a - (ab / power[ib])[:, None] * b).mean(axis=1))
        dip = bright[im] < np.minimum(bright[ia], bright[ib]) - 8.0
        hit = ((change >= 255.0 * min_change) & (residual <= max_residual * change)
               & (gain > 0.5 * change) & ~black[ia] & ~black[ib] & ~black[im] & ~dip)
        out.extend((lo + int(c), lo + int(c) + 2 * h) for c in np.flatnonzero(hit))
    return out


@dataclass
class _Verdict:
    """What the network said about frames ``lo .. lo + len(single) - 1``."""

    lo: int
    single: np.ndarray
    found: list[Transition]

    def covers(self, a: int, b: int) -> bool:
        return self.lo <= a and b < self.lo + len(self.single)

    def peak(self, a: int, b: int) -> float:
        return float(self.single[max(0, a - self.lo):max(0, b - self.lo + 1)].max(initial=0.0))


class HybridDetector:
    """Built-in detector plus TransNetV2 on proposed regions (see the module docstring)."""

    name = "hybrid"

    def __init__(self, builtin: BuiltinDetector | None = None, *, model_path: str | None = None,
                 device: str = "auto", threads: int = 1, threshold: float = 0.5,
                 context: int = 10, min_change: float = 0.1, max_residual: float = 0.25,
                 sure: float = 2.3, veto: float = 0.2, slow: int = 2) -> None:
        self.builtin = builtin or BuiltinDetector()
        self.model_path, self.device, self.threads = model_path, device, threads
        self.threshold = threshold
        self.context = max(4, context)
        self.min_change, self.max_residual = min_change, max_residual
        self.sure = sure  # built-in cuts scoring below sure x its threshold are verified ...
        self.veto = veto  # ... and dropped when the network's peak there is below veto
        self.slow = max(1, slow)  # the second look's frame step (1: none)
        self._model: TransNetModel | None = None
        self._max_region = 96  # longer proposals are read in pieces
        self._settle = max(_SCALES[-1] + self.builtin.max_gradual_frames + 4 * 16 + _BATCH,
                           self.slow * self.context)
        self._ring = (self._max_region + 2 * self.slow * self.context + self._settle
                      + 2 * _BATCH + (self.builtin.max_gradual_frames if self.slow > 1 else 0))
        self._frames: np.ndarray | None = None  # ring of analysis frames, allocated on frame 1
        self._coarse = np.zeros((self._ring, 16 * 9 * 3), np.float32)
        self.first, self._last, self._seen = 0, -1, -1  # frames with features: first .. _last
        self._next_centre = 0  # first mix-window centre not yet tested
        self._seen_cuts = self._seen_graduals = 0  # built-in decisions already proposed
        self._proposed: list[tuple[int, int]] = []  # spans waiting to be read
        self._verdicts: list[_Verdict] = []
        self.model_frames = 0  # frames the network read (its cost), context included

    # -- streaming ------------------------------------------------------------------------

    def setup(self) -> None:
        """Load the network now (else on the first proposal)."""
        if self._model is None:
            self._model = load_model(self.model_path, self.device, self.threads)

    def process(self, index: int, frame: np.ndarray) -> list[Transition]:
        """Take frame ``index``; every transition is reported by :meth:`finish`."""
        if self._seen < 0:
            self.first, self._last = index, index - 1
            self._next_centre = index
        if self._frames is None or self._frames.shape[1:] != frame.shape:
            self._frames = np.zeros((self._ring, *frame.shape), np.uint8)  # (a size change
        self._frames[index % self._ring] = frame  # mid-stream is rare; its past is lost)
        self._seen = index
        self.builtin.process(index, frame)
        if index - self._last >= _BATCH:
            self._flush()
        return []

    def finish(self) -> list[Transition]:
        """The stream ended: read the last proposals and return every transition."""
        ours = self.builtin.finish()
        self._flush()
        self._propose(final=True)
        return self._fuse(ours)

    # -- internals ------------------------------------------------------------------------

    def _flush(self) -> None:
        """Take the built-in detector's features of the frames it has batched since."""
        for i in range(self._last + 1, self._seen + 1):
            c = self.builtin.coarse(i)
            if c is None:  # not yet featured by the built-in detector (its batch is open)
                break
            self._coarse[i % self._ring] = c
            self._last = i
        self._propose()

    def _dark(self, i: int) -> bool:
        return self.builtin.is_black(i)

    def _fade_part(self, g: Transition) -> bool:
        """A built-in gradual transition that is (part of) a fade through black."""
        return g.kind == "fade" or any(self._dark(i) for i in range(g.start_frame - 3,
                                                                     g.end_frame + 4))

    def _window(self, lo: int, hi: int) -> np.ndarray:
        """Indices into the ring of frames ``lo .. hi``, the stream's ends repeated."""
        return self._window_at(np.arange(lo, hi + 1))

    def _window_at(self, frames: np.ndarray) -> np.ndarray:
        """Indices into the ring of ``frames``, the stream's ends repeated."""
        idx = np.clip(frames, max(self.first, self._last - self._ring + 1), self._last)
        return idx % self._ring

    def _propose(self, final: bool = False) -> None:
        """Collect what the frames so far propose, and read the regions that are settled."""
        h, last = _SCALES[-1], self._last
        upto = last if final else last - h
        if upto >= self._next_centre:
            lo = max(self.first, self._next_centre - h, last - self._ring + 1)
            windows = mix_proposals(self._coarse[self._window(lo, last)], self.min_change,
                                    self.max_residual, centres=(self._next_centre - lo, upto - lo))
            centres = {lo + (a + b) // 2 for a, b in windows}  # the middle of a mix; the
            self._proposed += [(c - _PAD, c + _PAD) for c in sorted(centres)  # network's
                               if self._next_centre <= c <= upto]  # context shows the rest
            self._next_centre = upto + 1
        cuts, graduals = self.builtin.cuts, self.builtin.graduals
        floor = self.sure * self.builtin.threshold
        self._proposed += [(t - 1, t) for t, s in cuts[self._seen_cuts:] if s < floor]
        self._proposed += [(g.start_frame, g.end_frame) for g in graduals[self._seen_graduals:]
                           if not self._fade_part(g)]
        self._seen_cuts, self._seen_graduals = len(cuts), len(graduals)
        self._read(last if final else last - self._settle)

    def _read(self, settled: int) -> None:
        """Run the network on the merged proposals that end before ``settled``."""
        spans = sorted(self._proposed)
        regions: list[list[int]] = []
        for a, b in spans:
            if regions and a <= regions[-1][1] + self.context and \
                    b - regions[-1][0] <= self._max_region:
                regions[-1][1] = max(regions[-1][1], b)
            else:
                regions.append([a, b])
        keep: list[tuple[int, int]] = []
        for lo, hi in regions:
            if hi <= settled:
                self._verdict(lo, hi)
            else:
                keep.append((lo, hi))
        self._proposed = keep

    def _look(self, lo: int, hi: int, step: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The network on every ``step``-th frame from ``lo - step * context`` to ``hi + step *
        context``: the frames kept (those with at least half the context on each side) and
        their ``single`` and ``many`` scores."""
        c, m = self.context, self.context // 2
        at = np.arange(lo - step * c, hi + step * c + 1, step)
        small = to_model_frames(self._frames[self._window_at(at)])  # type: ignore[index]
        single, many = self._model.run(small[None])  # type: ignore[union-attr]
        self.model_frames += len(at)
        inner = slice(c - m, len(at) - (c - m))
        keep = (at[inner] >= self.first) & (at[inner] <= self._last)
        return at[inner][keep], single[0, inner][keep], many[0, inner][keep]

    def _found(self, at: np.ndarray, s: np.ndarray, p: np.ndarray) -> list[Transition]:
        """Gradual transitions in the scores ``s``, ``p`` of frames ``at`` (evenly spaced)."""
        if len(at) == 0:
            return []
        step = int(at[1] - at[0]) if len(at) > 1 else 1
        first = int(at[0])

        def frame(j: int) -> int:  # (one step past either end for an extent reaching it)
            return first + j * step

        got = transitions_from_scores(s, p, 0, self.threshold, lambda j: self._dark(frame(j)),
                                      extent=0.5 * self.threshold)
        out = [Transition(t.kind, frame(t.start_frame), frame(t.end_frame), t.score)
               for t in got]
        return [t for t in out if t.end_frame - t.start_frame > 1 and not self._flash(t)]

    def _verdict(self, lo: int, hi: int) -> None:
        self.setup()
        at, s, p = self._look(lo, hi, 1)
        if len(at) == 0:
            return
        found = self._found(at, s, p)
        if not found and self.slow > 1 and hi - lo > 1:  # (not a lone cut's check)
            # Nothing at the source's rate. TransNetV2 learned transitions of the lengths
            # editors use at 25-30 fps; a 1-2 s dissolve at 50-60 fps, or a long one at 25,
            # changes too slowly per frame for it. Read every ``slow``-th frame: the same
            # dissolve then looks as long as those it learned.
            at2, s2, found = self._slow_look(lo, hi)
            if len(at2) > 1:  # what the fusion's vetoes read: the higher of the two looks
                s = np.maximum(s, np.interp(at, at2, s2).astype(np.float32))
        self._verdicts.append(_Verdict(int(at[0]), s.copy(), found))

    def _slow_look(self, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray, list[Transition]]:
        """The look at every ``slow``-th frame. A slow transition proposed by its middle may
        reach past what was read: while a found extent touches an end of the look, the look
        is widened on that side (by at most ``max_gradual_frames`` in all)."""
        k, room = self.slow, self.builtin.max_gradual_frames
        lo0, hi0 = lo, hi
        while True:
            at, s, p = self._look(lo, hi, k)
            found = self._found(at, s, p)
            if len(at) < 2:
                return at, s, found
            grow = max(k * self.context, room // 2)
            left = any(t.start_frame < at[0] + k for t in found) and at[0] > self.first
            right = any(t.end_frame > at[-1] - k for t in found) and at[-1] < self._last
            new_lo = max(lo0 - room, lo - grow) if left else lo
            new_hi = min(hi0 + room, hi + grow) if right else hi
            if (new_lo, new_hi) == (lo, hi):
                return at, s, found
            lo, hi = new_lo, new_hi

    def _flash(self, t: Transition) -> bool:
        """The picture after ``t`` was already there just before it: a flash or a lighting
        change that came back, not a new shot."""
        after = self._coarse[self._window(t.end_frame, t.end_frame + 2)]
        before = self._coarse[self._window(t.start_frame - 4, t.start_frame)]
        gap = np.abs(after[:, None, :] - before[None, :, :]).mean(axis=2).min()
        return bool(gap < 0.5 * self.min_change * 255.0)

    def _fuse(self, builtin: list[Transition]) -> list[Transition]:
        verdicts = sorted(self._verdicts, key=lambda v: v.lo)
        starts = [v.lo for v in verdicts]
        model = sorted((t for v in verdicts for t in v.found), key=lambda t: t.start_frame)
        model_starts = [t.start_frame for t in model]
        longest = max((t.end_frame - t.start_frame for t in (*model, *builtin)), default=1)

        def verdict_on(a: int, b: int) -> _Verdict | None:
            i = bisect_right(starts, a)  # regions overlap little: the last few that start
            return next((v for v in reversed(verdicts[max(0, i - 4):i]) if v.covers(a, b)),
                        None)  # before ``a``

        def overlapping(t: Transition, among: list[Transition], at: list[int]) -> bool:
            lo, hi = bisect_left(at, t.start_frame - longest), bisect_left(at, t.end_frame)
            return any(t.start_frame < m.end_frame for m in among[lo:hi])

        floor = self.sure * self.builtin.threshold
        out: list[Transition] = []
        for t in builtin:
            if t.kind == "cut" and t.score < floor:
                v = verdict_on(t.start_frame - 2, t.end_frame + 1)
                if v is not None and v.peak(t.start_frame - 2, t.end_frame + 1) < self.veto:
                    continue  # the network is sure there is no transition there
            elif t.kind == "dissolve":
                mid = (t.start_frame + t.end_frame) // 2
                v = verdict_on(mid - 2, mid + 2)
                if v is not None and not overlapping(t, model, model_starts) and \
                        v.peak(t.start_frame, t.end_frame) < self.veto:
                    continue  # the network read it and is sure there is nothing
            out.append(t)
        kept = [t.start_frame for t in out]  # sorted, as the built-in detector's list is
        graduals = [t for t in out if t.kind != "cut"]
        at = [t.start_frame for t in graduals]
        # a network transition overlapping a built-in dissolve or fade joins it (the merge
        # below takes both spans: the rules' ends drift on a long dissolve, the network's on
        # a short one); one overlapping only a cut is left out, the cut stands
        out += [m for m in model if overlapping(m, graduals, at) or
                not overlapping(m, out, kept)]
        out.sort(key=lambda t: (t.start_frame, t.end_frame))
        merged: list[Transition] = []
        for t in out:  # overlapping spans (a built-in and a network dissolve): one transition
            prev = merged[-1] if merged else None
            if prev is not None and t.start_frame < prev.end_frame:
                lo, hi = prev.start_frame, max(prev.end_frame, t.end_frame)
                kind = ("fade" if "fade" in (prev.kind, t.kind)
                        or any(self._dark(i) for i in range(lo + 1, hi)) else "dissolve")
                merged[-1] = Transition(kind, lo, hi, max(prev.score, t.score))
                continue
            merged.append(t)
        return chain_fades(merged, self._dark, MAX_BLACK)
