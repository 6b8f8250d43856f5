"""Thumbnails for the report: the first, middle and last frame of a clip, side by side in one
JPEG (a *strip*), cached under ``OUT/report_files/thumbs/`` by clip id.

A kept clip is read from its shard: the tar member's bytes only (the shard is not unpacked),
then three targets are decoded with :func:`clipfactory.media.grab.grab_frames`, which seeks to
the keyframe before each target and decodes forward from there (a GOP per frame, never the whole
clip). A dropped clip is read from its source while the file is still there, the same way: all
the sampled clips of one source in one pass over the file, in time order. Where neither exists
(a remote source whose fetched copy is gone, a deleted file, a missing shard), or for a source
that was taken down or quarantined (no picture of it is kept), the report shows a placeholder
saying why. Frames are scaled by FFmpeg (area filter) before conversion, JPEG is encoded with
FFmpeg's MJPEG encoder: no imaging library is needed.
"""

from __future__ import annotations

import io
import os
import tarfile
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from clipfactory.atomic import write_atomic
from clipfactory.errors import MediaError
from clipfactory.ids import short_hash
from clipfactory.media.grab import grab_frames

__all__ = ["GAP", "THUMB_DIR", "TILE", "Thumb", "ThumbRequest", "encode_jpeg", "make_thumbs",
           "prune_thumbs", "span_times", "thumb_name"]

THUMB_DIR = "report_files/thumbs"  # relative to the output folder (and to report.html)
TILE = 160  # longer side of each frame in a strip, in pixels
GAP = 4  # pixels between the frames of a strip
_GAP_RGB = (40, 40, 40)


@dataclass(frozen=True)
class ThumbRequest:
    """Where a clip's three frames come from: ``path`` is a shard (with ``member``, the clip's
    file inside it) or a source video; ``times`` are seconds from the start of that file.
    ``unavailable`` says why there is nothing to read (the placeholder's text)."""

    clip_id: str
    path: str | None
    times: tuple[float, float, float]
    member: str | None = None
    rotation: int | None = None  # None: as the file's frames say (a clip that kept it)
    unavailable: str | None = None
    version: str = ""  # what the pictures are of (the clip file's or the source's SHA-256)


@dataclass(frozen=True)
class Thumb:
    """A strip's path relative to the output folder, or why there is none."""

    clip_id: str
    file: str | None = None
    why: str | None = None
    cached: bool = False


def thumb_name(clip_id: str, version: str = "") -> str:
    """File name of a clip's strip (a hash: clip ids may hold any safe text). ``version``
    names the bytes it was made from: a clip id whose pictures changed (its source file
    replaced under the same manifest id) gets a strip of its own, not the cached one."""
    return f"{short_hash(f'{clip_id}|{version}' if version else clip_id, 16)}.jpg"


def span_times(start_s: float, start_frame: int, end_frame: int, end_s: float
               ) -> tuple[float, float, float]:
    """Times of the first, middle (``start + n // 2``) and last frame of ``[start, end)``,
    assuming a constant rate over the span (exact for constant frame rate sources)."""
    n = max(1, end_frame - start_frame)
    step = (end_s - start_s) / n if end_s > start_s else 0.0
    return start_s, start_s + (n // 2) * step, start_s + (n - 1) * step


def encode_jpeg(rgb: np.ndarray, quality: int = 4) -> bytes:
    """An RGB image (HxWx3 uint8, even sizes) as JPEG bytes (``quality``: 2 best .. 31)."""
    h, w = rgb.shape[:2]
    ctx = av.CodecContext.create("mjpeg", "w")
    ctx.width, ctx.height, ctx.pix_fmt = w, h, "yuvj420p"
    ctx.time_base = Fraction(1, 25)
    ctx.options = {"qmin": str(quality), "qmax": str(quality)}
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), "rgb24").reformat(
        format="yuvj420p")
    return b"".join(bytes(p) for p in [*ctx.encode(frame), *ctx.encode(None)])


def _strip(frames: list[np.ndarray | None]) -> np.ndarray | None:
    got = [f for f in frames if f is not None]
    if not got:
        return None
    h, w = got[0].shape[:2]
    strip = np.empty((h, 3 * w + 2 * GAP, 3), np.uint8)
    strip[:] = _GAP_RGB
    for i, f in enumerate(frames):
        x = i * (w + GAP)
        if f is None or f.shape[:2] != (h, w):
            strip[:, x:x + w] = 128  # a frame that did not decode: grey
        else:
            strip[:, x:x + w] = f
    return strip


def _grab(src: str | io.BytesIO, reqs: list[ThumbRequest]) -> dict[str, list[np.ndarray | None]]:
    times = [t for r in reqs for t in r.times]
    # av.open reads a file object as well as a path
    frames = grab_frames(src, times, max_side=TILE, rotation=reqs[0].rotation,  # type: ignore[arg-type]
                         preview=True)
    return {r.clip_id: frames[3 * i:3 * i + 3] for i, r in enumerate(reqs)}


def _read_group(path: str, reqs: list[ThumbRequest]
                ) -> dict[str, list[np.ndarray | None] | str]:
    """Frames of every request on one file (a shard, or a source), or why there are none."""
    out: dict[str, list[np.ndarray | None] | str] = {}
    try:
        if reqs[0].member is None:
            out.update(_grab(path, reqs))
            return out
        with tarfile.open(path) as tar:
            for r in reqs:
                try:
                    fh = tar.extractfile(r.member or "")
                    data = fh.read() if fh is not None else None
                except KeyError:
                    data = None
                if data is None:
                    out[r.clip_id] = "not in its shard"
                    continue
                try:
                    out.update(_grab(io.BytesIO(data), [r]))
                except (MediaError, av.FFmpegError, OSError, ValueError) as e:
                    out[r.clip_id] = f"cannot decode the clip: {e}"
    except (MediaError, av.FFmpegError, OSError, ValueError, tarfile.TarError) as e:
        for r in reqs:
            out.setdefault(r.clip_id, f"cannot read {Path(path).name}: {e}")
    return out


def make_thumbs(out: Path, requests: Iterable[ThumbRequest], *, cache: bool = True,
                workers: int | None = None) -> dict[str, Thumb]:
    """A :class:`Thumb` per request: from the cache, newly made, or a placeholder's reason.
    Files are grouped so that each shard or source is opened once; groups run in threads
    (PyAV decodes without holding the GIL)."""
    tdir = out / THUMB_DIR
    tdir.mkdir(parents=True, exist_ok=True)
    for f in tdir.glob(".*"):  # a build killed while writing
        f.unlink(missing_ok=True)
    result: dict[str, Thumb] = {}
    groups: dict[tuple[str, bool], list[ThumbRequest]] = {}
    for r in requests:
        rel = f"{THUMB_DIR}/{thumb_name(r.clip_id, r.version)}"
        if r.unavailable or r.path is None:
            result[r.clip_id] = Thumb(r.clip_id, why=r.unavailable or "no file to read")
        elif cache and (out / rel).is_file():
            result[r.clip_id] = Thumb(r.clip_id, rel, cached=True)
        else:
            groups.setdefault((r.path, r.member is not None), []).append(r)

    def work(item: tuple[tuple[str, bool], list[ThumbRequest]]) -> list[Thumb]:
        (path, _), reqs = item
        version = {r.clip_id: r.version for r in reqs}
        done = []
        for clip_id, frames in _read_group(path, reqs).items():
            strip = None if isinstance(frames, str) else _strip(frames)
            if strip is None:
                done.append(Thumb(clip_id, why=frames if isinstance(frames, str)
                                  else "no frame decodes at this span"))
                continue
            rel = f"{THUMB_DIR}/{thumb_name(clip_id, version[clip_id])}"
            try:
                write_atomic(out / rel, encode_jpeg(strip), tag="part")
            except (av.FFmpegError, OSError, ValueError) as e:  # one clip, not the report
                done.append(Thumb(clip_id, why=f"cannot make the thumbnail: {e}"))
                continue
            done.append(Thumb(clip_id, rel))
        return done

    n = workers or min(4, os.cpu_count() or 1)
    with ThreadPoolExecutor(max(1, n)) as pool:
        for thumbs in pool.map(work, sorted(groups.items())):
            result.update((t.clip_id, t) for t in thumbs)
    return result


def prune_thumbs(out: Path, keep: set[str]) -> int:
    """Delete cached strips not in ``keep`` (paths relative to ``out``): a clip no longer shown,
    or taken down, leaves no picture behind. Returns how many went."""
    tdir = out / THUMB_DIR
    gone = 0
    if tdir.is_dir():
        for f in tdir.iterdir():
            if f.is_file() and f"{THUMB_DIR}/{f.name}" not in keep:
                f.unlink(missing_ok=True)
                gone += 1
    return gone
