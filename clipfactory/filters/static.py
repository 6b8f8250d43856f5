"""Drop clips with (almost) no motion: still images, frozen frames, slides."""

from __future__ import annotations

from dataclasses import dataclass

from clipfactory.filters.base import ClipSignals

__all__ = ["StaticFilter"]


@dataclass(frozen=True)
class StaticFilter:
    min_motion: float = 0.5
    name: str = "static"

    def check(self, sig: ClipSignals) -> str | None:
        return "static" if float(sig.inner_motion.mean()) < self.min_motion else None
