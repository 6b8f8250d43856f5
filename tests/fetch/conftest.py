"""Fetch fixtures: a small generated video and real HTTP servers on 127.0.0.1."""

from __future__ import annotations

import pytest

from clipfactory.testing.loopback import LoopbackServer
from clipfactory.testing.synth import ShotSpec, write_video


@pytest.fixture(scope="session")
def video_file(tmp_path_factory):
    """Two texture shots (66 + 72 frames at 30 fps, 160x90): a hard cut at frame 66."""
    path = tmp_path_factory.mktemp("fetch-media") / "two_shots.mp4"
    write_video(path, [ShotSpec(66, "texture", 7), ShotSpec(72, "texture", 8)], width=160,
                height=90)
    return path


@pytest.fixture(scope="session")
def video_bytes(video_file):
    return video_file.read_bytes()


@pytest.fixture
def server():
    with LoopbackServer() as srv:
        yield srv
