"""Shot and transition detection on the analysis frames."""

from clipfactory.config import ShotConfig
from clipfactory.shots.base import ShotDetector
from clipfactory.shots.content import ContentDetector

__all__ = ["ContentDetector", "ShotDetector", "make_detector"]


def make_detector(cfg: ShotConfig) -> ShotDetector:
    """Build the detector named in the config."""
    if cfg.detector == "content":
        return ContentDetector(
            threshold=cfg.threshold,
            adaptive_ratio=cfg.adaptive_ratio,
            window=cfg.window,
            flash_lookahead=cfg.flash_lookahead,
            min_shot_frames=cfg.min_shot_frames,
        )
    raise ValueError(f"unknown shot detector {cfg.detector!r}")
