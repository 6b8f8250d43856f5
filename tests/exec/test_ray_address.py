"""`--ray-address` naming no cluster: one line and exit status 2, the output untouched."""

from __future__ import annotations

import pytest

from clipfactory.cli import main
from clipfactory.testing.synth import ShotSpec, write_video

pytest.importorskip("ray")
pytestmark = pytest.mark.ray


def test_a_ray_address_with_no_cluster_is_one_line_and_status_2(tmp_path, monkeypatch, capsys):
    """README's `--ray-address auto` with no cluster running: Ray's ConnectionError came out
    as a 30-line traceback and exit status 1."""
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path / "ray"))  # no cluster file of another run
    (tmp_path / "ray").mkdir()
    src = tmp_path / "in"
    src.mkdir()
    write_video(src / "a.mp4", [ShotSpec(40, "texture", 1)], width=160, height=90)
    rc = main(["run", "--input", str(src), "--output", str(tmp_path / "out"), "--quiet",
               "--workers", "1", "--ray-address", "auto"])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    assert err.startswith("clipfactory: no Ray cluster at 'auto'") and "ray start" in err
