"""Clips for the stage tests: a few generated videos cut by a real run."""

from __future__ import annotations

import pytest

from clipfactory.testing.synth import ShotSpec, write_video


@pytest.fixture(scope="session")
def stage_corpus(tmp_path_factory):
    """Four videos of two texture shots each: eight clips after a run."""
    d = tmp_path_factory.mktemp("stage_corpus")
    for v in range(4):
        write_video(d / f"v{v}.mp4", [ShotSpec(66, "texture", 10 * v + 1),
                                      ShotSpec(72, "texture", 10 * v + 2)], gop=30)
    return d
