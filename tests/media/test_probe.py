import shutil
import tempfile
import time
from pathlib import Path

import av
import numpy as np
import pytest

from clipfactory.config import IngestConfig
from clipfactory.errors import MediaError
from clipfactory.media.probe import mp4_top_level_boxes, probe
from clipfactory.testing.synth import ShotSpec, write_video
from clipfactory.testing.users import as_another_user
from clipfactory.worker import file_state


def test_probe_reads_the_basics(three_shots):
    info = probe(three_shots.path)
    assert (info.width, info.height) == (320, 180)
    assert info.codec == "h264" and info.pix_fmt == "yuv420p" and info.bit_depth == 8
    assert info.fps == pytest.approx(30.0)
    assert info.frames == 225
    assert info.duration_s == pytest.approx(7.5, abs=0.05)
    assert info.rotation == 0 and not info.has_audio


@pytest.mark.parametrize("name, reason", [
    ("zero_byte", "empty_file"),
    ("text", "not_a_media_file"),
    ("no_moov", "truncated_no_index"),
    ("audio_only", "no_video_stream"),
])
def test_probe_rejects_broken_inputs_with_a_specific_reason(broken, name, reason):
    with pytest.raises(MediaError) as e:
        probe(broken[name])
    assert e.value.stage == "probe" and e.value.reason == reason


def test_probe_missing_file(tmp_path):
    with pytest.raises(MediaError) as e:
        probe(str(tmp_path / "nope.mp4"))
    assert e.value.reason == "missing_file"


def test_probe_absurd_resolution_is_rejected_before_decoding(three_shots):
    with pytest.raises(MediaError) as e:
        probe(three_shots.path, IngestConfig(max_pixels=320 * 100))
    assert e.value.reason == "absurd_resolution"


def test_probe_rotation_and_high_bit_depth(tmp_path):
    v = write_video(tmp_path / "r.mp4", [ShotSpec(10)], rotation=90)
    info = probe(v.path)
    assert info.rotation == 90 and (info.display_width, info.display_height) == (180, 320)
    v10 = write_video(tmp_path / "10.mkv", [ShotSpec(10)], pix_fmt="yuv420p10le")
    assert probe(v10.path).bit_depth == 10


def test_box_walker_tells_mp4_from_other_bytes(three_shots, broken):
    kinds = [k for k, _ in mp4_top_level_boxes(three_shots.path)]
    assert kinds[0] == b"ftyp" and b"moov" in kinds and b"mdat" in kinds
    assert mp4_top_level_boxes(broken["text"]) is None


def test_a_file_the_user_may_not_read_is_unreadable_not_an_internal_error():
    """It escaped the probe as a PermissionError, recorded as ``internal/unexpected_error``
    with a traceback in the log."""
    base = Path(tempfile.mkdtemp(prefix="cf-perm-"))  # not under pytest's root-only folder
    try:
        base.chmod(0o755)
        write_video(base / "mine.mp4", [ShotSpec(10, "texture", 3)])
        (base / "mine.mp4").chmod(0)  # no one but root may read it
        before = file_state(str(base / "mine.mp4"))

        def attempt():
            try:
                probe(str(base / "mine.mp4"))
            except MediaError as e:
                return [e.stage, e.reason, e.detail]
            return None

        said = as_another_user(attempt)
        time.sleep(0.05)  # past the file system's coarse clock tick
        (base / "mine.mp4").chmod(0o644)
        # a permission fix is a change: the next run tries the file again
        assert file_state(str(base / "mine.mp4")) != before
        assert as_another_user(attempt) is None
    finally:
        shutil.rmtree(base)
    assert said[:2] == ["probe", "unreadable_file"] and "Permission denied" in said[2]


@pytest.mark.parametrize("written,expected", [(89.7, 90), (-90.2, 270), (180.4, 180), (-0.3, 0)])
def test_probe_rounds_a_display_matrix_to_the_nearest_right_angle(tmp_path, written, expected):
    """A display matrix that holds a near-right angle (as a muxer's fixed-point rounding can
    leave it) is the right angle: truncated, 89.7 became 89, and the frames were neither
    turned nor their width and height swapped."""
    path = tmp_path / "r.mp4"
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = 64, 32, "yuv420p"
        s.set_display_rotation(written)
        for i in range(5):
            frame = av.VideoFrame.from_ndarray(np.full((32, 64, 3), i * 40, np.uint8), format="rgb24")
            for pk in s.encode(frame):
                c.mux(pk)
        for pk in s.encode():
            c.mux(pk)
    info = probe(str(path))
    assert info.rotation == expected
    turned = expected in (90, 270)
    assert (info.display_width, info.display_height) == ((32, 64) if turned else (64, 32))
