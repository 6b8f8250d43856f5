"""Shared fixtures: small generated videos, written once per session."""

from __future__ import annotations

import pytest

from clipfactory.testing.synth import ShotSpec, write_broken, write_video


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("media")


@pytest.fixture(scope="session")
def three_shots(media_dir):
    """Three texture shots (2, 2.5 and 3 s at 30 fps): hard cuts at frames 60 and 135."""
    shots = [ShotSpec(60, "texture", 1), ShotSpec(75, "texture", 2), ShotSpec(90, "texture", 3)]
    return write_video(media_dir / "three_shots.mp4", shots, gop=48)


@pytest.fixture(scope="session")
def broken(media_dir):
    return write_broken(media_dir / "broken")
