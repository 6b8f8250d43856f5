"""The unit of work: one input, from probe to staged clip files, in one process.

``process_video`` never raises for bad input: a :class:`MediaError` (or any unexpected error)
becomes the result's ``rejection`` with the stage and reason, and the caller records it. Clip
files are written under ``staging/`` with deterministic names, so redoing a video after a crash
overwrites its own files and nothing is doubled.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
import traceback
from pathlib import Path
from typing import Any

import av
import numpy as np

from clipfactory.config import Config
from clipfactory.errors import MediaError, storage_refusal, storage_refused
from clipfactory.exec.cores import resolve_workers, thread_split, usable_cpus
from clipfactory.filters import ClipSignals, build_filters, clip_scores, first_rejection
from clipfactory.filters.text_check import text_overlay_filter
from clipfactory.ids import clip_key, safe_key, short_hash
from clipfactory.media import stagetime
from clipfactory.media.analyse import Signals, analyse
from clipfactory.media.cut import CutResult, cut_clips
from clipfactory.media.motion import classify_clip
from clipfactory.media.probe import probe
from clipfactory.media.streams import display_rotation, pixel_aspect
from clipfactory.memory import Usage, peak_rss_mib, release_memory
from clipfactory.plan import (
    damage_transitions,
    plan_spans,
    plan_windows,
    shots_from_transitions,
    span_seconds,
)
from clipfactory.records import ClipRecord, Rejection, SourceItem, Span, VideoInfo, VideoResult
from clipfactory.redact import public_url, redact_text
from clipfactory.shots import make_detector
from clipfactory.shots.learned import ModelError
from clipfactory.sources.reader import REMOTE_PREFIXES

__all__ = ["clip_exact_hash", "clip_format", "clip_phashes", "discard_clips", "file_sha256",
           "process_video"]

log = logging.getLogger("clipfactory.worker")


def file_sha256(path: str, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file's bytes, streamed."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def clip_exact_hash(sig: Signals, span: Span) -> str:
    """Hash of the clip's decoded content: the per-frame full-resolution digests in order."""
    return hashlib.blake2b(sig.digest[span.start_frame:span.end_frame].tobytes(),
                           digest_size=16).hexdigest()


def clip_phashes(sig: Signals, span: Span, k: int) -> list[int]:
    """Perceptual hashes of ``k`` frames at fixed relative positions inside the span."""
    if k <= 0 or span.num_frames <= 0:
        return []
    pos = np.linspace(0, span.num_frames - 1, k + 2)[1:-1] if span.num_frames > 2 else [0] * k
    return [int(sig.phash[span.start_frame + round(float(p))]) for p in pos]


def _threads(cfg_threads: int, workers: int | str) -> int:
    """Decoder/encoder threads of one video: the config's, else this machine's usable CPUs
    split between the workers (clipfactory.exec.cores.thread_split)."""
    if cfg_threads > 0:
        return cfg_threads
    return thread_split(usable_cpus(), resolve_workers(workers))


def clip_format(path: str) -> tuple[str | None, str | None]:
    """The pixel format a clip file's video stream declares, and its pixel aspect as
    ``"64:45"`` (None: square); the index and the card report them. A clip that keeps its
    source's display matrix (``cut.mode: keyframe``) turned a quarter has its aspect turned
    too, as its ``width`` and ``height`` are: shown width = ``width`` x ``sar``."""
    try:
        with av.open(path) as container:
            stream = container.streams.video[0]
            sar = pixel_aspect(stream)
            if sar is not None:  # anamorphic (rare): is the picture shown turned?
                first = next(container.decode(stream), None)
                if first is not None and display_rotation(first) in (90, 270):
                    sar = 1 / sar
            return (stream.codec_context.pix_fmt or None,
                    f"{sar.numerator}:{sar.denominator}" if sar else None)
    except (av.FFmpegError, OSError, IndexError):
        return None, None


def discard_clips(result: VideoResult) -> None:
    """Drop a result's clips and delete their staged files (the input is being rejected)."""
    for clip in result.clips:
        if clip.staged_path:
            Path(clip.staged_path).unlink(missing_ok=True)
    result.clips = []


def process_video(item: SourceItem, cfg: Config, staging: str | Path) -> VideoResult:
    """Process one input end to end (see the module docstring)."""
    wall0, cpu0, usage = time.perf_counter(), time.process_time(), Usage()
    result = VideoResult(item=item)
    thread0 = time.thread_time_ns()
    try:
        with stagetime.measure(cfg.stage_times) as clock:
            _process(item, cfg, Path(staging), result)
    except Exception as e:
        what = storage_refusal(e)
        if what is not None:  # the output's storage, not this input: the run stops
            result.halt = (what, f"{type(e).__name__}: {e}")
        elif isinstance(e, MediaError):
            result.rejection = Rejection(item.item_key, item.source, e.stage, e.reason,
                                         e.detail, video_id=result.video_id or item.id)
        else:  # a bug or an input nobody foresaw: record it, never kill the run
            log.error("unexpected error on %s:\n%s", item.source, traceback.format_exc())
            result.rejection = Rejection(item.item_key, item.source, "internal",
                                         "unexpected_error", f"{type(e).__name__}: {e}",
                                         video_id=result.video_id)
    if result.rejection is not None or result.halt is not None:
        discard_clips(result)
    release_memory()  # before the next video: cycles of decoded frames, freed heap
    if clock.enabled:  # what no stage claimed (planning, filters, records) is "other"
        clock.charge_rest(thread0)
        result.cpu_split = clock.seconds()
    result.wall_s = time.perf_counter() - wall0
    result.cpu_s = time.process_time() - cpu0  # the split's time and the release included
    result.sys_s, result.page_faults = usage.since()
    result.peak_rss_mib = peak_rss_mib()
    return result


def file_state(path: str) -> str:
    """``"size:mtime_ns:ctime_ns"`` of the file at ``path`` (links followed), ``"-"`` when
    there is none: what tells, on a later run, that a file which failed has changed since
    (written, replaced, or given read permission: a chmod changes the ctime)."""
    try:
        st = os.stat(path)
    except OSError:
        return "-"
    return f"{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}"


def _process(item: SourceItem, cfg: Config, staging: Path, result: VideoResult) -> None:
    path = item.local_path or item.source  # a fetched URL is read from its local copy
    if path.lower().startswith(REMOTE_PREFIXES):
        raise MediaError("ingest", "remote_source_unsupported",
                         "remote URLs are fetched by the pipeline (clipfactory.fetch); this "
                         "item reached the worker without a local copy")
    result.file_state = file_state(path)
    t = time.perf_counter()
    clock = stagetime.active()
    mark = clock.now()
    info = probe(path, cfg.ingest)
    result.info = info
    result.source_sha256 = file_sha256(path)
    clock.lap("probe", mark)
    result.video_id = item.id if item.id is not None else result.source_sha256[:16]
    result.timings["probe"] = time.perf_counter() - t

    t = time.perf_counter()
    threads = _threads(cfg.analysis.decode_threads, cfg.workers)
    try:
        sig = analyse(info, cfg.analysis, make_detector(cfg.shots), start_s=item.start_s,
                      end_s=item.end_s, threads=threads)
    except ModelError as e:  # the shot model failed on this video: say so, the run goes on
        raise MediaError("analyse", "shot_model_failed", str(e)) from e
    release_memory()  # what the pass kept for reuse goes back before the cut allocates its own
    result.timings["analyse"] = time.perf_counter() - t
    result.decoded_frames = sig.frames
    result.decoder = sig.decoder
    first = int(np.argmax(sig.analysed)) if sig.analysed.any() else sig.frames
    if first >= sig.frames:
        raise MediaError("plan", "span_outside_video",
                         f"requested start {item.start_s}s is past the last decodable frame "
                         f"({sig.times[-1]:.2f}s)")
    result.analysed_s = _analysed_seconds(sig, first)
    if sig.decode_errors:
        result.warnings.append(f"{sig.decode_errors} packets failed to decode; damaged frames "
                               "are excluded from clips")
    if info.frames and sig.frames < 0.9 * info.frames and item.end_s is None:
        result.warnings.append(f"truncated: decoded {sig.frames} of {info.frames} frames the "
                               "container announces")

    transitions = sig.transitions + damage_transitions(sig.damaged)
    shots = shots_from_transitions(first, sig.frames, transitions, cfg.clips.gradual_margin)
    black = cfg.filters.black_level  # the index's dark.fraction is the dark filter's
    if item.spans:  # a manifest's spans are the only regions cut; one decode for them all
        planned, short_w = plan_windows(shots, sig.times, sig.fps, cfg.clips,
                                        [(a, b) for a, b, _ in item.spans], sig.end_time)
        clips = [_clip(item, info, sig, s, result, black, w) for s, w in planned]
        keys = {c.clip_id for c in clips}
        for s, w in short_w:
            clip = _clip(item, info, sig, s, result, black, w)
            if clip.clip_id not in keys:
                keys.add(clip.clip_id)
                clip.drop("plan", "too_short")
                clips.append(clip)
    else:
        spans, short = plan_spans(shots, sig.times, sig.fps, cfg.clips, sig.end_time)
        clips = [_clip(item, info, sig, s, result, black) for s in spans]
        for s in short:
            clip = _clip(item, info, sig, s, result, black)
            clip.drop("plan", "too_short")
            clips.append(clip)
    if cfg.filters_on:
        filters = build_filters(cfg.filters)
        for clip in clips:
            if clip.state == "candidate":
                sig_c = _clip_signals(sig, clip, cfg.filters.black_level)
                reason = first_rejection(filters, sig_c)
                if reason:
                    clip.drop("filter", reason)
        if cfg.filters.text_overlay:  # the costly check, on what the cheap ones kept
            t = time.perf_counter()
            text_overlay_filter(info, sig, clips, cfg.filters, threads)
            result.timings["text"] = time.perf_counter() - t
    result.clips = sorted(clips, key=lambda c: c.start_frame)
    t = time.perf_counter()
    mark = clock.now()
    _cut(info, sig, result.clips, staging, cfg, threads)
    clock.lap("mux_write", mark)  # less what the cutter's decoder and encoder moved out
    result.timings["cut"] = time.perf_counter() - t


def _analysed_seconds(sig: Signals, first: int) -> float:
    return float(sig.times[-1] - sig.times[first]) + 1.0 / sig.fps


def _clip_signals(sig: Signals, clip: ClipRecord, black_level: float) -> ClipSignals:
    sl = slice(clip.start_frame, clip.end_frame)
    cam, obj = clip.scores.get("motion.camera"), clip.scores.get("motion.object")
    return ClipSignals(sig.brightness[sl], sig.sharpness[sl], sig.motion[sl], clip.width,
                       clip.height, black_level, cam, obj)


def _camera_motion(sig: Signals, clip: ClipRecord, rotation: int) -> None:
    """Label the clip's camera motion (every clip, kept or dropped) and score it."""
    if sig.camera is None:
        return
    m = sig.camera[clip.start_frame + 1:clip.end_frame].astype(np.float64)  # not across the cut
    for _ in range(rotation // 90):  # into display orientation (np.rot90, counter-clockwise)
        m[:, 0], m[:, 1] = m[:, 1].copy(), -m[:, 0]
    cm = classify_clip(m, sig.fps, sig.times[clip.start_frame + 1:clip.end_frame])
    if cm.frames == 0:
        return
    clip.extra["camera_motion"] = cm.label
    clip.scores["motion.camera"] = round(cm.camera, 5)
    clip.scores["motion.object"] = round(cm.object, 5)


def cut_info(res: CutResult) -> dict[str, Any]:
    """What a clip's record keeps of its cut (``extra.cut``)."""
    return {"method": res.method, "copied_frames": res.copied_frames, "audio": res.audio,
            "codec": res.codec, "fallback": res.fallback, "note": res.note,
            "deinterlaced": res.deinterlaced}


def stage_clip(clip: ClipRecord, res: CutResult) -> None:
    """``clip`` is staged as the file ``res`` wrote: its path, size, frame size, hash, pixel
    format and pixel aspect (read back from the file), and rate and frame count where it was
    resampled. ``extra.cut`` must be set already."""
    clip.state = "staged"
    clip.staged_path = res.path
    clip.width, clip.height, clip.bytes = res.width, res.height, res.bytes
    if res.fps is not None:  # resampled to a constant rate: the file's rate and frame count
        clip.fps, clip.file_frames = round(res.fps, 6), res.frames
    clip.file_sha256 = file_sha256(res.path)
    clip.extra["cut"]["pix_fmt"], clip.extra["cut"]["sar"] = clip_format(res.path)


def _clip(item: SourceItem, info: VideoInfo, sig: Signals, span: Span,
          result: VideoResult, black_level: float, window: int | None = None) -> ClipRecord:
    video_id = result.video_id or ""
    vkey = safe_key(video_id)
    if item.id is None and (item.start_s is not None or item.end_s is not None):
        vkey = f"{vkey}_{short_hash(item.item_key, 6)}"  # several spans of one file, no ids
    elif item.id is not None and item.item_key != f"id:{item.id}":
        # an id whose rows come back later in a manifest of a row per clip (``id:X#2``):
        # its clips are not the first group's, even where a span is listed again
        vkey = f"{vkey}_{short_hash(item.item_key, 6)}"
    start_s, end_s = span_seconds(sig.times, sig.fps, span, sig.end_time)
    key = clip_key(vkey, span.start_frame, span.end_frame)
    clip = ClipRecord(
        clip_id=key, key=key, item_key=item.item_key, video_id=video_id,
        source=public_url(item.source) or item.source,
        start_frame=span.start_frame, end_frame=span.end_frame, start_s=round(start_s, 6),
        end_s=round(end_s, 6), fps=round(sig.fps, 6),
        width=info.display_width - info.display_width % 2,
        height=info.display_height - info.display_height % 2,
        source_url=public_url(item.source_url), source_sha256=result.source_sha256,
        license=item.license,
        attribution=item.attribution, extra=dict(item.extra))
    if window is not None:  # the manifest span this clip lies in, and its caption
        w_start, w_end, caption = item.spans[window]
        clip.extra.update(span_index=window, span=[w_start, w_end])
        if caption is not None:
            clip.extra["caption"] = caption
    if item.provenance:  # what the fetch learned; yt-dlp's whole info dict stays in the ledger
        clip.extra["fetch"] = {k: redact_text(v) if isinstance(v, str) else v
                               for k, v in item.provenance.items() if k != "info"}
    if sig.picture is not None:  # inside black bars: a trainer may crop to it
        clip.extra["picture"] = dict(zip(("top", "bottom", "left", "right"),
                                         (round(v, 4) for v in sig.picture), strict=True))
    clip.scores = clip_scores(_clip_signals(sig, clip, black_level))
    _camera_motion(sig, clip, info.rotation)
    return clip


def _cut(info: VideoInfo, sig: Signals, clips: list[ClipRecord], staging: Path, cfg: Config,
         threads: int) -> None:
    keep = [c for c in clips if c.state == "candidate"]
    if not keep:
        return
    # one folder per input: two inputs with the same content (and so the same clip keys) must
    # never share staged files
    folder = staging / f"{safe_key(keep[0].video_id, 24)}_{short_hash(keep[0].item_key, 10)}"
    paths = [str(folder / f"{c.key}.mp4") for c in keep]
    try:
        results = cut_clips(info.path, [Span(c.start_frame, c.end_frame) for c in keep], paths,
                            frame_pts=sig.pts, rotation=info.rotation, cfg=cfg.cut,
                            threads=threads, interlaced=bool(sig.interlaced.mean() > 0.5))
    except Exception as e:
        if storage_refused(e):  # the input is redone once there is room: free what it wrote
            for p in paths:
                Path(p).unlink(missing_ok=True)
        raise
    for clip, res in zip(keep, results, strict=True):
        clip.extra["cut"] = cut_info(res)
        if res.error:
            clip.drop("cut", res.error.split(":")[0])
            clip.extra["cut_error"] = res.error
            continue
        span = res.span
        if (span.start_frame, span.end_frame) != (clip.start_frame, clip.end_frame):
            # keyframe mode: the clip holds the whole GOPs inside its planned span
            clip.extra["planned_span"] = [clip.start_frame, clip.end_frame]
            start_s, end_s = span_seconds(sig.times, sig.fps, span, sig.end_time)
            clip.start_frame, clip.end_frame = span.start_frame, span.end_frame
            clip.start_s, clip.end_s = round(start_s, 6), round(end_s, 6)
        clip.exact_hash = clip_exact_hash(sig, span)
        clip.phash = clip_phashes(sig, span, cfg.dedup.phash_frames)
        stage_clip(clip, res)
