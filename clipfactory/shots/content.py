"""A fast content-based hard-cut detector with an adaptive threshold and flash rejection.

Per frame it keeps two cheap features of the small analysis frame: a 32x18 colour thumbnail
and a 64-bin joint colour histogram. The frame-to-frame score mixes the thumbnail difference
(sensitive to any change) with the histogram difference (insensitive to motion). A cut at ``t``
needs (1) a score above an absolute floor, (2) a score well above the activity around it
(so fast motion and pans, which raise every score, do not fire), and (3) no return to the
previous picture within a few frames (so flashes and strobes do not fire).

Memory is bounded: only a ring of recent thumbnails is kept, plus one float per frame.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from clipfactory.records import Transition
from clipfactory.shots.base import merge_close_cuts

__all__ = ["ContentDetector", "frame_features"]

_THUMB = (18, 32)  # rows, cols


def _edges(n: int, bins: int) -> np.ndarray:
    return np.linspace(0, n, bins + 1).astype(np.int64)[:-1]


def frame_features(frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(thumbnail float32 18x32x3, normalised 64-bin colour histogram) of an RGB frame."""
    h, w = frame.shape[:2]
    rows = np.add.reduceat(frame.astype(np.float32), _edges(h, min(_THUMB[0], h)), axis=0)
    thumb = np.add.reduceat(rows, _edges(w, min(_THUMB[1], w)), axis=1)
    counts_r = np.diff(np.append(_edges(h, min(_THUMB[0], h)), h)).astype(np.float32)
    counts_c = np.diff(np.append(_edges(w, min(_THUMB[1], w)), w)).astype(np.float32)
    thumb /= counts_r[:, None, None] * counts_c[None, :, None]
    q = (frame >> 6).astype(np.int32)
    idx = (q[..., 0] << 4) | (q[..., 1] << 2) | q[..., 2]
    hist = np.bincount(idx.ravel(), minlength=64).astype(np.float32)
    hist /= max(float(hist.sum()), 1.0)
    return thumb, hist


def _distance(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]) -> float:
    """Frame distance in [0, 1]: mean of the scaled thumbnail and histogram differences."""
    pix = float(np.abs(a[0] - b[0]).mean()) / 255.0
    hist = 0.5 * float(np.abs(a[1] - b[1]).sum())
    # 0.15 of full scale is about where PySceneDetect's default content threshold sits
    return 0.5 * (min(1.0, pix / 0.15) + hist)


class ContentDetector:
    """Hard cuts from frame-to-frame content change (see the module docstring)."""

    name = "content"

    def __init__(self, threshold: float = 0.3, adaptive_ratio: float = 3.0, window: int = 8,
                 flash_lookahead: int = 4, min_shot_frames: int = 4) -> None:
        self.threshold = threshold
        self.adaptive_ratio = adaptive_ratio
        self.window = max(1, window)
        self.flash_lookahead = max(0, flash_lookahead)
        self.min_shot_frames = max(1, min_shot_frames)
        self._delay = max(self.window, self.flash_lookahead) + 1
        self._feats: deque[tuple[int, tuple[np.ndarray, np.ndarray]]] = deque(
            maxlen=self._delay + self.flash_lookahead + 2)
        self.scores: list[float] = []  # scores[t - first] = distance(frame t-1, frame t)
        self.first = 0  # index of the first frame seen (a span may start mid-video)
        self._cuts: list[tuple[int, float]] = []
        self._next = 1  # next frame index to decide on
        self._last_index = -1

    def process(self, index: int, frame: np.ndarray) -> list[Transition]:
        if self._last_index < 0:
            self.first, self._last_index, self._next = index, index - 1, index + 1
        if index != self._last_index + 1:
            raise ValueError(f"frames must arrive in order: got {index} after {self._last_index}")
        self._last_index = index
        feats = frame_features(frame)
        self.scores.append(_distance(self._feats[-1][1], feats) if self._feats else 0.0)
        self._feats.append((index, feats))
        while self._next <= index - self._delay:
            self._decide(self._next)
            self._next += 1
        return []

    def finish(self) -> list[Transition]:
        while self._next <= self._last_index:
            self._decide(self._next)
            self._next += 1
        return self._transitions()

    def _decide(self, t: int) -> None:
        first = self.first
        s = self.scores[t - first]
        if s < self.threshold:
            return
        lo, hi = max(first + 1, t - self.window), min(first + len(self.scores), t + self.window + 1)
        around = [self.scores[i - first] for i in range(lo, hi) if abs(i - t) > 1]
        activity = float(np.mean(around)) if around else 0.0
        if s < self.adaptive_ratio * activity:
            return
        if self._is_flash(t, s):
            return
        self._cuts.append((t, s))

    def _is_flash(self, t: int, score: float) -> bool:
        """True when the change at ``t`` is an interruption, not a new shot: the picture before
        ``t`` comes back within the lookahead (a flash starts), or the picture at ``t`` was
        already there just before the frame preceding it (a flash ends)."""
        feats = dict(self._feats)
        before, now = feats.get(t - 1), feats.get(t)
        if before is None or now is None:
            return False
        limit = min(0.5 * score, self.threshold)
        for k in range(1, self.flash_lookahead + 1):
            after, earlier = feats.get(t + k), feats.get(t - 1 - k)
            if after is not None and _distance(before, after) < limit:
                return True
            if earlier is not None and _distance(earlier, now) < limit:
                return True
        return False

    def _transitions(self) -> list[Transition]:
        kept = merge_close_cuts(self._cuts, self.min_shot_frames)
        return [Transition("cut", t - 1, t, round(s, 4)) for t, s in kept]
