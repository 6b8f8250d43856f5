"""The text-overlay filter in the worker: a few full-resolution frames of each clip the cheap
filters kept, grabbed from the source in one pass (:func:`~clipfactory.media.grab.grab_frames`),
scored by :func:`~clipfactory.filters.text_overlay.overlay_score`.

Every clip looked at gets ``scores["text.area"]`` (share of the frame covered by text that
stays in place) and ``scores["text.any_area"]`` (any text, scene text included); a clip whose
persistent text covers at least ``text_min_area`` is dropped as ``text_overlay``.
"""

from __future__ import annotations

from clipfactory.config import FilterConfig
from clipfactory.media.analyse import Signals
from clipfactory.media.grab import grab_frames
from clipfactory.records import ClipRecord, VideoInfo

__all__ = ["text_overlay_filter"]


def text_overlay_filter(info: VideoInfo, sig: Signals, clips: list[ClipRecord],
                        cfg: FilterConfig, threads: int = 1) -> None:
    """Score and maybe drop the candidate clips of one video (in place)."""
    from clipfactory.filters.text_overlay import TextDetector, is_overlay, overlay_score

    todo = [c for c in clips if c.state == "candidate"]
    if not todo:
        return
    k = cfg.text_frames
    wanted: list[float] = []
    for c in todo:
        n = c.end_frame - c.start_frame
        idx = sorted({c.start_frame + min(n - 1, int((i + 0.5) * n / k)) for i in range(k)})
        wanted += [float(sig.times[i]) for i in idx]
        c.extra["_text_n"] = len(idx)
    frames = grab_frames(info.path, wanted, max_side=cfg.text_max_side,
                         rotation=info.rotation, threads=threads)
    detector = TextDetector(max_side=cfg.text_max_side)
    at = 0
    for c in todo:
        n = c.extra.pop("_text_n")
        got = [f for f in frames[at:at + n] if f is not None]
        at += n
        if len(got) < 2:
            continue  # nothing to compare: no decision, no score
        score = overlay_score(got, detector)
        c.scores["text.area"] = round(float(score.area), 5)
        c.scores["text.any_area"] = round(float(score.any_text_area), 5)
        if is_overlay(score, cfg.text_min_area):
            c.drop("filter", "text_overlay")
