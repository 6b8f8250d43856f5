"""A generated, deterministic edited corpus with ground truth, for ``clipfactory eval shots``.

Each video is a random edit of 1.5-4 s shots: ordinary textured shots (panning, a moving disc),
the hard negatives of shot detection (fast pans, a shaking camera, strobe light, photo flashes,
big objects crossing the frame, a still shot under sensor noise) and dark, still and blurry
shots, joined by hard cuts, dissolves of 10-25 frames and fades through black (out 8-20 frames,
0-10 frames of black, in 8-20 frames or a cut in from black). Transitions can join any two
kinds, so a dissolve may run between two fast pans. Videos rotate through H.264 (.mp4), VP9
(.webm) and MPEG-4 Part 2 (.avi). ``truth.json`` lists every transition and every shot.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from clipfactory.testing.synth import ShotSpec, write_video

__all__ = ["CODECS", "cached_truth", "corpus_truth", "make_shot_corpus", "random_edit",
           "save_truth"]

CODECS = (("libx264", "mp4"), ("libvpx-vp9", "webm"), ("mpeg4", "avi"))
_KINDS = {  # shot kind: weight. Half of the shots are hard negatives.
    "texture": 0.36, "fastpan": 0.1, "shake": 0.1, "strobe": 0.06, "photoflash": 0.06,
    "object": 0.1, "noisy": 0.08, "dark": 0.04, "static": 0.05, "blurry": 0.05,
}
_JOINS = {"cut": 0.45, "dissolve": 0.3, "fade": 0.25}
_VERSION = 1  # bump when the corpus changes, so a cached corpus is rebuilt


def random_edit(rng: np.random.Generator, frames: int, fps: float, seed0: int) -> list[ShotSpec]:
    """Shots totalling about ``frames`` frames (transitions included)."""
    kinds, kw = list(_KINDS), np.array(list(_KINDS.values()))
    joins, jw = list(_JOINS), np.array(list(_JOINS.values()))
    shots: list[ShotSpec] = []
    total = 0
    while total < frames:
        n = int(rng.uniform(1.5, 4.0) * fps)
        kind = str(rng.choice(kinds, p=kw / kw.sum()))
        seed = seed0 + len(shots)
        join = str(rng.choice(joins, p=jw / jw.sum())) if shots else "cut"
        if join == "dissolve":
            spec = ShotSpec(n, kind, seed, "dissolve", int(rng.integers(10, 26)))
        elif join == "fade":
            fade_in = 0 if rng.random() < 0.25 else int(rng.integers(8, 21))
            spec = ShotSpec(n, kind, seed, "fade", int(rng.integers(8, 21)),
                            int(rng.integers(0, 11)), fade_in)
        else:
            spec = ShotSpec(n, kind, seed)
        shots.append(spec)
        total += n + (spec.transition_frames if len(shots) > 1 else 0)
    return shots


def corpus_truth(video: Any) -> dict[str, Any]:
    """The ground-truth record of a written :class:`~clipfactory.testing.synth.SynthVideo`."""
    shots, pos = [], 0
    for k, s in enumerate(video.shots):
        pos += s.transition_frames if k else 0
        shots.append({"kind": s.kind, "first": pos, "last": pos + s.frames - 1})
        pos += s.frames
    return {
        "path": Path(video.path).name, "fps": video.fps, "frames": video.frames,
        "transitions": [{"type": t.kind, "start_frame": t.start_frame, "end_frame": t.end_frame}
                        for t in video.transitions],
        "shots": shots,
    }


def cached_truth(directory: Path, params: dict[str, Any]) -> list[dict[str, Any]] | None:
    """The truth of a corpus already written under ``directory`` with these ``params`` (and
    every video still there), else None."""
    manifest = directory / "truth.json"
    if manifest.is_file():
        data = json.loads(manifest.read_text(encoding="utf-8"))
        if data.get("params") == params and all((directory / v["path"]).is_file()
                                                for v in data["videos"]):
            return data["videos"]
    return None


def save_truth(directory: Path, params: dict[str, Any], truth: list[dict[str, Any]]) -> None:
    """Write ``truth.json``, which :func:`cached_truth` reads back."""
    (directory / "truth.json").write_text(json.dumps({"params": params, "videos": truth},
                                                     indent=1), encoding="utf-8")


def make_shot_corpus(directory: str | os.PathLike[str], *, videos: int = 12,
                     seconds: float = 25.0, width: int = 640, height: int = 360,
                     fps: float = 30.0, seed: int = 0) -> list[dict[str, Any]]:
    """Write the corpus under ``directory`` (reused when ``truth.json`` there matches these
    arguments) and return its ground truth, one record per video."""
    d = Path(directory)
    params = {"version": _VERSION, "videos": videos, "seconds": seconds, "width": width,
              "height": height, "fps": fps, "seed": seed}
    cached = cached_truth(d, params)
    if cached is not None:
        return cached
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([seed, 3])
    jobs = []
    for v in range(videos):
        codec, ext = CODECS[v % len(CODECS)]
        shots = random_edit(rng, round(seconds * fps), fps, seed * 100_000 + v * 1000)
        jobs.append((d / f"edit_{v:03d}.{ext}", shots, codec))
    with ThreadPoolExecutor(min(len(jobs), os.cpu_count() or 1)) as pool:
        written = list(pool.map(lambda j: write_video(j[0], j[1], fps=fps, width=width,
                                                      height=height, codec=j[2]), jobs))
    truth = [corpus_truth(v) for v in written]
    save_truth(d, params, truth)
    return truth
