"""Consent fixtures: a generated video and a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import pytest

from clipfactory.testing.loopback import LoopbackServer
from clipfactory.testing.synth import ShotSpec, write_video


@pytest.fixture(scope="session")
def video_bytes(tmp_path_factory):
    path = tmp_path_factory.mktemp("consent-media") / "two_shots.mp4"
    write_video(path, [ShotSpec(75, "texture", 3), ShotSpec(75, "texture", 4)], width=160,
                height=90)
    return path.read_bytes()


@pytest.fixture
def server():
    with LoopbackServer() as srv:
        yield srv
