"""Drop clips whose smaller display side is below a minimum."""

from __future__ import annotations

from dataclasses import dataclass

from clipfactory.filters.base import ClipSignals

__all__ = ["SizeFilter"]


@dataclass(frozen=True)
class SizeFilter:
    min_side: int = 64
    name: str = "size"

    def check(self, sig: ClipSignals) -> str | None:
        return "too_small" if min(sig.width, sig.height) < self.min_side else None
