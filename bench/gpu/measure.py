"""GPU figures for docs/gpu.md: decode-only, the analysis pass and the full pipeline on a
generated 1080p corpus, software against NVDEC, measured in one run on one machine. The GPU
pipeline also has ``cut.gpu: auto`` (NVENC where a cut is fully re-encoded; the default exact
cut re-encodes only its edges, with x264). Run by ``bench/gpu/run.sh``; without a CUDA device only the software
rows are measured.

    .venv/bin/python bench/gpu/measure.py [--seconds 60] [--workdir bench-out/gpu]
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import av
from av.codec.hwaccel import HWAccel

from clipfactory.config import Config
from clipfactory.media.analyse import analyse
from clipfactory.media.nvdec import cuda_device_opens
from clipfactory.media.probe import probe
from clipfactory.pipeline import run
from clipfactory.shots import check_detector, make_detector
from clipfactory.testing.synth import make_corpus


def _decode(gpu: bool) -> Callable[[str], float]:
    def one(path: str) -> float:
        hw = HWAccel("cuda", allow_software_fallback=False) if gpu else None
        with av.open(path, hwaccel=hw) as c:
            s = c.streams.video[0]
            s.codec_context.thread_count = 1
            assert s.codec_context.is_hwaccel == gpu
            last = 0.0
            for f in c.decode(s):  # NVDEC: each frame copied back to system memory (nv12)
                last = f.time or last
            return last + 1.0 / float(s.average_rate or 30)
    return one


def _analysis(cfg: Config) -> Callable[[str], float]:
    def one(path: str) -> float:
        sig = analyse(probe(path, cfg.ingest), cfg.analysis, make_detector(cfg.shots), threads=1)
        assert sig.decoder == ("nvdec" if cfg.analysis.gpu == "always" else "software")
        return float(sig.times[-1] - sig.times[0]) + 1.0 / sig.fps
    return one


def _measure(fn: Callable[[str], float], paths: list[str]) -> dict[str, float]:
    wall0, cpu0 = time.perf_counter(), time.process_time()
    media = sum(fn(p) for p in paths)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    return {"media_s": media, "wall_s": wall, "cpu_s": cpu}


def _pipeline(corpus: Path, out: Path, cfg: Config) -> dict[str, Any]:
    shutil.rmtree(out, ignore_errors=True)
    wall0, cpu0 = time.perf_counter(), time.process_time()
    summary = run(corpus, out, cfg, quiet=True)
    wall, driver = time.perf_counter() - wall0, time.process_time() - cpu0
    t = summary["throughput"]
    return {"media_s": t["media_s"], "wall_s": wall, "cpu_s": t["cpu_s"] + driver,
            "decoders": t.get("decoders", {}), "clips": summary["counts"]["clips"]["kept"]}


def _config(gpu: bool, workers: int) -> Config:
    cfg = Config(workers=workers)
    cfg.analysis.decode_threads = cfg.cut.threads = 1
    cfg.analysis.gpu = "always" if gpu else "never"
    cfg.cut.gpu = "auto" if gpu else "never"
    return cfg


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=60.0, help="seconds of 1080p to generate")
    ap.add_argument("--videos", type=int, default=4)
    ap.add_argument("--workers", type=int, default=1, help="pipeline workers")
    ap.add_argument("--workdir", default="bench-out/gpu")
    a = ap.parse_args()
    work = Path(a.workdir)
    corpus = work / f"corpus-{a.seconds:g}s-1920x1080"
    if not any(corpus.glob("*.mp4")):
        print(f"generating {a.seconds:g} s of 1920x1080 H.264 in {corpus} ...", flush=True)
        make_corpus(corpus, seconds=a.seconds, videos=a.videos, width=1920, height=1080)
    paths = sorted(str(p) for p in corpus.glob("*.mp4"))
    modes = [False, True] if cuda_device_opens() else [False]
    check_detector(_config(False, a.workers).shots)  # the shot model loads outside the timings
    rows: list[tuple[str, str, dict[str, Any]]] = []
    for gpu in modes:
        name = "nvdec" if gpu else "software"
        rows.append(("decode-only", name, _measure(_decode(gpu), paths)))
        rows.append(("analysis pass", name, _measure(_analysis(_config(gpu, a.workers)), paths)))
        rows.append(("full pipeline", name,
                     _pipeline(corpus, work / f"run-{name}", _config(gpu, a.workers))))
    print(f"\n{len(paths)} videos, {rows[0][2]['media_s']:.0f} s of 1920x1080 H.264, "
          f"threads pinned to 1, {a.workers} pipeline worker(s)\n")
    print(f"{'level':<15}{'decoder':<16}{'x-realtime':>11}{'x-rt/core':>11}{'wall s':>9}"
          f"{'CPU s':>8}")
    for level, name, m in rows:
        print(f"{level:<15}{name:<16}{m['media_s'] / m['wall_s']:>11.1f}"
              f"{m['media_s'] / m['cpu_s']:>11.1f}{m['wall_s']:>9.1f}{m['cpu_s']:>8.1f}")
    for _, name, m in rows:
        if "decoders" in m:
            print(f"{name}: summary decoders {m['decoders']}, {m['clips']} clips kept")
    if len(modes) == 1:
        print("\nno CUDA device opens here: the GPU rows are unmeasured")
    (work / "gpu-bench.json").write_text(json.dumps(
        [{"level": lv, "decoder": n, **m} for lv, n, m in rows], indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
