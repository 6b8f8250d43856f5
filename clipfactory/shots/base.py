"""The shot-detector contract: fed small frames from the one analysis pass, returns transitions.

A detector never decodes anything itself. It sees every frame of the pass in order as a small
RGB ``uint8`` array (the analysis resolution, ~160 px wide) and reports transitions, possibly
with a delay (lookahead), and the rest when the pass ends.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from clipfactory.records import Transition

__all__ = ["ShotDetector", "merge_close_cuts"]


@runtime_checkable
class ShotDetector(Protocol):
    """Streaming shot-boundary detector."""

    name: str

    def process(self, index: int, frame: np.ndarray) -> list[Transition]:
        """Take frame ``index`` (RGB uint8, HxWx3); return transitions now decided."""
        ...

    def finish(self) -> list[Transition]:
        """The stream ended: return every transition not yet reported."""
        ...


def merge_close_cuts(cuts: list[tuple[int, float]], min_gap: int) -> list[tuple[int, float]]:
    """Of cuts ``(frame, score)`` closer than ``min_gap`` frames, keep only the stronger one."""
    kept: list[tuple[int, float]] = []
    for t, s in cuts:
        if kept and t - kept[-1][0] < min_gap:
            if s > kept[-1][1]:
                kept[-1] = (t, s)
            continue
        kept.append((t, s))
    return kept
