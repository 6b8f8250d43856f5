"""``clipfactory eval shots``: shot detectors side by side on one generated corpus, one run.

Every system reads the same files and is scored the same way (:mod:`.shot_metrics`); speed is
frames per CPU-second of this process, decode included (each system decodes as its users would:
clipfactory's detectors through the analysis decode at 160 px, PySceneDetect through its own
``detect()`` with its default OpenCV backend and downscaling), and for clipfactory's detectors
also the detector's own microseconds per frame. Systems whose packages are missing are skipped
with a note.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clipfactory.bench.shot_corpus import make_shot_corpus
from clipfactory.bench.shot_metrics import TYPES, Tally, tally
from clipfactory.config import ShotConfig
from clipfactory.shots.detect import detect_shots

__all__ = ["SYSTEMS", "run_shot_eval"]

_Found = list[tuple[str, int, int]]


@dataclass
class _Result:
    name: str
    tally: Tally
    frames: int = 0
    cpu_s: float = 0.0
    detector_s: float = 0.0  # 0 when the system cannot be split (PySceneDetect)
    note: str = ""


def _ours(detector: str) -> Callable[[str], tuple[_Found, float, float]]:
    def run(path: str) -> tuple[_Found, float, float]:
        r = detect_shots(path, ShotConfig(detector=detector))
        return [(t.kind, t.start_frame, t.end_frame) for t in r.transitions], r.cpu_s, \
            r.detector_cpu_s
    return run


def _pyscenedetect(which: str) -> Callable[[str], tuple[_Found, float, float]]:
    import scenedetect

    def run(path: str) -> tuple[_Found, float, float]:
        det = getattr(scenedetect, which)()  # default settings, as a user would start
        cpu0 = time.process_time()
        scenes = scenedetect.detect(path, det)
        cpu = time.process_time() - cpu0
        cuts = [s[0].get_frames() for s in scenes[1:]]
        return [("cut", t - 1, t) for t in cuts], cpu, 0.0
    return run


def _setup_transnet() -> None:
    from clipfactory.shots.transnet import load_transnet

    load_transnet(ShotConfig().transnet_device)  # load once, outside the timed runs


SYSTEMS: dict[str, tuple[str, Callable[[], Callable[[str], tuple[_Found, float, float]]],
                         Callable[[], None] | None]] = {
    "builtin": ("clipfactory builtin", lambda: _ours("builtin"), None),
    "content": ("clipfactory content (v0, cuts)", lambda: _ours("content"), None),
    "psd-content": ("PySceneDetect ContentDetector", lambda: _pyscenedetect("ContentDetector"),
                    None),
    "psd-adaptive": ("PySceneDetect AdaptiveDetector",
                     lambda: _pyscenedetect("AdaptiveDetector"), None),
    "transnet": ("TransNetV2 (clipfactory backend)", lambda: _ours("transnet"), _setup_transnet),
}


def _evaluate(key: str, truth: list[dict], folder: Path, tolerance: float,
              log: Callable[[str], None]) -> _Result:
    label, make, setup = SYSTEMS[key]
    res = _Result(label, Tally())
    try:
        if setup is not None:
            setup()
        run = make()
    except ImportError as e:
        res.note = f"skipped: {e}"
        return res
    for v in truth:
        found, cpu, det = run(str(folder / v["path"]))
        tally(res.tally, [(t["type"], t["start_frame"], t["end_frame"]) for t in v["transitions"]],
              found, v["shots"], tolerance)
        res.frames += v["frames"]
        res.cpu_s += cpu
        res.detector_s += det
    log(f"  {label}: {res.frames / max(res.cpu_s, 1e-9):.0f} frames/CPU-s")
    return res


def _row(r: _Result) -> dict[str, Any]:
    t = r.tally
    f1 = {k: t.prf([k])[2] for k in TYPES}
    p, rec, f = t.prf(TYPES)
    gradual = ("dissolve", "fade")
    matched_g = sum(t.tp[k] for k in gradual)
    return {
        "system": r.name, "note": r.note, "f1": f1, "gradual_f1": t.prf(gradual)[2],
        "precision": p, "recall": rec, "all_f1": f,
        "fps_cpu": r.frames / r.cpu_s if r.cpu_s else 0.0,
        "detector_us_per_frame": 1e6 * r.detector_s / r.frames if r.detector_s else None,
        "gradual_covered": sum(t.covered[k] for k in gradual) / matched_g if matched_g else None,
        "type_accuracy": sum(t.typed.values()) / max(1, sum(t.tp.values())),
        "tp": dict(t.tp), "fp": dict(t.fp), "fn": dict(t.fn), "fp_where": dict(t.fp_where),
    }


def _print_table(rows: list[dict[str, Any]], header: str) -> None:
    print(header)
    print(f"{'system':34s} {'cut':>5s} {'diss':>5s} {'fade':>5s} {'grad':>5s} {'all':>5s} "
          f"{'P':>5s} {'R':>5s} {'fps/CPU':>8s} {'det us/f':>8s} {'covers':>6s} {'typed':>5s}")
    for r in rows:
        if r["note"]:
            print(f"{r['system']:34s} {r['note']}")
            continue
        us = f"{r['detector_us_per_frame']:.0f}" if r["detector_us_per_frame"] else "-"
        cov = f"{r['gradual_covered']:.2f}" if r["gradual_covered"] is not None else "-"
        print(f"{r['system']:34s} {r['f1']['cut']:5.3f} {r['f1']['dissolve']:5.3f} "
              f"{r['f1']['fade']:5.3f} {r['gradual_f1']:5.3f} {r['all_f1']:5.3f} "
              f"{r['precision']:5.3f} {r['recall']:5.3f} {r['fps_cpu']:8.0f} {us:>8s} {cov:>6s} "
              f"{r['type_accuracy']:5.2f}")


def run_shot_eval(workdir: str | Path = "bench-out/shots", *, videos: int = 12,
                  seconds: float = 25.0, width: int = 640, height: int = 360,
                  tolerance: float = 2, systems: list[str] | None = None,
                  seed: int = 0) -> dict[str, Any]:
    """Generate (or reuse) the corpus, run every system, print the table, write
    ``shot_eval.json`` in ``workdir``; return what was written."""
    work = Path(workdir)
    folder = work / f"corpus-{videos}x{seconds:g}s-{width}x{height}-seed{seed}"
    print(f"corpus: {folder} (generated once, then reused)")
    truth = make_shot_corpus(folder, videos=videos, seconds=seconds, width=width, height=height,
                             seed=seed)
    frames = sum(v["frames"] for v in truth)
    counts = {k: sum(1 for v in truth for t in v["transitions"] if t["type"] == k) for k in TYPES}
    results = []
    for key in systems or list(SYSTEMS):
        print(f"running {SYSTEMS[key][0]} ...", flush=True)
        results.append(_evaluate(key, truth, folder, tolerance, lambda m: print(m, flush=True)))
    rows = [_row(r) for r in results]
    header = (f"\nshot detection: {len(truth)} videos, {frames} frames "
              f"({frames / 30 / 60:.1f} min at 30 fps), {width}x{height}, H.264/VP9/MPEG-4; "
              f"truth: {counts['cut']} cuts, {counts['dissolve']} dissolves, {counts['fade']} "
              f"fades; F1 with a tolerance of {tolerance:g} frames\n")
    _print_table(rows, header)
    by_name = {r["system"]: r for r in rows}
    ours, ref = by_name.get(SYSTEMS["builtin"][0]), by_name.get(SYSTEMS["psd-content"][0])
    if ours and ref and ref["fps_cpu"] and not ref["note"]:
        print(f"\nbuiltin speed / PySceneDetect ContentDetector speed (CPU seconds, decode "
              f"included, same run): {ours['fps_cpu'] / ref['fps_cpu']:.2f}x")
    kinds = sorted({k for r in rows for k in r["fp_where"]})
    if kinds:
        print("\nfalse positives by where they fall (shot kind, or inside a true transition):")
        print(f"{'system':34s} " + " ".join(f"{k[:10]:>10s}" for k in kinds))
        for r in rows:
            if not r["note"]:
                print(f"{r['system']:34s} " + " ".join(f"{r['fp_where'].get(k, 0):10d}"
                                                      for k in kinds))
    print("\ncovers: share of found dissolves/fades whose span covers the true one within the "
          "tolerance;\ntyped: share of matches whose type is right; det us/f: detector only, "
          "per frame")
    out = {"corpus": str(folder), "frames": frames, "truth": counts, "tolerance": tolerance,
           "systems": rows}
    work.mkdir(parents=True, exist_ok=True)
    (work / "shot_eval.json").write_text(json.dumps(out, indent=1), encoding="utf-8")
    return out
