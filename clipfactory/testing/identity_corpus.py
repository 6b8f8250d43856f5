"""The small corpus whose clips ``tests/media/test_clip_identity.py`` holds to a recorded golden.

Generated sources cover what the analysis pass and the frame-exact cutter branch on: hard cuts
on and off keyframes, a dissolve, a fade through black, clips ending mid-GOP and on a GOP
boundary, H.264 with and without B-frames, VP9 in WebM; real footage (the test adds the two
files of ``tests/fixtures/real``) is copied in as it is. Every encoder runs with one thread, so
the bytes depend only on the FFmpeg/x264/libvpx build (the golden records each file's sha256).

Regenerate the golden (docs/cutting.md, "Checking that clips stay the same")::

    python -m clipfactory.testing.identity_corpus /tmp/identity-corpus tests/fixtures/real/*.mp4
    python -m clipfactory.bench.identity capture /tmp/identity-corpus \\
        --json tests/fixtures/clip_identity.json
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import av

from clipfactory.testing.synth import ShotSpec, render_frame

__all__ = ["GENERATED", "Source", "write_corpus", "write_source"]

W, H, FPS = 320, 180, 30


@dataclass(frozen=True)
class Source:
    """A generated source: its shots and how they are encoded."""

    shots: tuple[ShotSpec, ...]
    codec: str = "libx264"
    gop: int = 30
    bframes: int = 0


GENERATED: dict[str, Source] = {
    # GOP 30, 3 B-frames: cuts at 90 (a keyframe: a clip starting and one ending on a GOP
    # boundary) and 165 (mid-GOP), a 12-frame dissolve at 245-256, a dark shot (dropped)
    "h264_bframes.mp4": Source((
        ShotSpec(90, "texture", 101), ShotSpec(75, "texture", 102),
        ShotSpec(80, "texture", 103), ShotSpec(70, "texture", 104, "dissolve", 12),
        ShotSpec(65, "dark", 105)), gop=30, bframes=3),
    # GOP 45, no B-frames: a fade out, black and in at 100-121, a static shot (dropped), a cut
    # at 282 (mid-GOP) and a last clip ending mid-GOP at the end of the file
    "h264_no_bframes.mp4": Source((
        ShotSpec(100, "texture", 201), ShotSpec(90, "texture", 202, "fade", 8, 6),
        ShotSpec(70, "static", 203), ShotSpec(66, "texture", 204)), gop=45, bframes=0),
    # VP9 in WebM, GOP 60: a cut at 80, off a keyframe
    "vp9.webm": Source((ShotSpec(80, "texture", 301), ShotSpec(70, "texture", 302)),
                       codec="libvpx-vp9", gop=60),
}


def write_source(path: str | Path, src: Source, width: int = W, height: int = H) -> Path:
    """Encode ``src`` with one encoder thread (x264 with scene-cut keyframes off, so keyframes
    fall every ``gop`` frames; libvpx-vp9 realtime)."""
    shots: Sequence[ShotSpec] = src.shots
    total = sum(s.frames for s in shots) + sum(s.transition_frames for s in shots[1:])
    if src.codec == "libx264":
        opts = {"preset": "ultrafast", "crf": "18", "x264-params": "scenecut=0"}
    else:
        opts = {"crf": "18", "b": "0", "deadline": "realtime", "cpu-used": "8"}
    with av.open(str(path), "w", options={"fflags": "+bitexact"}) as out:  # no random UIDs
        stream = out.add_stream(src.codec, rate=FPS, options=opts)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        cc = stream.codec_context
        cc.thread_count, cc.gop_size, cc.max_b_frames = 1, src.gop, src.bframes
        for i in range(total):
            frame = av.VideoFrame.from_ndarray(render_frame(shots, i, width, height), "rgb24")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return Path(path)


def write_corpus(directory: str | Path, real: Sequence[str | Path] = ()) -> list[Path]:
    """Write the generated sources into ``directory`` and copy the ``real`` files beside them."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    paths = [write_source(d / name, src) for name, src in GENERATED.items()]
    paths += [Path(shutil.copyfile(f, d / Path(f).name)) for f in real]
    return paths


if __name__ == "__main__":
    for p in write_corpus(sys.argv[1], sys.argv[2:]):
        print(p)
