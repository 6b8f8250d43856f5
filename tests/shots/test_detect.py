"""Boundaries from encoded files: the detection pass, the analysis pass, clip planning and the
`clipfactory shots` command."""

from __future__ import annotations

import csv
import io
import json
import shutil

import pytest

from clipfactory.cli import main
from clipfactory.config import AnalysisConfig, ShotConfig
from clipfactory.media.analyse import analyse
from clipfactory.media.probe import probe
from clipfactory.plan import shots_from_transitions
from clipfactory.shots import make_detector
from clipfactory.shots.detect import detect_shots, format_timecode

EDIT = None  # built in the fixture: cut, dissolve, fade out / black / fade in, fast pan


@pytest.fixture(scope="module", params=[("libx264", "mp4"), ("libvpx-vp9", "webm"),
                                        ("mpeg4", "avi")], ids=["h264", "vp9", "mpeg4"])
def edited(request, tmp_path_factory):
    from clipfactory.testing.synth import ShotSpec, write_video

    codec, ext = request.param
    shots = [ShotSpec(45, "texture", 1), ShotSpec(45, "shake", 2),
             ShotSpec(45, "texture", 3, "dissolve", 15),
             ShotSpec(45, "fastpan", 4, "fade", 10, 3, 10), ShotSpec(40, "strobe", 5)]
    return write_video(tmp_path_factory.mktemp("shots") / f"edit.{ext}", shots, codec=codec,
                       width=320, height=180)


def _close(found, truth, tol=2):
    return (found.kind == truth.kind and abs(found.start_frame - truth.start_frame) <= tol
            and abs(found.end_frame - truth.end_frame) <= tol)


def test_detect_shots_finds_every_transition_in_every_codec(edited):
    r = detect_shots(edited.path)
    assert r.frames == edited.frames and r.fps == 30
    assert len(r.transitions) == len(edited.transitions)
    assert all(_close(f, t) for f, t in zip(r.transitions, edited.transitions, strict=True)), \
        (r.transitions, edited.transitions)
    assert r.cpu_s > r.detector_cpu_s > 0


def test_analysis_pass_feeds_the_same_detector_and_planning_skips_transition_frames(edited):
    info = probe(edited.path)
    sig = analyse(info, AnalysisConfig(), make_detector(ShotConfig()))
    assert sig.transitions == detect_shots(edited.path).transitions  # the same frames, once
    spans = shots_from_transitions(0, sig.frames, sig.transitions)
    inside = set()
    for t in edited.transitions:
        inside.update(range(t.start_frame + 1, t.end_frame))  # true transition frames
    kept = {f for s in spans for f in range(s.start_frame, s.end_frame)}
    assert len(spans) == len(edited.transitions) + 1
    assert len(kept & inside) <= 2 * len(edited.transitions)  # at most the 2-frame tolerance


def test_shots_command_text_csv_and_json(edited, capsys, tmp_path):
    assert main(["shots", edited.path]) == 0
    text = capsys.readouterr().out
    assert f"{edited.frames} frames at 30.000 fps, 4 transitions (hybrid)" in text
    assert "dissolve" in text and "fade" in text and format_timecode(1.5) == "00:00:01.500"

    assert main(["shots", "--csv", edited.path]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [r["type"] for r in rows] == ["cut", "dissolve", "fade", "cut"]
    assert float(rows[0]["end_time"]) == pytest.approx(int(rows[0]["end_frame"]) / 30)

    missing = tmp_path / "nope.mp4"
    assert main(["shots", "--json", edited.path, str(missing)]) == 1
    out, err = capsys.readouterr()
    lines = out.strip().splitlines()
    assert len(lines) == 1 and "nope.mp4" in err
    obj = json.loads(lines[0])
    assert set(obj) == {"video", "fps", "frames", "transitions"}
    assert obj["video"] == edited.path and obj["frames"] == edited.frames
    cut = obj["transitions"][0]
    assert cut["type"] == "cut" and cut["end_frame"] == cut["start_frame"] + 1


def test_shots_command_reads_folders_as_run_does(edited, capsys, tmp_path):
    if not edited.path.endswith(".mp4"):
        pytest.skip("one codec is enough")
    folder = tmp_path / "videos"
    (folder / "day 2").mkdir(parents=True)
    shutil.copy(edited.path, folder / "day 2" / "b.mp4")
    (folder / "a.mkv").write_text("not a video")
    (folder / "notes.txt").write_text("not named like a video: not read")
    (tmp_path / "empty").mkdir()
    assert main(["shots", "--json", "--detector", "builtin", str(folder),
                 str(tmp_path / "empty")]) == 1
    out, err = capsys.readouterr()
    (line,) = out.strip().splitlines()
    obj = json.loads(line)
    assert obj["video"] == str(folder / "day 2" / "b.mp4") and obj["frames"] == edited.frames
    assert len(obj["transitions"]) == len(edited.transitions)
    assert f"{folder / 'a.mkv'}: probe/not_a_media_file" in err
    assert f"{tmp_path / 'empty'}: no video in this folder" in err
    assert "notes.txt" not in err


def test_shots_command_v0_detector_reports_only_cuts(edited, capsys):
    if not edited.path.endswith(".mp4"):
        pytest.skip("one codec is enough")
    assert main(["shots", "--json", "--detector", "content", edited.path]) == 0
    kinds = {t["type"] for t in json.loads(capsys.readouterr().out)["transitions"]}
    assert kinds <= {"cut"}


def _damage_middle(path, rng_seed=0):
    """Noise over 4 KiB in the middle of an MP4's mdat (its index intact)."""
    import numpy as np

    from clipfactory.media.probe import mp4_top_level_boxes

    data, pos = bytearray(path.read_bytes()), 0
    for kind, size in mp4_top_level_boxes(path) or []:
        if kind == b"mdat":
            lo, hi = pos + 8, pos + size
            break
        pos += size
    mid, n = (lo + hi) // 2, min(4096, (hi - lo) // 4)
    data[mid : mid + n] = np.random.default_rng(rng_seed).integers(0, 256, n, np.uint8).tobytes()
    path.write_bytes(bytes(data))


def test_shots_reads_on_past_damaged_bytes_as_the_analysis_pass_does(tmp_path):
    """Noise in the middle of a file: `clipfactory shots` stopped at the first packet that
    did not decode, so the cuts after it were never reported (here 2 of 5); it now passes
    over it, as the analysis pass does, and gives the transitions `clipfactory run` cuts at."""
    from clipfactory.testing.synth import ShotSpec, write_video

    path = tmp_path / "damaged.mp4"
    v = write_video(path, [ShotSpec(60, seed=i) for i in range(6)], width=320, height=180,
                    gop=30)
    _damage_middle(path)
    r = detect_shots(str(path))
    sig = analyse(probe(str(path)), AnalysisConfig(), make_detector(ShotConfig()))
    assert sig.decode_errors > 0
    assert r.frames == sig.frames > v.frames * 0.9  # frames after the damage are decoded
    assert r.transitions == sig.transitions
    # every cut: those after the damage lie the lost frames earlier in decoded numbering
    lost = v.frames - r.frames
    found = [t.start_frame + 1 for t in r.transitions if t.kind == "cut"]
    assert len(found) == 5
    assert all(any(0 <= t.end_frame - f <= lost for t in v.transitions) for f in found), \
        (found, v.transitions, lost)


def test_shots_times_go_on_across_a_timestamp_reset(tmp_path, capsys):
    """Two MPEG-TS files joined end to end (`cat a.ts b.ts`): the second half's timestamps
    restart. `clipfactory shots` printed the cut at the join as going back to 00:00:00.000
    and the later ones at the first half's times; its times are now the analysis pass's."""
    from clipfactory.testing.synth import ShotSpec, write_video

    parts = [tmp_path / "a.ts", tmp_path / "b.ts"]
    for i, part in enumerate(parts):
        write_video(part, [ShotSpec(40, seed=2 * i), ShotSpec(40, seed=2 * i + 1)], width=160,
                    height=90)
    joined = tmp_path / "joined.ts"
    joined.write_bytes(b"".join(p.read_bytes() for p in parts))
    r = detect_shots(str(joined))
    sig = analyse(probe(str(joined)), AnalysisConfig(), make_detector(ShotConfig()))
    assert r.frames == sig.frames == 160
    assert (r.times == sig.times).all() and (r.times[1:] > r.times[:-1]).all()
    assert [t.start_frame + 1 for t in r.transitions] == [40, 80, 120]
    assert main(["shots", "--csv", str(joined)]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [round(float(row["start_time"]) * 30) for row in rows] == [39, 79, 119]
