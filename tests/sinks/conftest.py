"""A tiny corpus of mixed shapes, durations and codecs, and datasets made from it.

Every video has its own seed (no dedup between them) and a manifest id. Expected per clip
(30 fps; the bins of ``BUCKETED`` below):

| id   | file               | codec  | size    | clips (frames)      | buckets                      |
|------|--------------------|--------|---------|---------------------|------------------------------|
| land | land.mp4           | H.264  | 192x108 | 66, 130 (two shots) | 90p_16x9_0-3s, 90p_16x9_3s+  |
| port | port.mp4           | H.264  | 108x192 | 70                  | 90p_9x16_0-3s                |
| m4   | m4.avi             | MPEG-4 Part 2 | 160x120 | 130          | 120p_4x3_3s+                 |
| vp9  | vp9.webm           | VP9    | 160x90  | 66                  | 90p_16x9_0-3s                |

``land``'s short clip and ``vp9`` share a bucket, so its shard holds two clips (``max_count``
2). The smart cut keeps MPEG-4 Part 2 and VP9 (whole GOPs copied), so those clips are not H.264.
``port`` carries a caption in its manifest row (``caption_model`` ``source``). The bucketed
dataset also runs :class:`TagStage`, a stand-in model stage: every clip gets a vector and a
category (``wide`` or ``tall``), each landscape clip a caption from ``shape-captioner``, so the
card has models to name and ``clipfactory mix`` has categories to mix.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from clipfactory.config import Config
from clipfactory.pipeline import run
from clipfactory.stages.base import ClipInput, ModelStage, Resources, StageOutput
from clipfactory.testing.synth import ShotSpec, write_video

BUCKETED = {"bucket_by": ["resolution", "aspect", "duration"],
            "resolution_bins": {"90p": 90, "120p": 120}, "duration_bins": [0, 3],
            "max_count": 2}
# clip (video id, start frame) -> (frames, bucket, codec)
EXPECTED = {
    ("land", 0): (66, "90p_16x9_0-3s", "h264"),
    ("land", 66): (130, "90p_16x9_3s+", "h264"),
    ("port", 0): (70, "90p_9x16_0-3s", "h264"),
    ("m4", 0): (130, "120p_4x3_3s+", "mpeg4"),
    ("vp9", 0): (66, "90p_16x9_0-3s", "vp9"),
}


class TagStage(ModelStage):
    """A vector from the clip's shape, a category (wide or tall) and a caption for landscape
    clips (no model to load)."""

    name = "tag"
    batch_size = 4
    resources = Resources(cpus=0.5)
    model_id = "shape-tagger"

    @property
    def revision(self) -> str:
        return "r1"

    def setup(self) -> None:
        pass

    def process_batch(self, clips: list[ClipInput]) -> list[StageOutput]:
        outs = []
        for c in clips:
            vec = np.array([c.width, c.height, c.num_frames], dtype=np.float32)
            fields = ({"caption": f"a {c.width}x{c.height} texture", "caption_status": "ok",
                       "caption_model": "shape-captioner"} if c.width > c.height else {})
            fields["category"] = "wide" if c.width > c.height else "tall"
            outs.append(StageOutput(c.clip_id, vector=vec / np.linalg.norm(vec), fields=fields))
        return outs


def bucketed_config(**shards: object) -> Config:
    return Config.model_validate({"workers": 1, "shards": {**BUCKETED, **shards}})


@pytest.fixture(scope="session")
def shapes_manifest(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("shapes")
    write_video(d / "land.mp4", [ShotSpec(66, "texture", 11), ShotSpec(130, "texture", 12)],
                width=192, height=108, gop=33)
    write_video(d / "port.mp4", [ShotSpec(70, "texture", 21)], width=108, height=192, gop=35)
    write_video(d / "m4.avi", [ShotSpec(130, "texture", 31)], width=160, height=120, gop=26,
                codec="mpeg4")
    write_video(d / "vp9.webm", [ShotSpec(66, "texture", 41)], width=160, height=90, gop=33,
                codec="libvpx-vp9")
    rows = [{"path": str(d / "land.mp4"), "id": "land", "license": "CC0"},
            {"path": str(d / "port.mp4"), "id": "port", "license": "CC0",
             "caption": "a portrait texture"},
            {"path": str(d / "m4.avi"), "id": "m4", "license": "CC-BY-4.0", "author": "M. Four"},
            {"path": str(d / "vp9.webm"), "id": "vp9", "license": "CC0"}]
    manifest = d / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return manifest


@pytest.fixture(scope="session")
def bucketed_out(shapes_manifest, tmp_path_factory) -> Path:
    """The corpus curated with bucketing on (read-only: copy it before changing it)."""
    out = tmp_path_factory.mktemp("bucketed") / "out"
    run(shapes_manifest, out, bucketed_config(), stages=[TagStage()])
    return out


@pytest.fixture(scope="session")
def flat_out(shapes_manifest, tmp_path_factory) -> Path:
    """The corpus curated with the default flat layout, two clips a shard (read-only)."""
    out = tmp_path_factory.mktemp("flat") / "out"
    run(shapes_manifest, out, Config.model_validate({"workers": 1, "shards": {"max_count": 2}}))
    return out


@pytest.fixture
def bucketed_copy(bucketed_out, tmp_path) -> Path:
    dst = tmp_path / "out"
    shutil.copytree(bucketed_out, dst)
    return dst
