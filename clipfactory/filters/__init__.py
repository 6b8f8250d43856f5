"""Clip filters on analysis signals: size, darkness, motion, sharpness."""

from __future__ import annotations

from clipfactory.config import FilterConfig
from clipfactory.filters.base import ClipSignals, Filter, clip_scores
from clipfactory.filters.blur import BlurFilter
from clipfactory.filters.dark import DarkFilter
from clipfactory.filters.size import SizeFilter
from clipfactory.filters.static import StaticFilter

__all__ = ["ClipSignals", "Filter", "build_filters", "check_filters", "clip_scores",
           "first_rejection"]


def check_filters(cfg: FilterConfig) -> None:
    """Load what an optional filter needs now, so a missing extra or model stops the run
    before it starts (:class:`~clipfactory.filters.text_overlay.TextModelError`)."""
    if cfg.enabled and cfg.text_overlay:
        from clipfactory.filters.text_overlay import TextDetector

        TextDetector(max_side=cfg.text_max_side)


def build_filters(cfg: FilterConfig) -> list[Filter]:
    """The filters in the order they are tried (cheapest and most decisive first)."""
    return [
        SizeFilter(cfg.min_side),
        DarkFilter(cfg.min_brightness, cfg.max_dark_fraction, cfg.black_level),
        StaticFilter(cfg.min_motion, cfg.min_camera_motion, cfg.min_object_motion),
        BlurFilter(cfg.min_sharpness),
    ]


def first_rejection(filters: list[Filter], sig: ClipSignals) -> str | None:
    """The reason of the first filter that drops the clip, or None when all keep it."""
    for f in filters:
        reason = f.check(sig)
        if reason is not None:
            return reason
    return None
