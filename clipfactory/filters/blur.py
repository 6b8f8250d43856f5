"""Drop blurry clips: the median variance of the Laplacian is below a floor."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from clipfactory.filters.base import ClipSignals

__all__ = ["BlurFilter"]


@dataclass(frozen=True)
class BlurFilter:
    min_sharpness: float = 80.0
    name: str = "blur"

    def check(self, sig: ClipSignals) -> str | None:
        return "blurry" if float(np.median(sig.sharpness)) < self.min_sharpness else None
