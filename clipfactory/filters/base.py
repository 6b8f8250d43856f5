"""The filter contract: a filter looks at one clip's signals and keeps it or names a reason.

Filters run on the analysis signals before any clip is encoded, so a rejected clip costs no
encoding. Each filter is a small class with a ``name`` and ``check(signals) -> reason | None``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

__all__ = ["ClipSignals", "Filter", "clip_scores"]


@dataclass(frozen=True)
class ClipSignals:
    """The per-frame signals of one clip span, plus the clip's display size."""

    brightness: np.ndarray
    sharpness: np.ndarray
    motion: np.ndarray  # motion[0] compares with the frame before the clip and is ignored
    width: int
    height: int
    black_level: float = 16.0
    # per second, from clipfactory.media.motion.classify_clip; None where motion is unknown
    camera: float | None = None
    object: float | None = None

    @property
    def inner_motion(self) -> np.ndarray:
        return self.motion[1:] if self.motion.size > 1 else self.motion


class Filter(Protocol):
    """Keep (return None) or drop (return a reason code) a clip."""

    name: str

    def check(self, sig: ClipSignals) -> str | None: ...


def clip_scores(sig: ClipSignals) -> dict[str, float]:
    """Namespaced summary scores recorded for every clip, kept or dropped."""
    return {
        "brightness.mean": round(float(sig.brightness.mean()), 3),
        "dark.fraction": round(float((sig.brightness < sig.black_level).mean()), 4),
        "motion.mean": round(float(sig.inner_motion.mean()), 4),
        "sharpness.median": round(float(np.median(sig.sharpness)), 3),
    }
