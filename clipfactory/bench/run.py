"""``clipfactory bench``: throughput of each level against the decode-only limit, from one run.

On a generated corpus (one per ``--resolution``) or on the user's own files (``--input``) it
measures, in this order:

1. decode-only: every frame decoded, nothing else (the ceiling for anything that decodes);
2. analysis pass: probe + the one decode pass with every signal and the shot detector, also
   with the built-in rules alone when the configured detector is another one (what the
   learned part costs), and without camera motion;
3. full pipeline: ``clipfactory run`` end to end (cut, dedup, shards, index, card).

Each is reported as x-realtime per core (seconds of video per CPU-second, decoder and encoder
threads pinned to one) and as a ratio to decode-only, plus wall-clock x-realtime and peak RSS.
Every level runs in a fresh process (:mod:`clipfactory.bench.levels`), so its peak RSS is its
own; the analysis pass and the full pipeline also split their CPU time by stage
(:mod:`clipfactory.media.stagetime`).
"""

from __future__ import annotations

import json
import shutil
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from clipfactory.bench.levels import (
    analysis_level,
    decode_level,
    decode_only,
    in_fresh_process,
    pipeline_level,
)
from clipfactory.config import Config, IngestConfig
from clipfactory.errors import MediaError
from clipfactory.media.probe import probe
from clipfactory.media.stagetime import DRIVER_PHASES, STAGES
from clipfactory.records import VideoInfo
from clipfactory.sources.reader import read_folder
from clipfactory.testing.synth import make_corpus

__all__ = ["cut_lines", "decode_only", "parse_resolutions", "run_bench", "run_bench_sizes",
           "screen", "text_filter_cost", "video_files"]

# how the generated corpus is encoded: x264 ``veryfast`` has B-frames, CABAC and the deblocking
# filter, as most H.264 footage has (``ultrafast`` has none of them: 0.15 against 0.25 ms per
# 360p frame to decode); a keyframe every 3.2 s and none placed at the cuts, as in the held-out
# real footage's H.264 files, so clips have heads to re-encode (with keyframes at the cuts, as
# x264's scene-cut detection would place them, the cut copies every frame)
CORPUS_PRESET = "veryfast"
CORPUS_X264 = "keyint=96:min-keyint=96:scenecut=0"
_LABELS = {"mux_write": "mux/write"}  # otherwise the stage's name, "_" as a space


def parse_resolutions(text: str) -> list[tuple[int, int]]:
    """``"360p,720p,1080p"`` or ``"640x360,1280x720"`` -> [(width, height), ...]; ``Np`` is
    16:9 (widths rounded to even)."""
    sizes = []
    for part in (p.strip().lower() for p in text.split(",")):
        try:
            if part.endswith("p"):
                h = int(part[:-1])
                w = round(h * 16 / 9 / 2) * 2
            else:
                w, h = (int(x) for x in part.split("x"))
        except ValueError:
            raise ValueError(f"not a resolution: {part!r} (360p, 720p or WIDTHxHEIGHT)") from None
        if w < 16 or h < 16 or w % 2 or h % 2:
            raise ValueError(f"resolution {w}x{h}: both sides even and at least 16")
        sizes.append((w, h))
    return sizes


def video_files(inputs: Iterable[str | Path], extensions: Iterable[str]) -> list[str]:
    """The videos named by ``inputs``: files as given, folders searched recursively for the
    ingest's extensions (as ``clipfactory run`` does); absolute, each once, in order."""
    ingest = IngestConfig(extensions=list(extensions))
    found: dict[str, None] = {}
    for i in inputs:
        p = Path(i)
        if p.is_dir():  # what `clipfactory run` reads there, less what is not a file
            files = [Path(it.source) for it in read_folder(p, ingest)
                     if Path(it.source).is_file()]
        elif p.is_file():
            files = [p]
        else:
            raise FileNotFoundError(f"input not found: {p}")
        found.update((str(f.resolve()), None) for f in files)
    return list(found)


def screen(paths: Sequence[str], ingest: IngestConfig
           ) -> tuple[list[VideoInfo], list[dict[str, str]]]:
    """Split ``paths`` into the videos ``clipfactory run``'s probe accepts and the rest: a
    user's folder holds corrupt, truncated or non-video files, which a run records as rejected
    and a bench leaves out of every level (each level then measures the same files).
    Returns ``(usable, skipped)``: the probe of each usable video, and for each skipped one
    its ``path``, ``reason`` (the run's ``stage/reason``) and ``detail``."""
    usable: list[VideoInfo] = []
    skipped: list[dict[str, str]] = []
    for path in paths:
        try:
            usable.append(probe(path, ingest))
        except MediaError as e:
            skipped.append({"path": path, "reason": f"{e.stage}/{e.reason}", "detail": e.detail})
    return usable, skipped


def _describe(infos: list[VideoInfo]) -> dict[str, str]:
    """The corpus's frame size (or the commonest ones) and codecs, from the probes."""
    sizes: Counter[str] = Counter(f"{i.width}x{i.height}" for i in infos)
    codecs = {i.codec for i in infos}
    size = (next(iter(sizes)) if len(sizes) == 1 else
            "mixed sizes (" + ", ".join(f"{k} x{n}" for k, n in sizes.most_common(3))
            + (", ..." if len(sizes) > 3 else "") + ")")
    return {"size": size, "codec": ", ".join(sorted(codecs))}


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
        got = [f for f in frames if f is not None]
        if got:  # (a clip whose frames cannot be grabbed is skipped, as the filter skips it)
            overlay_score(got, det)
    cpu = time.process_time() - cpu0
    return {"clips": len(rows), "frames": k, "cpu_s_per_clip": cpu / len(rows)}


def run_bench(minutes: float = 10.0, width: int = 640, height: int = 360,
              workdir: str | Path = "bench-out", workers: int = 1,
              videos: str | Path | None = None, detector: str | None = None, *,
              inputs: Sequence[str | Path] | None = None, text_filter: bool = True,
              json_name: str = "bench.json") -> dict[str, Any]:
    """Measure every level on one corpus, print a table, write ``workdir/json_name``.
    ``inputs``: files and folders of videos to measure instead of the generated corpus of
    ``minutes`` at ``width`` x ``height`` (generated once, cached in ``workdir``); ``videos``:
    a folder, the old name of ``inputs``; ``detector``: the shot detector (default: the
    config's); ``text_filter``: also measure the text-overlay filter on the run's clips."""
    work = Path(workdir)
    cfg = Config(workers=workers)
    if detector:
        cfg.shots.detector = detector  # type: ignore[assignment]
    cfg.analysis.decode_threads = 1
    cfg.cut.threads = 1
    sources = [*(inputs or ()), *([videos] if videos else [])]
    if not sources:
        corpus = work / f"corpus-{minutes:g}min-{width}x{height}-{CORPUS_PRESET}-k96"
        if not video_files([corpus] if corpus.is_dir() else [], cfg.ingest.extensions):
            print(f"generating {minutes:g} min of {width}x{height} H.264 with cuts in {corpus} ...")
            make_corpus(corpus, seconds=minutes * 60, videos=max(2, round(minutes)),
                        width=width, height=height, preset=CORPUS_PRESET,
                        x264_params=CORPUS_X264)
        sources = [corpus]
    paths = video_files(sources, cfg.ingest.extensions)
    if not paths:
        raise FileNotFoundError(f"no videos in {', '.join(map(str, sources))}")
    infos, skipped = screen(paths, cfg.ingest)
    paths = [i.path for i in infos]
    for s in skipped:
        print(f"skipped {s['path']}: {s['reason']}: {s['detail']}")
    if not paths:
        raise FileNotFoundError(f"no usable video in {', '.join(map(str, sources))}: "
                                f"all {len(skipped)} failed the probe (listed above)")
    work.mkdir(parents=True, exist_ok=True)
    manifest = work / "bench-inputs.jsonl"  # the run reads exactly the files measured above
    manifest.write_text("".join(json.dumps({"path": p}) + "\n" for p in paths), encoding="utf-8")

    dec = in_fresh_process(decode_level, paths)
    ana = in_fresh_process(analysis_level, paths, cfg)
    rules = None
    if cfg.shots.detector != "builtin":
        plain = cfg.model_copy(deep=True)
        plain.shots.detector = "builtin"
        rules = in_fresh_process(analysis_level, paths, plain)
    still = None
    if cfg.analysis.motion:  # what camera motion (vector export + fits) costs the pass
        off = cfg.model_copy(deep=True)
        off.analysis.motion = False
        still = in_fresh_process(analysis_level, paths, off)
    out = work / "run"
    shutil.rmtree(out, ignore_errors=True)
    full = in_fresh_process(pipeline_level, str(manifest), str(out), cfg)
    clips = full.pop("clips")
    if not full["media_s"]:
        raise RuntimeError(f"the full pipeline analysed no video: every input failed (the "
                           f"reasons are in {out / 'run.log'})")
    result = {
        "corpus": {"videos": len(paths), "minutes": dec["media_s"] / 60, **_describe(infos),
                   "inputs": [str(s) for s in sources], "skipped": skipped},
        "workers": workers,
        "detector": cfg.shots.detector,
        "decode_only": dec, "analysis": ana, "analysis_rules_only": rules,
        "analysis_no_motion": still, "pipeline": full,
        "text_filter": text_filter_cost(out, cfg) if text_filter else None,
        "ratio_to_decode": {"analysis": ana["x_realtime_per_core"] / dec["x_realtime_per_core"],
                            "pipeline": full["x_realtime_per_core"] / dec["x_realtime_per_core"]},
        # each level's own process (VmHWM); the pipeline's driver and its largest worker
        "peak_rss_mib": {"decode_only": dec["peak_rss_mib"], "analysis": ana["peak_rss_mib"],
                         "driver": full["driver_peak_rss_mib"],
                         "largest_worker": full["peak_rss_mib"]},
        "clips": clips,
        "core_hours_per_video_hour": full["cpu_s"] / full["media_s"],
    }
    (work / json_name).write_text(json.dumps(result, indent=2), encoding="utf-8")
    _print(result)
    return result


def run_bench_sizes(sizes: Sequence[tuple[int, int]], minutes: float = 10.0,
                    workdir: str | Path = "bench-out", workers: int = 1,
                    detector: str | None = None, *, text_filter: bool = True
                    ) -> list[dict[str, Any]]:
    """:func:`run_bench` on one generated corpus per (width, height), a table each, then one
    line per size. With several sizes each result goes to ``bench-WxH.json`` and
    ``bench.json`` holds them all (``{"runs": [...]}``)."""
    if len(sizes) == 1:
        (w, h), = sizes
        return [run_bench(minutes, w, h, workdir, workers, detector=detector,
                          text_filter=text_filter)]
    results = [run_bench(minutes, w, h, workdir, workers, detector=detector,
                         text_filter=text_filter, json_name=f"bench-{w}x{h}.json")
               for w, h in sizes]
    (Path(workdir) / "bench.json").write_text(json.dumps({"runs": results}, indent=2),
                                              encoding="utf-8")
    print("\nper resolution: x-realtime per core, the pipeline's ratio to decode-only, the "
          "largest worker's peak RSS")
    print(f"{'resolution':<12}{'decode-only':>12}{'analysis':>10}{'pipeline':>10}"
          f"{'pipeline/decode':>17}{'worker RSS MiB':>16}")
    for r in results:
        print(f"{r['corpus']['size']:<12}{r['decode_only']['x_realtime_per_core']:>12.1f}"
              f"{r['analysis']['x_realtime_per_core']:>10.1f}"
              f"{r['pipeline']['x_realtime_per_core']:>10.1f}"
              f"{r['ratio_to_decode']['pipeline']:>17.3f}"
              f"{r['peak_rss_mib']['largest_worker']:>16.0f}")
    return results


def _print(r: dict[str, Any]) -> None:
    c = r["corpus"]
    print(f"\nclipfactory bench: {c['videos']} videos, {c['minutes']:.1f} min of {c['size']} "
          f"{c['codec']}, {r['workers']} worker(s), decoder/encoder threads pinned to 1")
    if c.get("skipped"):
        print(f"({len(c['skipped'])} input(s) left out: the probe rejects them, as a run would)")
    print()
    print(f"{'level':<24}{'x-realtime/core':>16}{'ratio to decode':>17}{'wall x-realtime':>17}"
          f"{'CPU s':>9}{'sys s':>7}{'faults k':>10}{'peak RSS MiB':>14}")
    levels = [("decode-only", "decode_only"), (f"analysis pass ({r['detector']})", "analysis"),
              ("  rules only", "analysis_rules_only"), ("  no camera motion", "analysis_no_motion"),
              ("full pipeline", "pipeline")]
    for name, key in levels:
        m = r.get(key)
        if not m:
            continue
        ratio = m["x_realtime_per_core"] / r["decode_only"]["x_realtime_per_core"]
        print(f"{name:<24}{m['x_realtime_per_core']:>16.1f}{ratio:>17.2f}{m['x_realtime']:>17.1f}"
              f"{m['cpu_s']:>9.1f}{m['sys_s']:>7.1f}{m['page_faults'] / 1000:>10.0f}"
              f"{m['peak_rss_mib']:>14.0f}")
    print(f"(peak RSS: each level in a fresh process; the full pipeline's largest worker, its "
          f"driver {r['peak_rss_mib']['driver']:.0f} MiB)\n(sys s, faults k: kernel CPU seconds "
          f"and thousands of page faults, steadier than CPU s on a busy host; the full "
          f"pipeline's include its driver's {r['pipeline']['driver_page_faults'] / 1000:.0f}k)")
    if r.get("analysis_no_motion"):
        a, b = r["analysis"]["cpu_s"], r["analysis_no_motion"]["cpu_s"]
        print(f"camera motion (vector export, fits): {100 * (a - b) / b:+.1f} % of the analysis "
              "pass")
    tf = r.get("text_filter")
    if tf:
        print(f"text filter (off by default): {1000 * tf['cpu_s_per_clip']:.0f} ms CPU per clip "
              f"({tf['frames']} frames each, {tf['clips']} clips: grab + PP-OCRv4 det)")
    _print_split(r["analysis"], r["pipeline"])
    cut = r["pipeline"].get("cut")
    if cut and cut["clips"]:
        print()
        for line in cut_lines(cut, r["decode_only"].get("by_codec") or {}):
            print(line)
    print(f"\nclips kept {r['clips']['kept']}, dropped {r['clips']['dropped']}; "
          f"{r['core_hours_per_video_hour']:.4f} core-hours per hour of video "
          f"({1 / r['core_hours_per_video_hour']:.1f} video-hours per core-hour)")


def cut_lines(cut: dict[str, Any], sources: dict[str, dict[str, float]]) -> list[str]:
    """The cutter's work in words: frames copied against re-encoded, per clip codec (with the
    cut methods), then how often the sources have a keyframe. A smart cut copies packets from
    the first keyframe inside a clip on, so sparse keyframes mean more frames re-encoded."""
    def share(part: dict[str, Any]) -> str:
        redone = part["frames"] - part["copied"]
        return f"{redone} re-encoded ({100 * redone / max(1, part['frames']):.0f} %)"

    def clips(n: int) -> str:
        return f"{n} clip" + ("" if n == 1 else "s")

    out = [f"cut: {clips(cut['clips'])}, {cut['frames']} frames, {share(cut)}, the rest copied"]
    codecs: dict[str, dict[str, Any]] = {}
    for p in cut["parts"]:
        c = codecs.setdefault(p["codec"], {"clips": 0, "frames": 0, "copied": 0, "methods": {}})
        for k in ("clips", "frames", "copied"):
            c[k] += p[k]
        c["methods"][p["method"]] = c["methods"].get(p["method"], 0) + p["clips"]
    for name, c in codecs.items():
        methods = ", ".join(f"{m} {n}" for m, n in sorted(c["methods"].items()))
        out.append(f"  {name:<8} {clips(c['clips']):>11} {c['frames']:>9} frames  {share(c)}"
                   f"  ({methods})")
    keys = [f"{name} one every {s['seconds'] / s['keyframes']:.1f} s" for name, s in
            sorted(sources.items()) if s.get("keyframes")]
    if keys:
        out.append(f"source keyframes: {', '.join(keys)}")
    return out


def _print_split(ana: dict[str, Any], full: dict[str, Any]) -> None:
    """CPU seconds and share of the level's CPU per stage, in :data:`STAGES` order (stages no
    code charges yet are absent), then the full pipeline's driver per phase
    (:data:`DRIVER_PHASES`); the rest is work outside both (imports, other threads)."""
    a, f = ana.get("cpu_split") or {}, full.get("cpu_split") or {}
    stages = [s for s in STAGES if s in a or s in f]
    stages += sorted((set(a) | set(f)) - set(STAGES))
    print(f"\n{'CPU split':<24}{'analysis pass':>20}{'full pipeline':>20}")

    def cell(split: dict[str, float], total: float, key: str | None) -> str:
        v = (total - sum(split.values())) if key is None else split.get(key)
        if v is None:
            return f"{'-':>20}"
        return f"{v:>10.2f} s{100 * v / total:>6.1f} %" if total > 0 else f"{v:>10.2f} s{'':>8}"

    for s in stages:
        print(f"{_LABELS.get(s, s.replace('_', ' ')):<24}{cell(a, ana['cpu_s'], s)}"
              f"{cell(f, full['cpu_s'], s)}")
    d = full.get("driver_split") or {}
    phases = [p for p in DRIVER_PHASES if p in d] + sorted(set(d) - set(DRIVER_PHASES))
    for p in phases:
        print(f"{'driver: ' + p:<24}{cell({}, ana['cpu_s'], p)}{cell(d, full['cpu_s'], p)}")
    rest = {**f, **{f"driver: {p}": v for p, v in d.items()}}
    print(f"{'outside the split':<24}{cell(a, ana['cpu_s'], None)}"
          f"{cell(rest, full['cpu_s'], None)}   "
          f"({'' if d else 'driver, '}other threads)")
