"""Camera motion inside a run: every clip labelled (kept or dropped) in the index, the rejected
list and KEY.json; the static filter reads camera and object motion together; VP9 goes through
the phase-correlation fallback; low frame rates read the same."""

from __future__ import annotations

import json
import tarfile

import pyarrow.parquet as pq
import pytest

from clipfactory.config import Config
from clipfactory.pipeline import run
from clipfactory.testing.camera import write_camera_move

MOVES = {  # file -> (move, kwargs, expected label)
    "pan_right.mp4": ("pan_right", {}, "pan_right"),
    "tilt_up.mp4": ("tilt_up", {}, "tilt_up"),
    "zoom_in.mp4": ("zoom_in", {}, "zoom_in"),
    "static.mp4": ("static", {}, "static"),
    "walker.mp4": ("static", {"moving_object": True}, "static"),  # fixed camera, object moves
    "pan_left_vp9.webm": ("pan_left", {"codec": "libvpx-vp9"}, "pan_left"),
    "tilt_down_8fps.mp4": ("tilt_down", {"fps": 8}, "tilt_down"),
}


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    src = tmp_path_factory.mktemp("moves")
    for name, (move, kw, _) in MOVES.items():
        write_camera_move(src / name, move, seconds=2.5, speed=0.15, seed=3, **kw)
    out = tmp_path_factory.mktemp("moves_out")
    run(src, out, Config.model_validate({"workers": 1, "filters": {"min_sharpness": 0}}))
    return out


def _rows(out):
    kept = pq.read_table(out / "index.parquet").to_pylist()
    dropped = [r for r in pq.read_table(out / "rejected.parquet").to_pylist() if r["clip_id"]]
    return {r["source"].rsplit("/", 1)[-1]: r for r in kept + dropped}, kept


def test_every_clip_is_labelled_kept_or_dropped(out):
    rows, kept = _rows(out)
    assert set(rows) == set(MOVES)
    for name, (_, _, label) in MOVES.items():
        assert rows[name]["camera_motion"] == label, name
        scores = dict(rows[name]["scores"])
        assert "motion.camera" in scores and "motion.object" in scores
    r = kept[0]
    with tarfile.open(out / "shards" / r["shard"]) as tar:
        meta = json.loads(tar.extractfile(f"{r['key']}.json").read())
    assert meta["camera_motion"] == r["camera_motion"]


def test_static_means_neither_camera_nor_objects_move(out):
    rows, kept = _rows(out)
    kept_names = {r["source"].rsplit("/", 1)[-1] for r in kept}
    assert rows["static.mp4"]["reason"] == "static"
    assert "walker.mp4" in kept_names  # a fixed camera watching something move
    assert dict(rows["walker.mp4"]["scores"])["motion.object"] > \
        3 * dict(rows["static.mp4"]["scores"])["motion.object"]
    assert {"pan_right.mp4", "tilt_up.mp4", "zoom_in.mp4", "pan_left_vp9.webm",
            "tilt_down_8fps.mp4"} <= kept_names


def test_speeds_are_per_second_whatever_the_frame_rate(out):
    rows, _ = _rows(out)
    fast = dict(rows["tilt_down_8fps.mp4"]["scores"])["motion.camera"]
    ref = dict(rows["tilt_up.mp4"]["scores"])["motion.camera"]
    assert fast == pytest.approx(ref, rel=0.25)
