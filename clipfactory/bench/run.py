"""``clipfactory bench``: throughput of each level against the decode-only limit, from one run.

On one generated corpus it measures, in this order and in the same process:

1. decode-only: every frame decoded, nothing else (the ceiling for anything that decodes);
2. analysis pass: probe + the one decode pass with every signal and the shot detector, also
   with the built-in rules alone when the configured detector is another one (what the
   learned part costs);
3. full pipeline: ``clipfactory run`` end to end (cut, dedup, shards, index, card).

Each is reported as x-realtime per core (seconds of video per CPU-second, decoder and encoder
threads pinned to one) and as a ratio to decode-only, plus wall-clock x-realtime and peak RSS.
"""

from __future__ import annotations

import json
import resource
import shutil
import time
from pathlib import Path
from typing import Any

import av

from clipfactory.config import Config
from clipfactory.media.analyse import analyse
from clipfactory.media.probe import probe
from clipfactory.pipeline import run
from clipfactory.shots import check_detector, make_detector
from clipfactory.testing.synth import make_corpus

__all__ = ["decode_only", "run_bench"]


def _videos(folder: Path) -> list[str]:
    return sorted(str(p) for p in folder.glob("*")
                  if p.suffix.lower() in (".mp4", ".webm", ".mkv"))


def decode_only(path: str) -> tuple[int, float]:
    """Decode every video frame single-threaded; return (frames, seconds of video)."""
    with av.open(path) as c:
        s = c.streams.video[0]
        s.codec_context.thread_count = 1
        n, last = 0, 0.0
        for f in c.decode(s):
            n += 1
            last = f.time or last
        fps = float(s.average_rate or 30)
    return n, last + 1.0 / fps


def _measure(fn: Any, paths: list[str]) -> dict[str, float]:
    wall0, cpu0 = time.perf_counter(), time.process_time()
    media = sum(fn(p) for p in paths)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    return {"media_s": media, "wall_s": wall, "cpu_s": cpu,
            "x_realtime_per_core": media / cpu, "x_realtime": media / wall}


def _analysis(cfg: Config) -> Any:
    def one(path: str) -> float:
        info = probe(path, cfg.ingest)
        sig = analyse(info, cfg.analysis, make_detector(cfg.shots), threads=1)
        return float(sig.times[-1] - sig.times[0]) + 1.0 / sig.fps
    return one


def text_filter_cost(out: Path, cfg: Config, clips: int = 12) -> dict[str, Any] | None:
    """CPU seconds per clip of the text-overlay filter on kept clips of the run (frames grabbed
    from the sources, PP-OCRv4 detection), or None without the ``text`` extra."""
    import pyarrow.parquet as pq

    from clipfactory.filters.text_overlay import TextDetector, TextModelError, overlay_score
    from clipfactory.media.grab import grab_frames

    try:
        det = TextDetector(max_side=cfg.filters.text_max_side)
    except TextModelError:
        return None
    rows = pq.read_table(out / "index.parquet").to_pylist()[:clips]
    if not rows:
        return None
    k = cfg.filters.text_frames
    cpu0 = time.process_time()
    for r in rows:
        d = r["end_s"] - r["start_s"]
        frames = grab_frames(r["source"], [r["start_s"] + (i + 0.5) * d / k for i in range(k)],
                             max_side=cfg.filters.text_max_side)
        overlay_score([f for f in frames if f is not None], det)
    cpu = time.process_time() - cpu0
    return {"clips": len(rows), "frames": k, "cpu_s_per_clip": cpu / len(rows)}


def _rss_mib() -> tuple[float, float]:
    me = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return me, kids


def run_bench(minutes: float = 10.0, width: int = 640, height: int = 360,
              workdir: str | Path = "bench-out", workers: int = 1,
              videos: str | Path | None = None, detector: str | None = None) -> dict[str, Any]:
    """Generate the corpus (cached between runs), measure, print a table, write bench.json.
    ``videos``: a folder of videos to measure instead of the generated corpus; ``detector``:
    the shot detector (default: the config's)."""
    work = Path(workdir)
    corpus = Path(videos) if videos else work / f"corpus-{minutes:g}min-{width}x{height}"
    if videos is None and (not corpus.is_dir() or not _videos(corpus)):
        print(f"generating {minutes:g} min of {width}x{height} H.264 with cuts in {corpus} ...")
        make_corpus(corpus, seconds=minutes * 60, videos=max(2, round(minutes)), width=width,
                    height=height)
    paths = _videos(corpus)
    if not paths:
        raise FileNotFoundError(f"no videos in {corpus}")
    cfg = Config(workers=workers)
    if detector:
        cfg.shots.detector = detector  # type: ignore[assignment]
    cfg.analysis.decode_threads = 1
    cfg.cut.threads = 1

    check_detector(cfg.shots)  # the model loads once, outside the timings
    dec = _measure(lambda p: decode_only(p)[1], paths)
    ana = _measure(_analysis(cfg), paths)
    rules = None
    if cfg.shots.detector != "builtin":
        plain = cfg.model_copy(deep=True)
        plain.shots.detector = "builtin"
        rules = _measure(_analysis(plain), paths)
    still = None
    if cfg.analysis.motion:  # what camera motion (vector export + fits) costs the pass
        off = cfg.model_copy(deep=True)
        off.analysis.motion = False
        still = _measure(_analysis(off), paths)
    out = work / "run"
    shutil.rmtree(out, ignore_errors=True)
    wall0, cpu0 = time.perf_counter(), time.process_time()
    summary = run(corpus, out, cfg, quiet=True)
    wall, driver_cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    t = summary["throughput"]
    cpu = t["cpu_s"] + driver_cpu
    full = {"media_s": t["media_s"], "wall_s": wall, "cpu_s": cpu,
            "x_realtime_per_core": t["media_s"] / cpu, "x_realtime": t["media_s"] / wall}
    rss_self, rss_children = _rss_mib()
    result = {
        "corpus": {"videos": len(paths), "minutes": dec["media_s"] / 60, "size": f"{width}x{height}",
                   "codec": "h264"},
        "workers": workers,
        "detector": cfg.shots.detector,
        "decode_only": dec, "analysis": ana, "analysis_rules_only": rules,
        "analysis_no_motion": still, "pipeline": full,
        "text_filter": text_filter_cost(out, cfg),
        "ratio_to_decode": {"analysis": ana["x_realtime_per_core"] / dec["x_realtime_per_core"],
                            "pipeline": full["x_realtime_per_core"] / dec["x_realtime_per_core"]},
        "peak_rss_mib": {"driver": rss_self, "largest_worker": rss_children},
        "clips": summary["counts"]["clips"],
        "core_hours_per_video_hour": cpu / full["media_s"],
    }
    (work / "bench.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
    _print(result)
    return result


def _print(r: dict[str, Any]) -> None:
    c = r["corpus"]
    print(f"\nclipfactory bench: {c['videos']} videos, {c['minutes']:.1f} min of {c['size']} "
          f"{c['codec']}, {r['workers']} worker(s), decoder/encoder threads pinned to 1\n")
    print(f"{'level':<24}{'x-realtime/core':>16}{'ratio to decode':>17}{'wall x-realtime':>17}"
          f"{'CPU s':>9}")
    levels = [("decode-only", "decode_only"), (f"analysis pass ({r['detector']})", "analysis"),
              ("  rules only", "analysis_rules_only"), ("  no camera motion", "analysis_no_motion"),
              ("full pipeline", "pipeline")]
    for name, key in levels:
        m = r.get(key)
        if not m:
            continue
        ratio = m["x_realtime_per_core"] / r["decode_only"]["x_realtime_per_core"]
        print(f"{name:<24}{m['x_realtime_per_core']:>16.1f}{ratio:>17.2f}{m['x_realtime']:>17.1f}"
              f"{m['cpu_s']:>9.1f}")
    if r.get("analysis_no_motion"):
        a, b = r["analysis"]["cpu_s"], r["analysis_no_motion"]["cpu_s"]
        print(f"camera motion (vector export, fits): {100 * (a - b) / b:+.1f} % of the analysis "
              "pass")
    tf = r.get("text_filter")
    if tf:
        print(f"text filter (off by default): {1000 * tf['cpu_s_per_clip']:.0f} ms CPU per clip "
              f"({tf['frames']} frames each, {tf['clips']} clips: grab + PP-OCRv4 det)")
    rss = r["peak_rss_mib"]
    print(f"\npeak RSS: driver {rss['driver']:.0f} MiB, largest worker {rss['largest_worker']:.0f} MiB")
    print(f"clips kept {r['clips']['kept']}, dropped {r['clips']['dropped']}; "
          f"{r['core_hours_per_video_hour']:.4f} core-hours per hour of video "
          f"({1 / r['core_hours_per_video_hour']:.1f} video-hours per core-hour)")
