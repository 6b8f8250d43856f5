"""Cutting clips out of a source: the entry point for every cut mode (``cfg.mode``).

- ``exact``: :mod:`clipfactory.media.smartcut` (whole GOPs copied, edges re-encoded), which
  hands sources it cannot splice safely to :mod:`clipfactory.media.reencode`.
- ``keyframe``: :mod:`clipfactory.media.smartcut` copying whole GOPs only.
- ``transcode``: :mod:`clipfactory.media.reencode` with the configured target.

All modes cut every span of one source in one open and one forward pass over its packets
(seeking only across gaps), write each clip to a hidden temporary file renamed into place when
complete, and report per-span failures as results with ``error`` set and no file left behind.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from clipfactory.config import CutConfig
from clipfactory.media.cutresult import CutResult
from clipfactory.records import Span

__all__ = ["CutResult", "cut_clips"]


def cut_clips(source: str, spans: Sequence[Span], out_paths: Sequence[str], *,
              frame_pts: Sequence[int] | np.ndarray | None, rotation: int = 0,
              cfg: CutConfig | None = None, threads: int = 1,
              interlaced: bool = False) -> list[CutResult]:
    """Cut ``spans`` of ``source`` into ``out_paths`` (same order), as ``cfg.mode`` says.

    ``frame_pts[i]`` is the pts of decoded frame ``i`` from the analysis pass (None: the
    stream has no usable pts; exact mode then re-encodes, counting frames). ``rotation`` is
    the source's display rotation (counter-clockwise degrees, as ``VideoInfo.rotation``).
    ``threads`` sets encoder and decoder threads unless ``cfg.threads`` > 0. A source that
    cannot be opened raises :class:`~clipfactory.errors.MediaError`. ``interlaced``: the
    analysis pass found the source's frames interlaced; ``cfg.deinterlace`` says what follows.
    """
    from clipfactory.media import reencode, smartcut

    cfg = cfg or CutConfig()
    if len(spans) != len(out_paths):
        raise ValueError(f"{len(spans)} spans but {len(out_paths)} output paths")
    deinterlace = cfg.deinterlace == "always" or (cfg.deinterlace == "auto" and interlaced)
    if cfg.mode == "transcode":
        return reencode.reencode_clips(source, spans, out_paths, frame_pts=frame_pts,
                                       rotation=rotation, cfg=cfg, threads=threads,
                                       deinterlace=deinterlace)
    return smartcut.smart_cut(source, spans, out_paths, frame_pts=frame_pts, rotation=rotation,
                              cfg=cfg, threads=threads, deinterlace=deinterlace)
