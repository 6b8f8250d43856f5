"""Typed configuration: one pydantic model per stage, YAML in and out.

The library takes these models (or plain keyword arguments); only the CLI reads files and
flags. Every field has a default, so an empty YAML file is a valid config.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "AnalysisConfig",
    "ClipConfig",
    "Config",
    "CutConfig",
    "DedupConfig",
    "FilterConfig",
    "IngestConfig",
    "ShardConfig",
    "ShotConfig",
    "load_config",
]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class IngestConfig(_Section):
    """What counts as a video file in a folder, and what is absurd."""

    extensions: list[str] = Field(
        default_factory=lambda: [
            ".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v", ".mpg", ".mpeg", ".ts", ".flv",
            ".wmv", ".3gp", ".ogv", ".mxf", ".m4a",
        ]
    )
    max_pixels: int = 8192 * 4352  # above 8K DCI is treated as absurd
    max_dimension: int = 16384
    max_duration_s: float = 24 * 3600.0


class AnalysisConfig(_Section):
    """The single decode pass: how small the analysis frames are, and decoder threads."""

    width: int = 160  # analysis frames are this wide (height keeps the aspect, even)
    max_height: int = 160  # cap for portrait / extreme aspect sources
    decode_threads: int = 0  # 0 = pick from cores and workers
    exact_hash: bool = True  # hash full-resolution decoded planes per frame (exact dedup)


class ShotConfig(_Section):
    """Hard-cut detection on the analysis frames."""

    detector: Literal["content"] = "content"
    threshold: float = 0.3  # absolute floor of the cut score (0..1)
    adaptive_ratio: float = 3.0  # cut score must exceed this multiple of recent activity
    window: int = 8  # frames of context on each side for the adaptive test
    flash_lookahead: int = 4  # frames checked for a return to the old shot (flash)
    min_shot_frames: int = 4  # two cuts closer than this keep only the stronger


class ClipConfig(_Section):
    """Turning shots into clips."""

    min_s: float = 2.0
    max_s: float = 60.0
    trim_frames: int = 0  # frames dropped at each shot edge (margin against soft boundaries)


class FilterConfig(_Section):
    """Signal thresholds; each filter drops a clip with its own reason."""

    enabled: bool = True
    min_brightness: float = 20.0  # mean luma (0-255) below this is too dark
    max_dark_fraction: float = 0.5  # drop when more than this share of frames is black
    black_level: float = 16.0  # a frame whose mean luma is below this counts as black
    min_motion: float = 0.5  # mean abs luma change per frame (0-255 scale) below this is static
    min_sharpness: float = 80.0  # median variance of the Laplacian (pooled luma) below: blurry
    min_side: int = 64  # clips whose smaller display side is below this are too small


class CutConfig(_Section):
    """How kept clips are encoded (v0: always re-encoded, frame-exact)."""

    codec: str = "libx264"
    preset: str = "veryfast"
    crf: int = 18
    pix_fmt: Literal["yuv420p"] = "yuv420p"
    threads: int = 0  # 0 = pick from cores and workers


class DedupConfig(_Section):
    """Exact (decoded content) and near-duplicate (perceptual hash) grouping."""

    enabled: bool = True
    exact: bool = True
    perceptual: bool = True
    phash_frames: int = 5  # frames sampled per clip
    max_hamming: int = 10  # per-frame hash distance (of 64 bits) that still counts as the same


class ShardConfig(_Section):
    """WebDataset shards."""

    max_count: int = 1000
    max_bytes: int = 1 << 30
    keep_staging: bool = False  # keep the staged clip files after they are sharded


class Config(_Section):
    """The whole run."""

    workers: int = 1
    video_timeout_s: float = 3600.0  # a video still running after this is failed (0 = never)
    skip: list[Literal["filters", "dedup"]] = Field(default_factory=list)
    ingest: IngestConfig = Field(default_factory=IngestConfig)
    analysis: AnalysisConfig = Field(default_factory=AnalysisConfig)
    shots: ShotConfig = Field(default_factory=ShotConfig)
    clips: ClipConfig = Field(default_factory=ClipConfig)
    filters: FilterConfig = Field(default_factory=FilterConfig)
    cut: CutConfig = Field(default_factory=CutConfig)
    dedup: DedupConfig = Field(default_factory=DedupConfig)
    shards: ShardConfig = Field(default_factory=ShardConfig)

    @property
    def filters_on(self) -> bool:
        return self.filters.enabled and "filters" not in self.skip

    @property
    def dedup_on(self) -> bool:
        return self.dedup.enabled and "dedup" not in self.skip

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


def load_config(path: str | Path | None = None, **overrides: object) -> Config:
    """Read a YAML config (or start from defaults) and apply top-level overrides."""
    data: dict = {}
    if path is not None:
        loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        if loaded is not None and not isinstance(loaded, dict):
            raise ValueError(f"{path}: a config file must hold a mapping, got {type(loaded).__name__}")
        data = loaded or {}
    data.update({k: v for k, v in overrides.items() if v is not None})
    return Config.model_validate(data)
