"""Shot and transition detection on the analysis frames (see docs/shots.md)."""

from clipfactory.config import ShotConfig
from clipfactory.shots.base import ShotDetector
from clipfactory.shots.builtin import BuiltinDetector
from clipfactory.shots.content import ContentDetector
from clipfactory.shots.hybrid import HybridDetector

__all__ = ["BuiltinDetector", "ContentDetector", "HybridDetector", "ShotDetector",
           "check_detector", "make_detector"]

MODEL_DETECTORS = frozenset({"hybrid", "transnet"})  # detectors that load a network


def check_detector(cfg: ShotConfig) -> None:
    """Load the configured detector's network now, so that a missing or broken model file
    stops a run before it starts (:class:`~clipfactory.shots.learned.ModelError`, with the
    path and the reason), not once per video."""
    if cfg.detector in MODEL_DETECTORS:
        from clipfactory.shots.learned import load_model

        load_model(cfg.model or None, cfg.transnet_device, cfg.model_threads)


def make_detector(cfg: ShotConfig) -> ShotDetector:
    """Build the detector named in the config. ``hybrid`` and ``transnet`` load their network
    on first use (once per process), or in ``setup()``."""
    common = dict(threshold=cfg.threshold, adaptive_ratio=cfg.adaptive_ratio, window=cfg.window,
                  flash_lookahead=cfg.flash_lookahead, min_shot_frames=cfg.min_shot_frames)
    builtin = BuiltinDetector(**common, gradual=cfg.gradual, max_residual=cfg.max_residual,
                              max_gradual_frames=cfg.max_gradual_frames)
    if cfg.detector == "builtin":
        return builtin
    if cfg.detector == "hybrid":
        return HybridDetector(builtin, model_path=cfg.model or None, device=cfg.transnet_device,
                              threads=cfg.model_threads, threshold=cfg.transnet_threshold,
                              context=cfg.context, min_change=cfg.proposal_change,
                              max_residual=cfg.proposal_residual, sure=cfg.sure_cut,
                              veto=cfg.model_veto, slow=cfg.slow_step)
    if cfg.detector == "content":
        return ContentDetector(**common)
    if cfg.detector == "transnet":
        from clipfactory.shots.transnet import TransNetDetector

        return TransNetDetector(threshold=cfg.transnet_threshold, device=cfg.transnet_device,
                                batch=cfg.transnet_batch, model_path=cfg.model or None,
                                threads=cfg.model_threads)
    raise ValueError(f"unknown shot detector {cfg.detector!r}")
