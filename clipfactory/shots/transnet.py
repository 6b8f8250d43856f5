"""TransNetV2 (Souček & Lokoč, 2020) on every frame, as a shot detector (``transnet``).

The network runs through onnxruntime from the ONNX file clipfactory ships
(:mod:`clipfactory.shots.learned`), so it needs neither torch nor a download. The detector
sees the same small frames as every other detector (one decode pass), shrinks each to the
network's 48x27 input, and runs the network exactly as its authors do: windows of 100 frames
every 50, the first and last frame repeated 25 times at the ends, the
middle 50 predictions of each window kept. Windows are batched; only the frames of the windows
not yet run are held. CPU by default, CUDA when present (``device: auto``).

The network gives two scores per frame: "a transition is here" (single-frame head, peaks in
the middle of a transition) and "this frame is part of a transition" (all-frames head, covers
a gradual transition). Each run of the first above the threshold is one transition; its extent
comes from the second. The network does not name types: a transition of one frame is a cut,
one through black frames is a fade, others are dissolves. A fade-out and fade-in through
black, which the network sees as two transitions, are joined into one fade.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable

import numpy as np

from clipfactory.records import Transition
from clipfactory.shots.gradual import BLACK_LUMA, BLACK_SPREAD, MAX_BLACK, chain_fades
from clipfactory.shots.learned import (
    TransNetModel,
    load_model,
    resize_matrix,
    to_model_frames,
)

__all__ = ["TransNetDetector", "resize_matrix", "transitions_from_scores"]

_WINDOW, _STEP, _PAD = 100, 50, 25
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)


class TransNetDetector:
    """TransNetV2 fed from the analysis pass (see the module docstring)."""

    name = "transnet"

    def __init__(self, threshold: float = 0.5, device: str = "auto", batch: int = 4,
                 model_path: str | None = None, threads: int = 1) -> None:
        self.threshold = threshold
        self.device = device
        self.batch = max(1, batch)
        self.model_path = model_path
        self.threads = threads
        self._model: TransNetModel | None = None
        self._buf: list[np.ndarray] = []  # 48x27 frames from index self._buf_first on
        self._buf_first = 0
        self._next_window = 0  # window k covers frames 50k-25 .. 50k+74, keeps 50k .. 50k+49
        self._first, self._last = 0, -1
        self._single, self._many = array("f"), array("f")
        self._luma, self._spread = array("f"), array("f")

    def setup(self) -> None:
        """Load the network (done on the first frame when not called before)."""
        if self._model is None:
            self._model = load_model(self.model_path, self.device, self.threads)

    def process(self, index: int, frame: np.ndarray) -> list[Transition]:
        """Take frame ``index``; every transition is reported by :meth:`finish`."""
        if self._last < 0:
            self.setup()
            self._first = self._buf_first = index
            self._last = index - 1
        if index != self._last + 1:
            raise ValueError(f"frames must arrive in order: got {index} after {self._last}")
        self._last = index
        small = self._shrink(frame)
        luma = small.astype(np.float32) @ _LUMA
        self._luma.append(float(luma.mean()))
        self._spread.append(float(luma.std()))
        self._buf.append(small)
        ready = (self._last - self._first - (_WINDOW - _PAD - 1)) // _STEP + 1  # windows whose
        if ready - self._next_window >= self.batch:  # last frame has arrived
            self._run(ready)
        return []

    def finish(self) -> list[Transition]:
        """Run the windows left (the last frame repeated past the end) and return the
        transitions."""
        n = self._last - self._first + 1
        if n <= 0:
            return []
        self._run((n + _STEP - 1) // _STEP)
        return self._transitions()

    # -- internals ------------------------------------------------------------------------

    def _shrink(self, frame: np.ndarray) -> np.ndarray:
        return to_model_frames(frame[None])[0]

    def _frame(self, i: int) -> np.ndarray:
        """Frame ``i`` relative to the first, the ends repeated as padding."""
        i = min(max(i, 0), self._last - self._first)
        return self._buf[i + self._first - self._buf_first]

    def _run(self, upto: int) -> None:
        while self._next_window < upto:
            ks = range(self._next_window, min(upto, self._next_window + self.batch))
            batch = np.stack([np.stack([self._frame(_STEP * k - _PAD + j) for j in range(_WINDOW)])
                              for k in ks])
            single, many = self._model.run(np.ascontiguousarray(batch))  # type: ignore[union-attr]
            single, many = single[:, _PAD:_PAD + _STEP], many[:, _PAD:_PAD + _STEP]
            n = self._last - self._first + 1
            for row, k in enumerate(ks):
                keep = min(_STEP, n - _STEP * k)
                self._single.extend(single[row, :keep].tolist())
                self._many.extend(many[row, :keep].tolist())
            self._next_window = ks[-1] + 1
            keep_from = self._first + max(0, _STEP * self._next_window - _PAD)
            drop = min(keep_from - self._buf_first, len(self._buf) - 1)  # the last frame pads
            if drop > 0:
                del self._buf[:drop]
                self._buf_first += drop

    def _dark(self, i: int) -> bool:
        k = i - self._first
        if k < 0 or k >= len(self._luma):
            return True
        return self._luma[k] <= BLACK_LUMA and self._spread[k] <= BLACK_SPREAD

    def _transitions(self) -> list[Transition]:
        return transitions_from_scores(np.asarray(self._single), np.asarray(self._many),
                                       self._first, self.threshold, self._dark)


def transitions_from_scores(single: np.ndarray, many: np.ndarray, first: int, threshold: float,
                            dark: Callable[[int], bool], extent: float | None = None
                            ) -> list[Transition]:
    """Transitions from TransNetV2's per-frame probabilities of frames ``first, first + 1,
    ...``: each run of ``single`` above ``threshold`` is one transition, its extent the run of
    ``many`` above ``extent`` (default: ``threshold``) around the run; one frame is a cut, an
    extent through a ``dark`` frame a fade, others dissolves. A fade-out and fade-in through
    black become one fade."""
    extent = threshold if extent is None else extent
    above = single > threshold
    out: list[Transition] = []
    i, n = 0, len(single)
    while i < n:
        if not above[i]:
            i += 1
            continue
        j = i
        while j + 1 < n and above[j + 1]:
            j += 1
        peak = i + int(np.argmax(single[i:j + 1]))
        a, b = i, j
        while a > 0 and many[a - 1] > extent:
            a -= 1
        while b + 1 < n and many[b + 1] > extent:
            b += 1
        f = first
        if b - a <= 1:  # the network marks the last frame of the outgoing shot
            out.append(Transition("cut", f + peak, f + peak + 1, round(float(single[peak]), 4)))
        else:
            s, e = f + a - 1, f + b + 1
            kind = "fade" if any(dark(t) for t in range(s + 1, e)) else "dissolve"
            out.append(Transition(kind, s, e, round(float(single[peak]), 4)))
        i = j + 1
    merged: list[Transition] = []
    for t in out:  # two peaks inside one all-frames extent: one transition
        prev = merged[-1] if merged else None
        if prev is not None and t.start_frame < prev.end_frame - 1:
            kind = "fade" if "fade" in (prev.kind, t.kind) else "dissolve"
            merged[-1] = Transition(kind, prev.start_frame, max(prev.end_frame, t.end_frame),
                                    max(prev.score, t.score))
            continue
        merged.append(t)
    return chain_fades(merged, dark, MAX_BLACK)
