"""Edited videos with ground truth, composited from real single-shot footage.

Generated textures misled the shot detector once (dissolve F1 0.90 on them, 27 of 46 gradual
transitions found on real edited footage), so the shot evaluation also runs on real footage,
edited the way TransNetV2's authors built their training data: single-shot segments of real
video are joined by hard cuts, cross-dissolves and fades through black, and short flashes are
put inside shots as hard negatives. Both shots keep moving through a transition.

Sources come from a segments file (JSON list of ``{"path", "segments": [[first, last], ...],
"kind", "licence"}``, frames 0-based and inclusive, each segment one continuous camera shot)
or a folder whose every video is taken as one shot. Each source is assigned to the ``tune`` or
the ``holdout`` split by a stable hash of its file name, so held-out footage never reaches a
tuning step: make the detector on ``tune``, report on ``holdout``.

Every source frame is shown once, at the output rate (a 10 fps source plays faster, but every
frame is a real, distinct picture), scaled to cover the output size and centre-cropped.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

from clipfactory.bench.shot_corpus import cached_truth, save_truth

__all__ = ["DISSOLVE_FRAMES", "CorpusError", "RealSource", "load_sources", "make_real_corpus",
           "split_of"]

_JOINS = {"cut": 0.62, "dissolve": 0.2, "fade": 0.18}
_CODECS = (("libx264", "mp4"), ("libx264", "mp4"), ("libvpx-vp9", "webm"))
_VERSION = 1  # bump when the corpus changes, so a cached corpus is rebuilt
DISSOLVE_FRAMES = (8, 30)  # cross-dissolve lengths, shortest and longest, by default
_VIDEO_EXT = {".mp4", ".mkv", ".webm", ".mov", ".avi", ".mpg", ".mpeg", ".ogv", ".m4v"}


@dataclass(frozen=True)
class RealSource:
    """One single-shot segment of a real video: frames ``first..last`` (inclusive)."""

    path: str
    first: int
    last: int
    kind: str = "camera"
    licence: str = ""

    @property
    def frames(self) -> int:
        return self.last - self.first + 1


def split_of(path: str, holdout_share: float = 0.4) -> str:
    """``tune`` or ``holdout``, by a stable hash of the file name (not its folder). The salt
    was chosen, before any detector ran on the footage, so that both sides hold camera and
    animation footage."""
    h = int.from_bytes(hashlib.sha256(b"clipfactory" + Path(path).name.encode()).digest()[:8],
                       "big")
    return "holdout" if (h % 1000) / 1000 < holdout_share else "tune"


class CorpusError(ValueError):
    """The footage given cannot make a corpus (no such file, not a segments file, no segment
    of the split long enough): a message for the user, not a bug."""


def load_sources(spec: str | os.PathLike[str], split: str = "all",
                 min_frames: int = 40) -> list[RealSource]:
    """Segments of ``spec`` (a segments JSON file or a folder of single-shot videos) in
    ``split`` (``tune``, ``holdout`` or ``all``), each of at least ``min_frames`` frames."""
    p = Path(spec)
    out: list[RealSource] = []
    if not p.exists():
        raise CorpusError(f"{p}: no such file or folder (bench/real-footage/fetch.sh DIR "
                          "writes DIR/segments.json)")
    if p.is_dir():
        for f in sorted(p.rglob("*")):
            if f.suffix.lower() in _VIDEO_EXT and f.is_file():
                n, why = _decodable(str(f))
                if why:  # a user's folder: one broken file leaves the rest usable
                    print(f"real footage: {f}: {why}" + (f"; only its first {n} frames decode"
                                                          if n else "; left out"))
                if n:
                    out.append(RealSource(str(f), 0, n - 1))
    else:
        base = p.parent
        try:
            for row in json.loads(p.read_text(encoding="utf-8")):
                path = str(base / row["path"]) if not os.path.isabs(row["path"]) \
                    else row["path"]
                for first, last in row.get("segments") or [[0, row["frames"] - 1]]:
                    out.append(RealSource(path, int(first), int(last),
                                          row.get("kind", "camera"), row.get("licence", "")))
        except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as e:
            raise CorpusError(f"{p}: not a segments file (a JSON list of {{path, frames, "
                              f"segments}}): {type(e).__name__}: {e}") from None
    return [s for s in out if s.frames >= min_frames
            and (split == "all" or split_of(s.path) == split)]


def _decodable(path: str) -> tuple[int, str]:
    """Frames decoded from the start of ``path`` before the first error, and that error's
    words ("" when the whole file decodes). :func:`_frames` stops at the same error."""
    n = 0
    try:
        with av.open(path) as c:
            for _ in c.decode(video=0):
                n += 1
    except (av.FFmpegError, IndexError) as e:  # IndexError: no video stream
        return n, str(e) or type(e).__name__
    return n, ""


@dataclass
class _Shot:
    src: RealSource
    start: int  # first source frame used (transition frames included)
    pure: int  # frames shown unmixed
    join: str  # how this shot is entered: cut | dissolve | fade
    mix: int = 0  # dissolve frames (shared with the previous shot)
    fade_out: int = 0  # the previous shot's frames darkening (fade)
    black: int = 0
    fade_in: int = 0
    flash_at: int = -1  # offset inside the pure part of a 1-3 frame flash, -1: none
    flash_len: int = 0
    flash_gain: float = 0.0


def _frames(src: RealSource, start: int, width: int, height: int) -> Iterator[np.ndarray]:
    """Frames of ``src`` from source frame ``start`` on, scaled to cover and centre-cropped."""
    with av.open(src.path) as c:
        frames = c.decode(video=0)
        for i in range(src.last + 1):
            try:
                f = next(frames)
            except (StopIteration, av.FFmpegError):
                return  # the end, or where a damaged file breaks (its frames stop there)
            if i < start:
                continue
            scale = max(width / f.width, height / f.height)
            w, h = max(width, round(f.width * scale)), max(height, round(f.height * scale))
            img = f.reformat(width=w + w % 2, height=h + h % 2, format="rgb24").to_ndarray()
            y, x = (img.shape[0] - height) // 2, (img.shape[1] - width) // 2
            yield img[y:y + height, x:x + width]


def _held(it: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
    """``it``, then its last frame for ever (a segment shorter than planned freezes)."""
    last = None
    for last in it:
        yield last
    while last is not None:
        yield last


def _plan(rng: np.random.Generator, sources: list[RealSource], frames: int,
          fps: float, dissolve: tuple[int, int] = DISSOLVE_FRAMES) -> list[_Shot]:
    shots: list[_Shot] = []
    total, last_path = 0, None
    joins, jw = list(_JOINS), np.array(list(_JOINS.values()))
    while total < frames:
        join = str(rng.choice(joins, p=jw / jw.sum())) if shots else "cut"
        mix = int(rng.integers(dissolve[0], dissolve[1] + 1)) if join == "dissolve" else 0
        fade_out = int(rng.integers(6, 21)) if join == "fade" else 0
        black = int(rng.integers(0, 11)) if join == "fade" else 0
        fade_in = (0 if rng.random() < 0.25 else int(rng.integers(6, 21))) if join == "fade" \
            else 0
        want = int(rng.uniform(1.2, 4.0) * fps)
        options = [s for s in sources if s.path != last_path
                   and s.frames >= want // 2 + mix + fade_in + 8 + 30]
        if not options:
            options = [s for s in sources if s.path != last_path] or sources
        src = options[int(rng.integers(len(options)))]
        prev = shots[-1] if shots else None
        if prev is not None and join != "cut":  # the outgoing shot keeps moving through it
            room = prev.src.last - (prev.start + prev.pure + (prev.mix if prev.join == "dissolve"
                                                              else prev.fade_in)) + 1
            if room < max(mix, fade_out):
                join, mix, fade_out, black, fade_in = "cut", 0, 0, 0, 0
        lead = mix + fade_in  # incoming frames shown before its pure part
        pure = max(20, min(want, src.frames - lead - 30))  # room for the next transition
        start = src.first + int(rng.integers(0, max(1, src.frames - lead - pure - 30 + 1)))
        shot = _Shot(src, start, pure, join, mix, fade_out, black, fade_in)
        if pure >= 30 and rng.random() < 0.2:
            shot.flash_len = int(rng.integers(1, 4))
            shot.flash_at = int(rng.integers(8, pure - 8 - shot.flash_len))
            shot.flash_gain = float(rng.uniform(0.45, 0.85))
        shots.append(shot)
        last_path = src.path
        total += pure + mix + fade_out + black + fade_in
    return shots


def _render(shots: list[_Shot], width: int, height: int
            ) -> Iterator[tuple[np.ndarray, dict[str, Any] | None]]:
    """Output frames, each with the truth event that starts there (or None)."""
    black = np.zeros((height, width, 3), np.uint8)
    out_it: Iterator[np.ndarray] | None = None  # the previous shot's frames after its pure part
    for shot in shots:
        it = _held(_frames(shot.src, shot.start, width, height))
        if shot.join == "dissolve":
            for j in range(shot.mix):
                a = (j + 1) / (shot.mix + 1)
                mixed = (1 - a) * next(out_it) + a * next(it)
                yield np.round(mixed).astype(np.uint8), ({"type": "dissolve", "frames": shot.mix}
                                                          if j == 0 else None)
        elif shot.join == "fade":
            n = shot.fade_out + shot.black + shot.fade_in
            for j in range(shot.fade_out):
                g = (shot.fade_out - j) / (shot.fade_out + 1)
                yield np.round(next(out_it) * g).astype(np.uint8), (
                    {"type": "fade", "frames": n} if j == 0 else None)
            for j in range(shot.black):
                yield black, ({"type": "fade", "frames": n} if j == 0 and not shot.fade_out
                              else None)
            for j in range(shot.fade_in):
                g = (j + 1) / (shot.fade_in + 1)
                yield np.round(next(it) * g).astype(np.uint8), None
        for j in range(shot.pure):
            frame = next(it)
            event = {"type": "cut"} if j == 0 and shot.join == "cut" and out_it is not None \
                else None
            if 0 <= shot.flash_at <= j < shot.flash_at + shot.flash_len:
                lit = frame + (255.0 - frame) * shot.flash_gain
                frame = np.round(lit).astype(np.uint8)
                event = {"type": "flash", "frames": shot.flash_len} if j == shot.flash_at \
                    else event
            yield frame, event
        out_it = it


def _write(path: Path, shots: list[_Shot], codec: str, fps: float, width: int,
           height: int) -> dict[str, Any]:
    transitions, flashes, shot_rows = [], [], []
    n = 0
    with av.open(str(path), "w") as out:
        opts = ({"preset": "veryfast", "crf": "20"} if codec == "libx264"
                else {"crf": "32", "b": "0", "deadline": "realtime", "cpu-used": "8"})
        stream = out.add_stream(codec, rate=Fraction(fps).limit_denominator(1001), options=opts)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.thread_count = 2
        for img, event in _render(shots, width, height):
            if event is not None:
                if event["type"] == "cut":
                    transitions.append({"type": "cut", "start_frame": n - 1, "end_frame": n})
                elif event["type"] == "flash":
                    flashes.append({"first": n, "last": n + event["frames"] - 1})
                else:
                    transitions.append({"type": event["type"], "start_frame": n - 1,
                                        "end_frame": n + event["frames"]})
            frame = av.VideoFrame.from_ndarray(img, "rgb24")
            frame.pts = n
            out.mux(stream.encode(frame))
            n += 1
        out.mux(stream.encode(None))
    cursor = 0
    for t in transitions:
        shot_rows.append({"kind": "real", "first": cursor, "last": t["start_frame"]})
        cursor = t["end_frame"]
    shot_rows.append({"kind": "real", "first": cursor, "last": n - 1})
    # flash rows first, so a false positive on a flash is counted as one (shot_metrics._where)
    rows = [{"kind": "flash", "first": f["first"] - 2, "last": f["last"] + 2} for f in flashes]
    return {"path": path.name, "fps": fps, "frames": n, "transitions": transitions,
            "shots": rows + shot_rows, "flashes": flashes,
            "sources": sorted({Path(s.src.path).name for s in shots})}


def make_real_corpus(sources: list[RealSource], directory: str | os.PathLike[str], *,
                     videos: int = 12, seconds: float = 30.0, width: int = 640,
                     height: int = 360, fps: float = 25.0, seed: int = 0,
                     dissolve: tuple[int, int] = DISSOLVE_FRAMES) -> list[dict[str, Any]]:
    """Write ``videos`` edits of ``sources`` under ``directory`` (reused when ``truth.json``
    there matches these arguments) and return the ground truth, one record per video: its
    transitions, its shots (flash frames listed first as shots of kind ``flash``) and flashes.
    ``dissolve``: the shortest and longest cross-dissolve, in frames (an editor's default 1 s
    dissolve is 25-30 frames at 25-30 fps, 50-60 at 50-60 fps)."""
    if not sources:
        raise CorpusError("no real footage segments to edit (none of at least 40 frames in "
                          "the split asked for)")
    d = Path(directory)
    ident = sorted(f"{Path(s.path).name}:{s.first}-{s.last}" for s in sources)
    params = {"version": _VERSION, "videos": videos, "seconds": seconds, "width": width,
              "height": height, "fps": fps, "seed": seed,
              "sources": hashlib.sha256("\n".join(ident).encode()).hexdigest()[:16]}
    if tuple(dissolve) != DISSOLVE_FRAMES:  # (the default's corpora, cached before it was a choice)
        params["dissolve"] = list(dissolve)
    cached = cached_truth(d, params)
    if cached is not None:
        return cached
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([seed, 11])
    truth = []
    for v in range(videos):
        codec, ext = _CODECS[v % len(_CODECS)]
        shots = _plan(rng, sources, round(seconds * fps), fps, dissolve)
        truth.append(_write(d / f"real_{v:03d}.{ext}", shots, codec, fps, width, height))
    save_truth(d, params, truth)
    return truth
