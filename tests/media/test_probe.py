import pytest

from clipfactory.config import IngestConfig
from clipfactory.errors import MediaError
from clipfactory.media.probe import mp4_top_level_boxes, probe
from clipfactory.testing.synth import ShotSpec, write_video


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
