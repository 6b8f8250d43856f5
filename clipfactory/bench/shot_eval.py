"""``clipfactory eval shots``: shot detectors side by side on one generated corpus, one run.

Every system reads the same files and is scored the same way (:mod:`.shot_metrics`). Speed is
measured in CPU seconds of this process, two ways:

- end to end, decode included, each system decoding as its users would: clipfactory's detectors
  through the analysis decode (PyAV, scaled to 160 px), PySceneDetect through its own
  ``detect()`` (OpenCV backend, its default downscaling);
- beyond decoding: the same minus what merely decoding the file costs with that system's
  decoder (PyAV decode; OpenCV ``VideoCapture.read``, which also converts to BGR), measured on
  the same files in the same run. Inside ``clipfactory run`` the decode is shared by every
  signal, so this is what a detector adds there (clipfactory's figure includes the 160-px
  scaling, which the analysis pass does anyway).

Systems whose packages are missing are skipped with a note.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clipfactory.bench.real_corpus import DISSOLVE_FRAMES, load_sources, make_real_corpus
from clipfactory.bench.shot_corpus import make_shot_corpus
from clipfactory.bench.shot_metrics import TYPES, Tally, dirty_clips, tally
from clipfactory.config import ShotConfig
from clipfactory.shots import check_detector
from clipfactory.shots.detect import detect_shots

__all__ = ["SYSTEMS", "run_shot_eval"]

_Found = list[tuple[str, int, int]]


@dataclass
class _Result:
    name: str
    tally: Tally
    frames: int = 0
    cpu_s: float = 0.0
    detector_s: float = 0.0  # the detector's own calls (PySceneDetect: process_frame)
    decode_s: float = 0.0  # what decoding alone costs with this system's decoder
    dirty: int = 0  # planned clips that hold a transition frame
    clips: int = 0
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
        inner, spent = det.process_frame, [0.0]

        def timed(*args: Any, **kwargs: Any) -> Any:  # the detector's own share: this
            t0 = time.thread_time()  # thread's CPU, as PySceneDetect decodes in another one
            try:
                return inner(*args, **kwargs)
            finally:
                spent[0] += time.thread_time() - t0

        det.process_frame = timed
        cpu0 = time.process_time()
        scenes = scenedetect.detect(path, det)
        cpu = time.process_time() - cpu0
        cuts = [getattr(s[0], "frame_num", None) or s[0].get_frames() for s in scenes[1:]]
        return [("cut", t - 1, t) for t in cuts], cpu, spent[0]
    return run


def _load_network() -> None:
    check_detector(ShotConfig(detector="transnet"))  # loads it once, outside the timed runs


def decode_cpu_s(path: str, decoder: str) -> float:
    """CPU seconds to decode every frame of ``path`` and nothing else: ``pyav`` (one thread,
    as the analysis pass) or ``opencv`` (``VideoCapture.read``, as PySceneDetect)."""
    cpu0 = time.process_time()
    if decoder == "opencv":
        import cv2

        cap = cv2.VideoCapture(path)
        while cap.read()[0]:
            pass
        cap.release()
    else:
        from clipfactory.media.probe import open_video

        container, stream = open_video(path, threads=1)
        with container:
            for _ in container.decode(stream):
                pass
    return time.process_time() - cpu0


_Make = Callable[[], Callable[[str], tuple[_Found, float, float]]]
SYSTEMS: dict[str, tuple[str, _Make, Callable[[], None] | None, str]] = {
    "hybrid": ("clipfactory hybrid (default)", lambda: _ours("hybrid"), _load_network, "pyav"),
    "builtin": ("clipfactory builtin", lambda: _ours("builtin"), None, "pyav"),
    "content": ("clipfactory content (v0, cuts)", lambda: _ours("content"), None, "pyav"),
    "psd-content": ("PySceneDetect ContentDetector", lambda: _pyscenedetect("ContentDetector"),
                    None, "opencv"),
    "psd-adaptive": ("PySceneDetect AdaptiveDetector",
                     lambda: _pyscenedetect("AdaptiveDetector"), None, "opencv"),
    "transnet": ("TransNetV2 (ONNX, every frame)", lambda: _ours("transnet"), _load_network,
                 "pyav"),
}


def _evaluate(key: str, truth: list[dict], folder: Path, tolerance: float,
              log: Callable[[str], None]) -> _Result:
    label, make, setup, decoder = SYSTEMS[key]
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
        true = [(t["type"], t["start_frame"], t["end_frame"]) for t in v["transitions"]]
        tally(res.tally, true, found, v["shots"], tolerance)
        dirty, clips = dirty_clips(true, found, v["frames"], v["fps"])
        res.dirty += dirty
        res.clips += clips
        res.frames += v["frames"]
        res.cpu_s += cpu
        res.detector_s += det
        res.decode_s += decode_cpu_s(str(folder / v["path"]), decoder)
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
        "gradual_recall": t.prf(gradual)[1],
        "precision": p, "recall": rec, "all_f1": f,
        "fps_cpu": r.frames / r.cpu_s if r.cpu_s else 0.0,
        "detector_us_per_frame": 1e6 * r.detector_s / r.frames if r.detector_s else None,
        "beyond_decode_us_per_frame": 1e6 * max(0.0, r.cpu_s - r.decode_s) / r.frames
        if r.frames else 0.0,
        "gradual_covered": sum(t.covered[k] for k in gradual) / matched_g if matched_g else None,
        "type_accuracy": sum(t.typed.values()) / max(1, sum(t.tp.values())),
        "dirty_clips": r.dirty / r.clips if r.clips else 0.0, "clips": r.clips,
        "recall_by_type": {k: t.tp[k] / max(1, t.tp[k] + t.fn[k]) for k in TYPES},
        "tp": dict(t.tp), "fp": dict(t.fp), "fn": dict(t.fn), "fp_where": dict(t.fp_where),
    }


def _print_table(rows: list[dict[str, Any]], header: str) -> None:
    print(header)
    print(f"{'system':34s} {'cut':>5s} {'diss':>5s} {'fade':>5s} {'grad':>5s} {'all':>5s} "
          f"{'P':>5s} {'R':>5s} {'R grad':>6s} {'flash':>5s} {'dirty':>5s} {'fps/CPU':>7s} "
          f"{'+us/f':>6s} {'det us':>6s} {'covers':>6s} {'typed':>5s}")
    for r in rows:
        if r["note"]:
            print(f"{r['system']:34s} {r['note']}")
            continue
        us = f"{r['detector_us_per_frame']:.0f}" if r["detector_us_per_frame"] else "-"
        extra = f"{r['beyond_decode_us_per_frame']:.0f}"
        cov = f"{r['gradual_covered']:.2f}" if r["gradual_covered"] is not None else "-"
        print(f"{r['system']:34s} {r['f1']['cut']:5.3f} {r['f1']['dissolve']:5.3f} "
              f"{r['f1']['fade']:5.3f} {r['gradual_f1']:5.3f} {r['all_f1']:5.3f} "
              f"{r['precision']:5.3f} {r['recall']:5.3f} {r['gradual_recall']:6.3f} "
              f"{r['fp_where'].get('flash', 0):5d} {100 * r['dirty_clips']:4.1f}% "
              f"{r['fps_cpu']:7.0f} {extra:>6s} {us:>6s} "
              f"{cov:>6s} "
              f"{r['type_accuracy']:5.2f}")


def run_shot_eval(workdir: str | Path = "bench-out/shots", *, videos: int = 12,
                  seconds: float = 25.0, width: int = 640, height: int = 360,
                  tolerance: float = 2, systems: list[str] | None = None,
                  seed: int = 0, real: str | Path | None = None,
                  split: str = "holdout", fps: float = 25.0,
                  dissolve: tuple[int, int] = DISSOLVE_FRAMES) -> dict[str, Any]:
    """Generate (or reuse) the corpus, run every system, print the table, write
    ``shot_eval.json`` in ``workdir``; return what was written.

    ``real`` (a segments JSON file or a folder of single-shot videos) edits real footage
    instead of generating textures (:mod:`.real_corpus`), from the sources of ``split``
    (``holdout``, ``tune`` or ``all``), at ``fps``, with cross-dissolves of ``dissolve``
    (shortest, longest) frames."""
    work = Path(workdir)
    if real is not None:
        sources = load_sources(real, split)
        more = (f"-{fps:g}fps" if fps != 25.0 else "") + (
            f"-diss{dissolve[0]}-{dissolve[1]}" if tuple(dissolve) != DISSOLVE_FRAMES else "")
        folder = work / f"real-{split}-{videos}x{seconds:g}s-{width}x{height}-seed{seed}{more}"
        print(f"corpus: {folder} ({len(sources)} real segments of split {split!r}, from "
              f"{len({s.path for s in sources})} files)")
        truth = make_real_corpus(sources, folder, videos=videos, seconds=seconds, width=width,
                                 height=height, seed=seed, fps=fps, dissolve=dissolve)
        what = f"real footage ({split}), H.264/VP9"
    else:
        folder = work / f"corpus-{videos}x{seconds:g}s-{width}x{height}-seed{seed}"
        print(f"corpus: {folder} (generated once, then reused)")
        truth = make_shot_corpus(folder, videos=videos, seconds=seconds, width=width,
                                 height=height, seed=seed)
        what = "generated, H.264/VP9/MPEG-4"
    frames = sum(v["frames"] for v in truth)
    fps = truth[0]["fps"] if truth else 30.0
    counts = {k: sum(1 for v in truth for t in v["transitions"] if t["type"] == k) for k in TYPES}
    flashes = sum(len(v.get("flashes", ())) for v in truth)
    results = []
    for key in systems or list(SYSTEMS):
        print(f"running {SYSTEMS[key][0]} ...", flush=True)
        results.append(_evaluate(key, truth, folder, tolerance, lambda m: print(m, flush=True)))
    rows = [_row(r) for r in results]
    header = (f"\nshot detection: {len(truth)} videos, {frames} frames "
              f"({frames / fps / 60:.1f} min at {fps:g} fps), {width}x{height}, {what}; "
              f"truth: {counts['cut']} cuts, {counts['dissolve']} dissolves, {counts['fade']} "
              f"fades" + (f", {flashes} flashes inside shots" if flashes else "")
              + f"; F1 with a tolerance of {tolerance:g} frames\n")
    _print_table(rows, header)
    by_name = {r["system"]: r for r in rows}
    ref = by_name.get(SYSTEMS["psd-content"][0])
    for key in ("hybrid", "builtin"):
        ours = by_name.get(SYSTEMS[key][0])
        if not (ours and ref and ref["fps_cpu"] and not ref["note"] and not ours["note"]):
            continue
        beyond = ref["beyond_decode_us_per_frame"] / max(ours["beyond_decode_us_per_frame"], 1e-9)
        alone = (ref["detector_us_per_frame"] or 0) / max(ours["detector_us_per_frame"] or 0, 1e-9)
        print(f"\n{key} vs PySceneDetect ContentDetector, same run, CPU seconds: "
              f"{ours['fps_cpu'] / ref['fps_cpu']:.2f}x as fast end to end (decode included), "
              f"{beyond:.2f}x beyond decoding, {alone:.2f}x for the detector alone", end="")
    print()
    kinds = sorted({k for r in rows for k in r["fp_where"]})
    if kinds:
        print("\nfalse positives by where they fall (shot kind, or inside a true transition):")
        print(f"{'system':34s} " + " ".join(f"{k[:10]:>10s}" for k in kinds))
        for r in rows:
            if not r["note"]:
                print(f"{r['system']:34s} " + " ".join(f"{r['fp_where'].get(k, 0):10d}"
                                                      for k in kinds))
    print("\nR grad: recall of dissolves and fades; flash: false positives on flashes inside "
          "shots;\ndirty: share of the clips planned from the found transitions that hold a "
          "transition frame;\nfps/CPU: frames per CPU-second, decode included; +us/f: CPU "
          "microseconds per frame beyond decoding;\ndet us: the detector alone; covers: share of found dissolves/fades "
          "whose span covers the true one\nwithin the tolerance; typed: share of matches whose "
          "type is right")
    out = {"corpus": str(folder), "frames": frames, "truth": counts, "flashes": flashes,
           "tolerance": tolerance, "systems": rows}
    work.mkdir(parents=True, exist_ok=True)
    (work / "shot_eval.json").write_text(json.dumps(out, indent=1), encoding="utf-8")
    return out
