"""A mixed-license corpus: one tiny single-shot video per license case, plus helpers.

Every video has its own seed (identical content would be deduplicated) and gives one clip.
"""

from __future__ import annotations

import json
import shutil
import tarfile
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from clipfactory.config import Config
from clipfactory.pipeline import run
from clipfactory.testing.synth import ShotSpec, write_video

# id -> the license text its manifest row gives (None: no license field at all)
LICENSES: dict[str, str | None] = {
    "cc0": "CC0",
    "ccby": "https://creativecommons.org/licenses/by/4.0/",
    "ccbysa": "CC BY-SA 4.0",
    "nc": "Attribution-NonCommercial 4.0 International",
    "ncsa": "CC BY-NC-SA 4.0",
    "nd": "CC BY-ND 4.0",
    "unk": "free for any use I think",
    "arr": "All rights reserved",
    "missing": None,
    "yt": "Creative Commons Attribution license (reuse allowed)",
    "pd": "public domain",
}
ALL = set(LICENSES)
COMMERCIAL = {"cc0", "ccby", "ccbysa", "yt", "pd"}
RESEARCH = COMMERCIAL | {"nc", "ncsa"}


def row(vid: str, media: Path, url: str | None = None) -> dict:
    r = {"path": str(media / f"{vid}.mp4"), "id": vid, "author": f"Author {vid}",
         "title": f"Title {vid}", "channel": f"chan-{vid}"}
    r["url"] = url if url is not None else f"https://videos.example.org/v/{vid}"
    if LICENSES.get(vid) is not None:
        r["license"] = LICENSES[vid]
    return r


def write_manifest(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def licensed_media(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("licensed_media")
    for i, vid in enumerate(LICENSES):
        write_video(d / f"{vid}.mp4", [ShotSpec(66, "texture", 500 + 7 * i)], width=160,
                    height=90, gop=33)
    return d


@pytest.fixture(scope="session")
def manifest(licensed_media) -> Path:
    return write_manifest(licensed_media / "manifest.jsonl",
                          [row(v, licensed_media) for v in LICENSES])


@dataclass
class Out:
    """Reading an output folder back."""

    path: Path

    def index(self) -> list[dict]:
        return pq.read_table(self.path / "index.parquet").to_pylist()

    def ids(self) -> set[str]:
        return {r["video_id"] for r in self.index()}

    def rejected(self) -> list[dict]:
        return pq.read_table(self.path / "rejected.parquet").to_pylist()

    def summary(self) -> dict:
        return json.loads((self.path / "summary.json").read_text())

    def card(self) -> str:
        return (self.path / "README.md").read_text()

    def audit_log(self) -> list[dict]:
        p = self.path / "audit.jsonl"
        return [json.loads(x) for x in p.read_text().splitlines()] if p.is_file() else []

    def shards(self) -> list[Path]:
        return sorted((self.path / "shards").glob("*.tar"))

    def shard_keys(self) -> set[str]:
        keys = set()
        for s in self.shards():
            with tarfile.open(s) as t:
                keys |= {m.name.split(".")[0] for m in t}
        return keys

    def members(self) -> dict[str, bytes]:
        out = {}
        for s in self.shards():
            with tarfile.open(s) as t:
                for m in t:
                    out[m.name] = t.extractfile(m).read()
        return out


@pytest.fixture(scope="session")
def ungated(manifest, tmp_path_factory) -> Out:
    """The whole corpus curated without a policy (read-only: copy it before changing it)."""
    out = tmp_path_factory.mktemp("ungated") / "out"
    run(manifest, out, Config())
    return Out(out)


@pytest.fixture
def ungated_copy(ungated, tmp_path) -> Out:
    dst = tmp_path / "out"
    shutil.copytree(ungated.path, dst)
    return Out(dst)
