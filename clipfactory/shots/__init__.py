"""Shot and transition detection on the analysis frames (see docs/shots.md)."""

from clipfactory.config import ShotConfig
from clipfactory.shots.base import ShotDetector
from clipfactory.shots.builtin import BuiltinDetector
from clipfactory.shots.content import ContentDetector

__all__ = ["BuiltinDetector", "ContentDetector", "ShotDetector", "make_detector"]


def make_detector(cfg: ShotConfig) -> ShotDetector:
    """Build the detector named in the config. ``transnet`` imports torch only here, and
    loads its network on the first frame (once per process)."""
    common = dict(threshold=cfg.threshold, adaptive_ratio=cfg.adaptive_ratio, window=cfg.window,
                  flash_lookahead=cfg.flash_lookahead, min_shot_frames=cfg.min_shot_frames)
    if cfg.detector == "builtin":
        return BuiltinDetector(**common, gradual=cfg.gradual, max_residual=cfg.max_residual,
                               max_gradual_frames=cfg.max_gradual_frames)
    if cfg.detector == "content":
        return ContentDetector(**common)
    if cfg.detector == "transnet":
        from clipfactory.shots.transnet import TransNetDetector

        return TransNetDetector(threshold=cfg.transnet_threshold, device=cfg.transnet_device,
                                batch=cfg.transnet_batch)
    raise ValueError(f"unknown shot detector {cfg.detector!r}")
