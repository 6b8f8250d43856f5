"""``clipfactory bench --embed``: throughput of the embedding stage against decode-only of the
same clips, all measured in one run.

On ``clips`` generated short clips (cached in the workdir) it measures, in this order:

1. decode-only: every frame of every clip decoded by PyAV, nothing converted (the reference);
2. frame sampling: :func:`~clipfactory.annotate.frames.sample_frames` on each clip;
3. model only: :meth:`~clipfactory.annotate.clip_model.ClipEmbedder.embed_frames_pooled` on
   the frames sampled in 2, ``batch`` clips a call, after one warm-up call;
4. the stage: :class:`~clipfactory.annotate.embeddings.EmbeddingStage` in a
   :class:`~clipfactory.stages.local.StageRunner` (its own process), every clip submitted, then
   drained: end to end from a fresh runner (process start, model load, the zero-shot label
   vectors, every clip; also when its first output came), then the same clips again in the
   same runner (warm).

3 and 4 run again on the GPU when torch sees one. Each level reports wall and CPU seconds
(the stage's CPU: driver and worker), clips/s, frames/s and its clips/s over decode-only's.
The default model is :func:`make_vitb32_shaped`: random weights in the exact shape of
openai/clip-vit-base-patch32, which cost what the real weights cost.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import resource
import time
from collections import Counter
from pathlib import Path
from typing import Any

import av

from clipfactory.annotate.frames import sample_frames
from clipfactory.bench.embed_model import make_vitb32_shaped
from clipfactory.stages.base import ClipInput

__all__ = ["make_vitb32_shaped", "run_embed_bench"]

RANDOM_VITB32 = "random weights, ViT-B/32 shape"
CLIP_KINDS = ("texture", "fastpan", "shake", "blurry")  # moving content: realistic decode cost


def _make_clips(folder: Path, clips: int, seconds: float, width: int, height: int,
                fps: float) -> list[Path]:
    from clipfactory.testing.synth import ShotSpec, write_video

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(clips):
        p = folder / f"clip-{i:03d}.mp4"
        if not p.is_file():
            tmp = folder / f"clip-{i:03d}.tmp.mp4"
            shot = ShotSpec(max(1, round(seconds * fps)), CLIP_KINDS[i % len(CLIP_KINDS)], i)
            write_video(tmp, [shot], fps=fps, width=width, height=height)
            tmp.replace(p)
        paths.append(p)
    return paths


def _decode_all(path: str) -> int:
    """Decode every frame, threaded as :func:`sample_frames` decodes; no conversion."""
    with av.open(path) as c:
        s = c.streams.video[0]
        s.thread_type = "AUTO"
        return sum(1 for _ in c.decode(s))


def _row(clips: int, frames: int, wall: float, cpu: float | None) -> dict[str, Any]:
    return {"clips": clips, "frames": frames, "wall_s": wall, "cpu_s": cpu,
            "clips_per_s": clips / wall, "frames_per_s": frames / wall}


def _timed(fn: Any) -> tuple[Any, float, float]:
    w0, c0 = time.perf_counter(), time.process_time()
    value = fn()
    return value, time.perf_counter() - w0, time.process_time() - c0


def _proc(pids: list[int], what: str) -> float | None:
    """Linux: summed CPU seconds (``cpu``) or peak RSS MiB (``hwm``) of live processes."""
    total = 0.0
    try:
        for pid in pids:
            if what == "cpu":
                f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime
            else:
                line = next(x for x in Path(f"/proc/{pid}/status").read_text().splitlines()
                            if x.startswith("VmHWM:"))
                total = max(total, int(line.split()[1]) / 1024)
    except (OSError, ValueError, IndexError, StopIteration):
        return None
    return total


def _machine_cpu_s() -> float | None:
    """Linux: CPU seconds every process of the machine has used (busy time in /proc/stat)."""
    try:
        ticks = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    return (sum(ticks[:8]) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")  # less idle, iowait


def _own_cpu_s() -> float:
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + kids.ru_utime + kids.ru_stime


def _model_only(resolved: Any, groups: list[list[Any]], batch: int, device: str
                ) -> tuple[dict[str, Any], float]:
    from clipfactory.annotate.clip_model import ClipEmbedder

    t0 = time.perf_counter()
    emb = ClipEmbedder(resolved, device=device)
    load = time.perf_counter() - t0
    emb.embed_frames_pooled(groups[:1])  # first-call allocations (and CUDA kernels) untimed
    _, wall, cpu = _timed(lambda: [emb.embed_frames_pooled(groups[i:i + batch])
                                   for i in range(0, len(groups), batch)])
    return _row(len(groups), sum(len(g) for g in groups), wall, cpu), load


def _first_then_drain(runner: Any, inputs: list[ClipInput], step: int, t0: float
                      ) -> tuple[list[Any], float]:
    """Submit a batch at a time and poll, to see when the first output comes; then drain."""
    outs: list[Any] = []
    first = None

    def take() -> None:
        nonlocal first
        outs.extend(runner.poll())
        if outs and first is None:
            first = time.perf_counter() - t0

    for i in range(0, len(inputs), step):
        runner.submit(inputs[i:i + step])
        take()
    while first is None and runner.pending > len(inputs) % step:  # the rest waits for drain
        time.sleep(0.02)
        take()
    outs.extend(runner.drain())
    return outs, first if first is not None else time.perf_counter() - t0


def _stage(model: str, inputs: list[ClipInput], frames: int, batch: int, device: str,
           sampled: dict[str, int]) -> dict[str, Any]:
    from clipfactory.annotate.embeddings import EmbeddingStage
    from clipfactory.config import AnnotateConfig, EmbeddingConfig
    from clipfactory.stages.local import StageRunner

    stage = EmbeddingStage(AnnotateConfig(embeddings=EmbeddingConfig(
        model=model, frames=frames, batch=batch, device=device)))
    stage.resolve()  # in the driver, as the pipeline does
    kids0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    c0, w0 = time.process_time(), time.perf_counter()
    runner = StageRunner(stage)
    try:
        pids = [p.pid for p in mp.active_children() if p.name == f"clipfactory-{stage.name}"]
        cold, first = _first_then_drain(runner, inputs, batch, w0)
        c1, w1, kid1 = time.process_time(), time.perf_counter(), _proc(pids, "cpu")
        runner.submit(inputs)  # the same clips again, model loaded
        warm = runner.drain()
        c2, w2, kid2 = time.process_time(), time.perf_counter(), _proc(pids, "cpu")
        hwm = _proc(pids, "hwm")
    finally:
        runner.close()
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    child_cpu = (kids.ru_utime + kids.ru_stime) - (kids0.ru_utime + kids0.ru_stime)
    failed = Counter(o.reason for o in cold + warm if not o.ok)
    ok_cold = [o.clip_id for o in cold if o.ok]
    ok_warm = [o.clip_id for o in warm if o.ok]
    cold_cpu = None if kid1 is None else c1 - c0 + kid1
    warm_cpu = None if kid1 is None or kid2 is None else c2 - c1 + kid2 - kid1
    return {"end_to_end": _row(len(ok_cold), sum(sampled[c] for c in ok_cold), w1 - w0,
                               cold_cpu),
            "warm": _row(len(ok_warm), sum(sampled[c] for c in ok_warm), w2 - w1, warm_cpu),
            "first_output_s": first, "child_cpu_s_total": child_cpu,
            "worker_peak_rss_mib": hwm if hwm is not None
            else kids.ru_maxrss / 1024, "failed": dict(failed)}


def _gpu(device: str) -> tuple[str | None, str]:
    """The GPU to measure on, and what to print about it."""
    from clipfactory.annotate.clip_model import pick_device

    if device == "cpu":
        return None, "GPU: skipped (device cpu)"
    gpu = pick_device(device)  # cuda asked for and absent: ModelLoadError
    if gpu == "cpu":
        return None, "GPU: none on this machine, skipped"
    import torch

    return gpu, f"GPU: {torch.cuda.get_device_name(torch.device(gpu))}"


def run_embed_bench(workdir: str | os.PathLike[str], *, model: str | None = None,
                    clips: int = 48, frames: int = 4, batch: int = 16, device: str = "auto",
                    seconds: float = 3.0, width: int = 640, height: int = 360,
                    fps: float = 30.0) -> dict[str, Any]:
    """Measure the embedding stage (see module doc), print a table, write
    ``bench-embed.json`` in ``workdir`` and return the figures. ``model``: a checkpoint folder
    or a cached hub id (default: :func:`make_vitb32_shaped` in the workdir); ``device``:
    ``auto`` (CPU, then the GPU when torch sees one), ``cpu``, or ``cuda[:N]`` (CPU, then that
    GPU; raises when there is none). Clips: ``seconds`` of ``width`` x ``height`` H.264."""
    import torch

    from clipfactory.annotate.clip_model import resolve_model

    work = Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    gpu, gpu_line = _gpu(device)
    spec = model or str(make_vitb32_shaped(work / "clip-vit-b32-random"))
    resolved = resolve_model(spec)
    folder = work / f"clips-{seconds:g}s-{width}x{height}-{fps:g}fps"
    paths = [str(p) for p in _make_clips(folder, clips, seconds, width, height, fps)]

    busy0, mine0 = _machine_cpu_s(), _own_cpu_s()
    counts, wall, cpu = _timed(lambda: [_decode_all(p) for p in paths])
    levels: dict[str, Any] = {"decode_only": _row(len(paths), sum(counts), wall, cpu)}
    inputs = [ClipInput(f"clip-{i:03d}", p, num_frames=n, fps=fps, width=width, height=height)
              for i, (p, n) in enumerate(zip(paths, counts, strict=True))]
    groups, wall, cpu = _timed(lambda: [sample_frames(c, frames) for c in inputs])
    levels["sampling"] = _row(len(groups), sum(len(g) for g in groups), wall, cpu)
    sampled = {c.clip_id: len(g) for c, g in zip(inputs, groups, strict=True)}

    devices: dict[str, Any] = {}
    for dev in ["cpu"] + ([gpu] if gpu else []):
        row, load = _model_only(resolved, groups, batch, dev)
        devices[dev] = {"model": row, "model_load_s": load,
                        **_stage(spec, inputs, frames, batch, dev, sampled)}
    busy = _machine_cpu_s()
    others = None if busy is None or busy0 is None else max(
        0.0, busy - busy0 - (_own_cpu_s() - mine0))
    ref = levels["decode_only"]["clips_per_s"]
    for r in [*levels.values(), *(d[k] for d in devices.values()
                                  for k in ("model", "end_to_end", "warm"))]:
        r["ratio_to_decode"] = r["clips_per_s"] / ref
    cfg = json.loads((resolved.path / "config.json").read_text())
    result = {
        "model": {"spec": spec, "kind": resolved.kind, "revision": resolved.revision,
                  "random_vitb32": model is None,
                  "image_size": cfg["vision_config"].get("image_size"),
                  "patch_size": cfg["vision_config"].get("patch_size")},
        "corpus": {"clips": len(paths), "seconds": seconds, "size": f"{width}x{height}",
                   "fps": fps, "codec": "h264"},
        "frames": frames, "batch": batch, "torch_threads": torch.get_num_threads(),
        "cpus": os.cpu_count(), "others_cpu_s": others,
        **levels, "devices": devices, "gpu": gpu_line,
        "peak_rss_mib": {"driver": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                         "stage_worker": max(d["worker_peak_rss_mib"]
                                             for d in devices.values())},
    }
    (work / "bench-embed.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
    _print(result)
    return result


def _print(r: dict[str, Any]) -> None:
    c, m = r["corpus"], r["model"]
    what = RANDOM_VITB32 if m["random_vitb32"] else m["kind"]
    print(f"\nclipfactory bench --embed: {c['clips']} clips of {c['seconds']:g} s {c['size']} "
          f"{c['codec']} at {c['fps']:g} fps; {r['frames']} frames a clip, batch {r['batch']}, "
          f"torch threads {r['torch_threads']}, {r['cpus']} CPUs")
    print(f"model: {m['spec']} ({what}; {m['image_size']} px, patch {m['patch_size']})\n")
    print(f"{'level':<34}{'clips':>6}{'frames':>8}{'wall s':>8}{'CPU s':>8}{'clips/s':>9}"
          f"{'frames/s':>10}{'vs decode':>11}")

    def line(name: str, x: dict[str, Any]) -> None:
        cpu = "-" if x["cpu_s"] is None else f"{x['cpu_s']:.2f}"
        print(f"{name:<34}{x['clips']:>6}{x['frames']:>8}{x['wall_s']:>8.2f}{cpu:>8}"
              f"{x['clips_per_s']:>9.2f}{x['frames_per_s']:>10.1f}{x['ratio_to_decode']:>11.3f}")

    line("decode-only (every frame)", r["decode_only"])
    line("frame sampling", r["sampling"])
    for dev, d in r["devices"].items():
        line(f"model only [{dev}]", d["model"])
        line(f"stage, end to end [{dev}]", d["end_to_end"])
        line(f"stage, warm [{dev}]", d["warm"])
        print(f"  {dev}: the stage's first output after {d['first_output_s']:.1f} s (process "
              f"start, model load, label vectors, first batch); model load in-process "
              f"{d['model_load_s']:.1f} s")
        if d["failed"]:
            print(f"  {dev}: FAILED clips: {d['failed']}")
    rss = r["peak_rss_mib"]
    print(f"\n{r['gpu']}")
    if r["others_cpu_s"] is not None:  # a shared machine: other work slows every figure
        print(f"other work on this machine (processes, VM steal) used {r['others_cpu_s']:.1f} "
              "CPU s during the measurements")
    print(f"frames: decode-only counts every decoded frame, the others the sampled frames "
          f"(clips x {r['frames']}); CPU s of the stage: driver + worker process")
    print(f"peak RSS: driver {rss['driver']:.0f} MiB, stage worker {rss['stage_worker']:.0f} MiB")
