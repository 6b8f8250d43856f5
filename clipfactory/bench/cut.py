"""``clipfactory bench-cut``: exact (smart) cut against full re-encode and stream copy.

From one run, on the same generated sources (H.264, or with ``--codec hevc`` HEVC, with
B-frames and AAC audio, one set per GOP length) and the same clips (contiguous, random
lengths, as shot detection would give), it times every cut mode single-threaded (decoder
and encoder threads pinned to one):

- ``copy``: keyframe mode, plain stream copy of the whole GOPs inside each clip (no decoding;
  clips shrink to GOP boundaries, so its output seconds are also reported);
- ``exact``: the default smart cut (whole GOPs copied, edges re-encoded with libx264, or
  libx265 for HEVC);
- ``reencode``: every frame re-encoded (libx264 ``veryfast``, crf 18), as before smart cut;
- ``nvenc``: every frame re-encoded with ``h264_nvenc``, only where NVENC opens;

plus a decode-only pass over the sources for reference. Throughput is x-realtime per core:
seconds of clips requested per CPU-second of this process.
"""

from __future__ import annotations

import json
import random
import resource
import shutil
import time
from pathlib import Path
from typing import Any

import av

from clipfactory.bench.run import decode_only
from clipfactory.config import CutConfig
from clipfactory.media.cut import cut_clips
from clipfactory.media.encoders import nvenc_available
from clipfactory.records import Span
from clipfactory.testing.synth import ShotSpec, write_video

__all__ = ["run_cut_bench"]

FPS = 30


_ENCODERS = {"h264": "libx264", "hevc": "libx265"}


def _sources(folder: Path, videos: int, seconds: float, gop_s: float, width: int,
             height: int, seed: int, codec: str = "h264") -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    frames = round(seconds * FPS)
    for v in range(videos):
        prefix = "" if codec == "h264" else f"{codec}_"  # (H.264 sources keep their names)
        path = folder / f"{prefix}gop{gop_s:g}s_{v}.mp4"
        if not path.exists():
            rng = random.Random(seed * 1000 + v)
            shots, left = [], frames
            while left > 0:
                n = min(left, rng.randint(3 * FPS, 12 * FPS))
                shots.append(ShotSpec(n, "texture", rng.randint(0, 10_000)))
                left -= n
            write_video(path, shots, fps=FPS, width=width, height=height,
                        codec=_ENCODERS[codec], gop=round(gop_s * FPS), bframes=2,
                        audio=True, crf=20)
        out.append(str(path))
    return out


def _frame_pts(path: str) -> list[int]:
    with av.open(path) as c:
        return [f.pts for f in c.decode(video=0)]


def _spans(n: int, rng: random.Random, clip_s: tuple[float, float]) -> list[Span]:
    spans, at = [], 0
    while at < n:
        length = round(rng.uniform(*clip_s) * FPS)
        if n - at < clip_s[0] * FPS:
            break
        spans.append(Span(at, min(n, at + length)))
        at += length
    return spans


def _cut_all(jobs: list[tuple[str, list[int], list[Span]]], cfg: CutConfig, out: Path
             ) -> dict[str, Any]:
    shutil.rmtree(out, ignore_errors=True)
    wall0, cpu0 = time.perf_counter(), time.process_time()
    results = []
    for v, (path, pts, spans) in enumerate(jobs):
        outs = [str(out / f"{v}_{i}.mp4") for i in range(len(spans))]
        results += cut_clips(path, spans, outs, frame_pts=pts, cfg=cfg, threads=1)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    ok = [r for r in results if r.error is None]
    want = sum(s.num_frames for _, _, spans in jobs for s in spans) / FPS
    return {"clips": len(results), "ok": len(ok), "requested_s": want,
            "output_s": sum(r.span.num_frames for r in ok) / FPS,
            "copied_frames": sum(r.copied_frames for r in ok),
            "frames": sum(r.frames for r in ok), "bytes": sum(r.bytes for r in ok),
            "cpu_s": cpu, "wall_s": wall, "x_realtime_per_core": want / cpu,
            "errors": sorted({r.error for r in results if r.error})[:3],
            "fallbacks": sorted({r.fallback for r in ok if r.fallback})[:3]}


def run_cut_bench(workdir: str | Path = "bench-out", *, videos: int = 3, seconds: float = 60,
                  gops: tuple[float, ...] = (2.0, 5.0), width: int = 640, height: int = 360,
                  clip_s: tuple[float, float] = (4.0, 12.0), seed: int = 0,
                  quiet: bool = False, codec: str = "h264") -> dict[str, Any]:
    """Run the cut benchmark; print a table (unless ``quiet``) and return the figures.
    ``codec``: the sources' (``h264``, or ``hevc``: closed GOPs, as phones and cameras write
    them); the ``reencode`` baseline is libx264 either way (what exact mode did with HEVC
    before it was spliced)."""
    if codec not in _ENCODERS:
        raise ValueError(f"codec must be one of {sorted(_ENCODERS)}, not {codec!r}")
    work = Path(workdir)
    say = (lambda *a: None) if quiet else print
    report: dict[str, Any] = {"codec": codec, "width": width, "height": height, "fps": FPS,
                              "videos": videos, "seconds": seconds, "clip_s": list(clip_s),
                              "groups": {}}
    modes: dict[str, CutConfig] = {
        "copy": CutConfig(mode="keyframe", threads=1),
        "exact": CutConfig(mode="exact", threads=1),
        "reencode": CutConfig(mode="transcode", codec="libx264", preset="veryfast", crf=18,
                              threads=1),
    }
    if nvenc_available("h264_nvenc"):
        modes["nvenc"] = CutConfig(mode="transcode", codec="h264_nvenc", threads=1)
    for gop_s in gops:
        say(f"generating {videos} x {seconds:g} s of {width}x{height} "
            f"{'H.264' if codec == 'h264' else 'HEVC'} (GOP {gop_s:g} s, B-frames, AAC) ...")
        paths = _sources(work / "cut-sources", videos, seconds, gop_s, width, height, seed,
                         codec)
        rng = random.Random(seed)
        jobs = []
        for p in paths:
            pts = _frame_pts(p)
            jobs.append((p, pts, _spans(len(pts), rng, clip_s)))
        cpu0 = time.process_time()
        media = sum(decode_only(p)[1] for p in paths)
        group: dict[str, Any] = {"decode_only_x_realtime_per_core":
                                 media / (time.process_time() - cpu0)}
        for name, cfg in modes.items():
            group[name] = _cut_all(jobs, cfg, work / "cut-out" / name)
        report["groups"][f"gop_{gop_s:g}s"] = group
        _print(say, gop_s, group)
    report["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    say(f"peak RSS {report['peak_rss_mib']:.0f} MiB")
    (work / "bench-cut.json").write_text(json.dumps(report, indent=2))
    return report


def _print(say: Any, gop_s: float, g: dict[str, Any]) -> None:
    base = g["reencode"]["x_realtime_per_core"]
    copy = g["copy"]["x_realtime_per_core"]
    say(f"\nGOP {gop_s:g} s  (decode-only {g['decode_only_x_realtime_per_core']:.1f}x "
        f"realtime per core)")
    say(f"{'mode':<9} {'x-rt/core':>10} {'vs reencode':>12} {'vs copy':>8} {'clips':>7} "
        f"{'out s':>7} {'copied':>7} {'MB':>8}")
    for name in g:
        if name == "decode_only_x_realtime_per_core":
            continue
        if name not in g:
            continue
        m = g[name]
        copied = m["copied_frames"] / max(1, m["frames"])
        say(f"{name:<9} {m['x_realtime_per_core']:>10.1f} "
            f"{m['x_realtime_per_core'] / base:>11.1f}x {m['x_realtime_per_core'] / copy:>7.2f}x "
            f"{m['ok']:>3}/{m['clips']:<3} {m['output_s']:>7.0f} {copied:>7.0%} "
            f"{m['bytes'] / 1e6:>8.1f}")
        if m["errors"] or m["fallbacks"]:
            say(f"          errors {m['errors']} fallbacks {m['fallbacks']}")
