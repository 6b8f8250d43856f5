"""Drop clips that are too dark on average or mostly black frames."""

from __future__ import annotations

from dataclasses import dataclass

from clipfactory.filters.base import ClipSignals

__all__ = ["DarkFilter"]


@dataclass(frozen=True)
class DarkFilter:
    min_brightness: float = 20.0
    max_dark_fraction: float = 0.5
    black_level: float = 16.0
    name: str = "dark"

    def check(self, sig: ClipSignals) -> str | None:
        if float(sig.brightness.mean()) < self.min_brightness:
            return "too_dark"
        if float((sig.brightness < self.black_level).mean()) > self.max_dark_fraction:
            return "mostly_black"
        return None
