"""The default detector: built-in rules plus TransNetV2 on proposed regions, on real footage.

The footage is two freely licensed real clips (tests/fixtures/real/README.md); transitions and
flashes are composited into them as TransNetV2's authors built their data.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from clipfactory.bench.real_corpus import RealSource, _Shot, _write
from clipfactory.bench.shot_metrics import dirty_clips, match
from clipfactory.cli import main
from clipfactory.config import ShotConfig
from clipfactory.shots import HybridDetector, make_detector
from clipfactory.shots.detect import detect_shots
from clipfactory.shots.hybrid import mix_proposals
from clipfactory.testing.models import tiny_shot_model

REAL = Path(__file__).parent.parent / "fixtures" / "real"
CALAIS = RealSource(str(REAL / "calais1906.mp4"), 0, 119, "archival")
BUNNY = RealSource(str(REAL / "bigbuckbunny.mp4"), 0, 131, "animation")


def _edit(path: Path, second: _Shot, first_flash: bool = False) -> dict:
    first = _Shot(CALAIS, 0, 60, "cut")
    if first_flash:
        first.flash_at, first.flash_len, first.flash_gain = 30, 2, 0.7
    return _write(path, [first, second], "libx264", 25.0, 320, 180)


def _found(path: str, detector: str = "hybrid") -> tuple[list[tuple[str, int, int]], object]:
    det = make_detector(ShotConfig(detector=detector))
    r = detect_shots(path, detector=det)
    return [(t.kind, t.start_frame, t.end_frame) for t in r.transitions], det


@pytest.fixture(scope="module")
def dissolve(tmp_path_factory):
    d = tmp_path_factory.mktemp("real")
    return d / "dissolve.mp4", _edit(d / "dissolve.mp4", _Shot(BUNNY, 0, 70, "dissolve", mix=20))


def test_a_real_dissolve_is_found_by_the_model_and_no_clip_holds_it(dissolve):
    path, truth = dissolve
    true = [(t["type"], t["start_frame"], t["end_frame"]) for t in truth["transitions"]]
    assert true == [("dissolve", 59, 80)]
    found, det = _found(str(path))
    assert det.model_frames > 0  # the network read the proposed region
    assert len(match(true, found, 2)) == 1 and found[0][0] == "dissolve"
    assert found[0][1] <= 59 and found[0][2] >= 80  # its span covers the whole mix
    assert dirty_clips(true, found, truth["frames"], 25.0)[0] == 0


def test_a_long_real_dissolve_is_found_by_the_slow_second_look(tmp_path):
    """A 56-frame dissolve (an editor's default 1 s at 50-60 fps, 2 s at 25-30): at the
    source's rate it changes too slowly per frame for the network and the rules miss it; read
    at every other frame it is found, and its span covers the whole mix."""
    truth = _write(tmp_path / "long.mp4", [_Shot(CALAIS, 0, 50, "cut"),
                                          _Shot(BUNNY, 0, 60, "dissolve", mix=56)],
                   "libx264", 25.0, 320, 180)
    true = [(t["type"], t["start_frame"], t["end_frame"]) for t in truth["transitions"]]
    assert true == [("dissolve", 49, 106)]
    found = {}
    for step in (1, 2):
        det = make_detector(ShotConfig(detector="hybrid", slow_step=step))
        found[step] = [(t.kind, t.start_frame, t.end_frame)
                       for t in detect_shots(str(tmp_path / "long.mp4"), detector=det).transitions]
    assert found[1] == []  # one look at the source's rate: missed, and a clip holds it
    assert dirty_clips(true, found[1], truth["frames"], 25.0)[0] == 1
    (kind, start, end), = found[2]
    assert kind == "dissolve" and start <= 49 and end >= 106 and end - start <= 56 + 8
    assert dirty_clips(true, found[2], truth["frames"], 25.0) == (0, 1)


def test_a_real_cut_and_a_flash(tmp_path):
    truth = _edit(tmp_path / "cut.mp4", _Shot(BUNNY, 0, 70, "cut"), first_flash=True)
    assert truth["flashes"] == [{"first": 30, "last": 31}]
    found, _ = _found(str(tmp_path / "cut.mp4"))
    assert found == [("cut", 59, 60)]  # and nothing at the flash


def test_a_fade_through_black_is_one_transition(tmp_path):
    truth = _edit(tmp_path / "fade.mp4", _Shot(BUNNY, 0, 70, "fade", fade_out=12, black=5,
                                               fade_in=12))
    assert [t["type"] for t in truth["transitions"]] == ["fade"]
    found, _ = _found(str(tmp_path / "fade.mp4"))
    assert len(found) == 1 and found[0][0] == "fade"
    t = truth["transitions"][0]
    assert found[0][1] <= t["start_frame"] and found[0][2] >= t["end_frame"]


def test_mix_proposals_are_mixes_not_motion_nor_fades():
    rng = np.random.default_rng(3)
    a, b = (rng.uniform(0, 255, (40, 432)).astype(np.float32) for _ in range(2))
    w = np.linspace(0, 1, 40, dtype=np.float32)[:, None]
    mix = (1 - w) * a[0] + w * b[0]  # one picture dissolving into another
    centres = {(x + y) // 2 for x, y in mix_proposals(mix, 0.1, 0.25)}
    assert 19 in centres
    pan = np.stack([np.roll(a[0], 3 * i) for i in range(40)])  # the picture moving
    assert mix_proposals(pan, 0.1, 0.25) == []
    fade = (1 - 0.9 * w) * a[0]  # one picture getting darker
    assert mix_proposals(fade, 0.1, 0.25) == []
    assert mix_proposals(np.repeat(a[:1], 40, axis=0), 0.1, 0.25) == []  # still


def test_mix_proposals_on_some_centres_are_those_of_the_whole_window():
    """The stream tests each centre once (``centres``); a window's verdict must not depend on
    how many others were tested with it."""
    rng = np.random.default_rng(5)
    a, b, c = (rng.uniform(0, 255, 432).astype(np.float32) for _ in range(3))
    w = np.linspace(0, 1, 30, dtype=np.float32)[:, None]
    noise = rng.normal(0, 4, (150, 432)).astype(np.float32)
    frames = np.concatenate([np.repeat(a[None], 40, 0), (1 - w) * a + w * b,
                             np.repeat(b[None], 20, 0), (1 - w[:20]) * b + w[:20] * c,
                             np.repeat(c[None], 40, 0)]) + noise
    whole = mix_proposals(frames, 0.1, 0.25)
    assert len({(x + y) // 2 for x, y in whole}) > 10  # both dissolves, at several scales
    for first, last in [(0, 149), (30, 60), (55, 56), (90, 149), (140, 200), (-5, 3)]:
        part = mix_proposals(frames, 0.1, 0.25, centres=(first, last))
        assert part == [(x, y) for x, y in whole if first <= (x + y) // 2 <= last]


def test_the_analysis_pass_and_the_shots_command_agree(dissolve):
    from clipfactory.config import AnalysisConfig
    from clipfactory.media.analyse import analyse
    from clipfactory.media.probe import probe

    path, _ = dissolve
    sig = analyse(probe(str(path)), AnalysisConfig(), make_detector(ShotConfig()))
    assert [(t.kind, t.start_frame, t.end_frame) for t in sig.transitions] == _found(str(path))[0]


def test_builtin_alone_is_still_there(dissolve):
    path, _ = dissolve
    found, det = _found(str(path), "builtin")
    assert det.name == "builtin" and not hasattr(det, "model_frames")
    assert all(k in ("cut", "dissolve", "fade") for k, _, _ in found)


def test_a_broken_model_file_stops_shots_and_run_with_a_clear_error(dissolve, tmp_path, capsys):
    path, _ = dissolve
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"garbage" * 100)
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(f"shots:\n  model: {broken}\n", encoding="utf-8")
    assert main(["shots", str(path), "--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "broken.onnx: cannot be loaded as ONNX" in err
    assert main(["run", "--input", str(path), "--output", str(tmp_path / "out"),
                 "--config", str(cfg), "--quiet"]) == 2
    assert "broken.onnx: cannot be loaded as ONNX" in capsys.readouterr().err
    assert not (tmp_path / "out" / "ledger.sqlite").exists()  # stopped before it started


def test_a_model_failing_on_one_video_is_recorded_against_it(dissolve, tmp_path):
    from clipfactory.config import Config
    from clipfactory.records import SourceItem
    from clipfactory.worker import process_video

    pytest.importorskip("onnx")
    bad = tiny_shot_model(tmp_path / "fails.onnx", fail=True)
    path, _ = dissolve
    cfg = Config()
    cfg.shots.model = bad
    res = process_video(SourceItem(source=str(path), item_key="k1"), cfg, tmp_path / "staging")
    assert res.rejection is not None
    assert (res.rejection.stage, res.rejection.reason) == ("analyse", "shot_model_failed")
    assert "fails.onnx: inference failed" in res.rejection.detail
    assert res.clips == []


def test_memory_is_a_fixed_ring(dissolve):
    det = HybridDetector()
    frame = np.zeros((90, 160, 3), np.uint8)
    for i in range(900):
        det.process(i, frame)
    assert det._frames.shape[0] == det._ring < 400  # a ring, whatever the length
    det.finish()


def test_frames_may_start_late_and_change_size(dissolve):
    """The analysis pass of a manifest span starts at a later frame number; a stream may
    change its size mid-way. Neither loses the dissolve or breaks the ring."""
    import av

    path, truth = dissolve
    with av.open(str(path)) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    det = HybridDetector()
    for i, f in enumerate(frames):
        det.process(500 + i, f)
    found = [(t.kind, t.start_frame - 500, t.end_frame - 500) for t in det.finish()]
    true = [(t["type"], t["start_frame"], t["end_frame"]) for t in truth["transitions"]]
    assert len(match(true, found, 2)) == 1
    det = HybridDetector()
    for i, f in enumerate(frames):
        det.process(i, f if i < 40 else f[:, :-32])  # 320 -> 288 wide from frame 40
    assert [t.kind for t in det.finish()] == ["dissolve"]
