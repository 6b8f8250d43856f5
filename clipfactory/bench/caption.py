"""``clipfactory bench --caption``: the caption stage's own cost, against a local test server.

The server (:class:`~clipfactory.testing.vlm_server.VLMServer`) answers at once, so what is
measured is the client side: decoding the sampled frames, scaling, JPEG encoding, HTTP and
JSON, the stage's worker process. Measured in one run: decode-only of the same clips (the
reference), frame sampling and encoding alone, and the whole stage through its runner. A real
model's time per request comes on top (a GPU server's figure is the server's own).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from clipfactory.annotate.caption_frames import encode_jpeg, read_caption_frames
from clipfactory.bench.embed import _decode_all, _make_clips, _timed
from clipfactory.config import CaptionConfig
from clipfactory.stages.base import ClipInput

__all__ = ["run_caption_bench"]


def run_caption_bench(workdir: str | os.PathLike[str], *, clips: int = 48, seconds: float = 3.0,
                      width: int = 640, height: int = 360, fps: float = 30.0,
                      concurrency: int = 8, batch: int = 8) -> dict[str, Any]:
    """Measure (see module doc), print a table, return the figures."""
    from clipfactory.annotate.captions import CaptionStage
    from clipfactory.stages.local import StageRunner
    from clipfactory.testing.vlm_server import VLMServer

    folder = Path(workdir) / f"clips-{seconds:g}s-{width}x{height}-{fps:g}fps"
    paths = _make_clips(folder, clips, seconds, width, height, fps)
    n_frames = round(seconds * fps)
    inputs = [ClipInput(p.stem, str(p), None, num_frames=n_frames, fps=fps, width=width,
                        height=height) for p in paths]
    rows: dict[str, dict[str, Any]] = {}
    _, w, c = _timed(lambda: [_decode_all(str(p)) for p in paths])
    rows["decode-only (every frame)"] = {"wall_s": w, "cpu_s": c}
    with VLMServer() as server:
        cfg = CaptionConfig(backend="openai", base_url=server.base_url, model="fake-vlm",
                            concurrency=concurrency, batch=batch)

        def frames() -> int:
            sent = 0
            for clip in inputs:
                cf = read_caption_frames(clip, cfg.fps, cfg.max_frames, cfg.max_side)
                sent += sum(len(encode_jpeg(f)) > 0 for f in cf.overview)
            return sent

        sent, w, c = _timed(frames)
        rows["frames: sample, scale, JPEG"] = {"wall_s": w, "cpu_s": c}
        runner = StageRunner(CaptionStage(cfg))
        try:
            w0 = time.perf_counter()
            c0 = os.times()
            runner.submit(inputs)
            outs = runner.drain()
            w = time.perf_counter() - w0
            c1 = os.times()
        finally:
            runner.close()
        cpu = (c1.user - c0.user) + (c1.system - c0.system) + (
            c1.children_user - c0.children_user) + (c1.children_system - c0.children_system)
        rows["stage, end to end (own process)"] = {"wall_s": w, "cpu_s": cpu}
        requests = len(server.requests)
    ok = sum(o.fields.get("caption_status") == "ok" for o in outs)
    for r in rows.values():
        r["clips_per_s"] = clips / r["wall_s"]
    print(f"clipfactory bench --caption: {clips} clips of {seconds:g} s {width}x{height} at "
          f"{fps:g} fps; {sent // clips} frames a clip at 2 fps, longer side 768, JPEG; a local "
          f"test server that answers at once; concurrency {concurrency}, batch {batch}")
    print(f"{'level':36} {'wall s':>8} {'CPU s':>8} {'clips/s':>9}")
    for name, r in rows.items():
        print(f"{name:36} {r['wall_s']:8.2f} {r['cpu_s']:8.2f} {r['clips_per_s']:9.1f}")
    print(f"captions ok {ok}/{clips}, {requests} requests; the stage's wall time includes "
          "starting its worker process")
    return {"clips": clips, "frames_per_clip": sent // clips, "requests": requests, "ok": ok,
            "rows": rows}
