"""Animated GIFs in a folder are inputs: cut at their shot change into H.264 clips with the
GIF's frames; a still GIF (an icon) is one frame, dropped as too short. Before, a folder's
GIFs were not picked up at all."""

from __future__ import annotations

import io
from pathlib import Path

import av
import numpy as np

from clipfactory.config import Config
from clipfactory.pipeline import run
from clipfactory.sinks.parts import read_index, read_rejected
from clipfactory.testing.outputs import clip_members


def _shot(kind: int, n: int) -> list[np.ndarray]:
    """``n`` 160x120 frames: a gradient (one per ``kind``) with a white box moving right."""
    y, x = np.mgrid[0:120, 0:160]
    base = (np.stack([x * 255 // 160, np.full_like(x, 60), 255 - x * 255 // 160], -1) if kind == 0
            else np.stack([np.full_like(y, 30), y * 255 // 120, np.full_like(y, 90)], -1))
    out = []
    for i in range(n):
        img = base.astype(np.uint8)
        img[40:70, 10 + 2 * i:40 + 2 * i] = 255
        out.append(img)
    return out


def _gif(path: Path, frames: list[np.ndarray]) -> None:
    with av.open(str(path), "w") as out:
        s = out.add_stream("gif", rate=10)
        s.width, s.height, s.pix_fmt = frames[0].shape[1], frames[0].shape[0], "rgb8"
        for img in frames:
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(p)
        for p in s.encode():
            out.mux(p)


def _decoded(data: bytes) -> list[np.ndarray]:
    with av.open(io.BytesIO(data)) as c:
        assert c.streams.video[0].codec_context.name == "h264"
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


def test_a_folder_of_gifs_is_cut(tmp_path: Path) -> None:
    media, out = tmp_path / "media", tmp_path / "out"
    media.mkdir()
    shots = _shot(0, 40) + _shot(1, 40)
    _gif(media / "anim.gif", shots)
    _gif(media / "icon.gif", [np.full((32, 32, 3), 200, np.uint8)])
    run(media, out, Config(skip=["dedup"]))
    rows = sorted((Path(r["source"]).name, r["start_frame"], r["end_frame"], r["width"],
                   r["height"], r["key"]) for r in read_index(out).to_pylist())
    assert [r[:5] for r in rows] == [("anim.gif", 0, 40, 160, 120), ("anim.gif", 40, 80, 160, 120)]
    members = clip_members(out)
    for _, start, end, _, _, key in rows:
        got = _decoded(members[f"{key}.mp4"])
        assert len(got) == end - start
        for k in (0, len(got) - 1):  # its own shot's pictures (the GIF palette costs a little)
            err = np.abs(got[k].astype(int) - shots[start + k].astype(int)).mean()
            assert err < 12, (key, k, err)
    rejected = [(r["item_key"], r["stage"], r["reason"]) for r in read_rejected(out).to_pylist()]
    assert ("file:icon.gif", "plan", "too_short") in rejected
