"""``clipfactory bench`` on tiny inputs: the levels, the per-stage CPU split, per-level peak RSS
and one result per ``--resolution`` (consistency only, no timings asserted)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import av
import pytest

from clipfactory.bench.levels import decode_file
from clipfactory.bench.run import cut_lines, parse_resolutions, run_bench, run_bench_sizes
from clipfactory.cli import main
from clipfactory.ledger import Ledger
from clipfactory.media.stagetime import DRIVER_PHASES, STAGES
from clipfactory.records import ClipRecord
from clipfactory.testing.synth import make_corpus, write_broken


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two videos, 6 s of 160x90 H.264 with cuts."""
    d = tmp_path_factory.mktemp("bench-input")
    make_corpus(d, seconds=6, videos=2, width=160, height=90)
    return d


def _check_split(level: dict[str, Any], cpu_s: float) -> None:
    """The split names known stages, none negative, and accounts for most of ``cpu_s`` (less
    up to 50 ms that threads other than the measured one may spend in a level's process:
    these inputs cost well under a second)."""
    split = level["cpu_split"]
    assert split and set(split) <= set(STAGES)
    assert all(v >= 0 for v in split.values())
    assert {"decode", "probe"} <= set(split)
    assert 0.5 * cpu_s - 0.05 <= sum(split.values()) <= 1.05 * cpu_s + 0.01


def test_bench_on_a_folder_measures_every_level(corpus: Path, tmp_path: Path) -> None:
    r = run_bench(workdir=tmp_path, inputs=[corpus], detector="builtin", text_filter=False)
    assert r["corpus"]["videos"] == 2 and r["corpus"]["size"] == "160x90"
    assert r["corpus"]["codec"] == "h264"
    for level in ("decode_only", "analysis", "analysis_no_motion", "pipeline"):
        m = r[level]
        assert m["media_s"] == pytest.approx(6.0, abs=0.5)
        assert m["cpu_s"] > 0 and m["x_realtime_per_core"] > 0 and m["peak_rss_mib"] > 0
        # decoding faults pages in (frame buffers); kernel time is a part of the CPU time
        assert m["page_faults"] > 0 and 0 <= m["sys_s"] <= m["cpu_s"] + 0.05
    assert r["analysis_rules_only"] is None  # the detector is the rules already
    _check_split(r["analysis"], r["analysis"]["cpu_s"])
    full = r["pipeline"]  # the split covers the workers' per-video work, not the driver
    _check_split(full, full["cpu_s"] - full["driver_cpu_s"])
    assert 0 < full["driver_page_faults"] < full["page_faults"]  # the workers' are added
    # the driver's phases, in every thread of its process: together nearly all of its CPU
    driver = full["driver_split"]
    assert set(driver) == set(DRIVER_PHASES) and all(v >= 0 for v in driver.values())
    assert 0.5 * full["driver_cpu_s"] - 0.05 <= sum(driver.values()) <= full["driver_cpu_s"] + 1e-5
    assert driver["report"] > 0 and (tmp_path / "run" / "report.html").is_file()
    assert {"cut_decode", "cut_encode", "mux_write"} & set(full["cpu_split"]) or \
        r["clips"]["kept"] == 0
    rss = r["peak_rss_mib"]
    assert rss["largest_worker"] == full["peak_rss_mib"] > 0 and rss["driver"] > 0
    assert rss["analysis"] == r["analysis"]["peak_rss_mib"]
    assert json.loads((tmp_path / "bench.json").read_text())["pipeline"]["cpu_split"]
    _check_cut_summary(r, tmp_path / "run" / "ledger.sqlite", corpus)


def _cut_records(ledger_path: Path) -> list[ClipRecord]:
    """Every clip record of a run that the cutter was asked for, read one by one."""
    ledger = Ledger(ledger_path)
    try:
        return [c for c in ledger.clips() if "cut" in c.extra]
    finally:
        ledger.close()


def _check_cut_summary(r: dict[str, Any], ledger_path: Path, corpus: Path) -> None:
    """The cut summary agrees with the clip records read one by one, and the decode level's
    keyframe count with the keyframe packets of the sources."""
    cut = r["pipeline"]["cut"]
    records = _cut_records(ledger_path)
    assert records and cut["clips"] == len(records)
    assert cut["frames"] == sum(c.end_frame - c.start_frame for c in records)
    assert cut["copied"] == sum(c.extra["cut"]["copied_frames"] for c in records)
    assert 0 <= cut["copied"] <= cut["frames"]
    assert [(p["codec"], p["method"]) for p in cut["parts"]] == [("h264", "smart")]
    keys = 0
    for path in sorted(corpus.glob("*.mp4")):
        with av.open(str(path)) as c:
            keys += sum(1 for p in c.demux(video=0) if p.size and p.is_keyframe)
    src = r["decode_only"]["by_codec"]
    assert list(src) == ["h264"] and src["h264"]["keyframes"] == keys > 0
    assert src["h264"]["videos"] == 2
    assert src["h264"]["seconds"] == pytest.approx(r["decode_only"]["media_s"])


def test_cut_summary_of_a_source_with_cuts_between_keyframes(tmp_path: Path) -> None:
    """Keyframes every 60 frames and shots of 100 and 110 frames: clips start inside GOPs, so
    the cutter copies some frames and re-encodes others, and the summary adds them up."""
    from clipfactory.bench.levels import cut_summary, pipeline_level
    from clipfactory.config import Config
    from clipfactory.testing.synth import ShotSpec, write_video

    video = tmp_path / "in" / "v.mp4"
    video.parent.mkdir()
    write_video(video, [ShotSpec(100, "texture", 1), ShotSpec(110, "texture", 2),
                        ShotSpec(100, "texture", 3)], width=160, height=90, gop=60)
    cfg = Config(workers=1)
    cfg.shots.detector = "builtin"
    full = pipeline_level(str(video.parent), str(tmp_path / "run"), cfg)
    cut = full["cut"]
    assert cut == cut_summary(tmp_path / "run" / "ledger.sqlite")
    assert cut["clips"] >= 2 and 0 < cut["copied"] < cut["frames"]
    records = _cut_records(tmp_path / "run" / "ledger.sqlite")
    assert cut["frames"] == sum(c.end_frame - c.start_frame for c in records)
    assert cut["copied"] == sum(c.extra["cut"]["copied_frames"] for c in records)
    # no B-frames: only a clip's head, up to the source's next keyframe, is re-encoded (a GOP
    # the clip ends inside is copied up to its end)
    with av.open(str(video)) as c:
        keys = [i for i, f in enumerate(c.decode(video=0)) if f.key_frame]
    assert keys == list(range(0, 310, 60))
    for c in records:
        head = min(c.end_frame, next(k for k in [*keys, 10**9] if k >= c.start_frame))
        assert c.end_frame - c.start_frame - c.extra["cut"]["copied_frames"] == \
            head - c.start_frame


def test_text_filter_cost_skips_a_clip_it_cannot_grab(corpus: Path, tmp_path: Path) -> None:
    """A clip whose frames cannot be grabbed (here: times past the file's end) is skipped, as
    the filter skips it; the bench used to stop there, after measuring every level."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from clipfactory.bench.run import text_filter_cost
    from clipfactory.config import Config

    video = str(sorted(corpus.glob("*.mp4"))[0])
    pq.write_table(pa.Table.from_pylist([
        {"source": video, "start_s": 100.0, "end_s": 102.0},
        {"source": video, "start_s": 0.5, "end_s": 2.5}]), tmp_path / "index.parquet")
    got = text_filter_cost(tmp_path, Config())
    assert got is not None and got["clips"] == 2 and got["frames"] == 3


def test_cut_lines_give_shares_per_codec_and_keyframe_spacing() -> None:
    cut = {"clips": 5, "frames": 400, "copied": 250, "parts": [
        {"codec": "h264", "method": "reencode", "clips": 1, "frames": 50, "copied": 0},
        {"codec": "h264", "method": "smart", "clips": 3, "frames": 250, "copied": 200},
        {"codec": "vp9", "method": "smart", "clips": 1, "frames": 100, "copied": 50}]}
    lines = cut_lines(cut, {"h264": {"videos": 2, "seconds": 60.0, "keyframes": 20},
                            "vp9": {"videos": 1, "seconds": 30.0, "keyframes": 0}})
    assert lines[0] == "cut: 5 clips, 400 frames, 150 re-encoded (38 %), the rest copied"
    assert lines[1].split() == ["h264", "4", "clips", "300", "frames", "100", "re-encoded",
                                "(33", "%)", "(reencode", "1,", "smart", "3)"]
    assert lines[2].split()[:7] == ["vp9", "1", "clip", "100", "frames", "50", "re-encoded"]
    assert lines[3] == "source keyframes: h264 one every 3.0 s"  # none counted: not a rate
    assert len(lines) == 4


def test_cli_bench_input_file_prints_the_split(corpus: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    video = corpus / "video_000.mp4"
    assert main(["bench", "--input", str(video), "--workdir", str(tmp_path),
                 "--detector", "builtin"]) == 0
    out = capsys.readouterr().out
    assert "clipfactory bench: 1 videos" in out
    assert "CPU split" in out and "decode" in out and "outside the split" in out
    assert "driver: start" in out and "driver: report" in out
    assert "peak RSS MiB" in out and "faults k" in out and "sys s" in out
    assert "re-encoded" in out and "source keyframes: h264 one every" in out
    r = json.loads((tmp_path / "bench.json").read_text())
    assert r["corpus"]["inputs"] == [str(video)]
    assert json.loads((tmp_path / "bench-inputs.jsonl").read_text())["path"] == \
        str(video.resolve())


def test_cli_bench_real_is_an_alias_and_errors_are_short(tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]
                                                         ) -> None:
    assert main(["bench", "--real", str(tmp_path / "missing"), "--workdir", str(tmp_path)]) == 2
    assert "input not found" in capsys.readouterr().err
    assert main(["bench", "--resolution", "720q", "--workdir", str(tmp_path)]) == 2
    assert "not a resolution" in capsys.readouterr().err


def test_bench_leaves_out_what_the_probe_rejects_and_measures_a_cut_short_file(
        corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A user's folder: one good video, one cut short after its index (it decodes part way),
    and files no run can read. Each level measures the same usable files."""
    folder = tmp_path / "mine"
    folder.mkdir()
    shutil.copy(corpus / "video_000.mp4", folder / "good.mp4")
    broken = write_broken(tmp_path / "broken")
    for name in ("text", "no_moov", "cut_payload"):
        shutil.copy(broken[name], folder / f"{name}.mp4")
    (folder / "noise.mkv").write_bytes(bytes(range(256)) * 20)
    part = decode_file(str(folder / "cut_payload.mp4"))  # it raised mid-file before
    assert 0 < part["frames"] < 90

    r = run_bench(workdir=tmp_path / "b", inputs=[folder], detector="builtin", text_filter=False)
    skipped = {Path(s["path"]).name: s["reason"] for s in r["corpus"]["skipped"]}
    assert skipped == {"text.mp4": "probe/not_a_media_file",
                       "no_moov.mp4": "probe/truncated_no_index",
                       "noise.mkv": "probe/not_a_media_file"}
    assert r["corpus"]["videos"] == 2
    good = decode_file(str(folder / "good.mp4"))["seconds"]
    for level in ("decode_only", "analysis", "pipeline"):
        assert r[level]["media_s"] == pytest.approx(good + part["seconds"], abs=0.1)
    out = capsys.readouterr().out
    assert f"skipped {folder / 'no_moov.mp4'}: probe/truncated_no_index" in out
    assert "3 input(s) left out" in out

    only_bad = tmp_path / "bad"
    only_bad.mkdir()
    shutil.copy(broken["text"], only_bad / "text.mp4")
    assert main(["bench", "--input", str(only_bad), "--workdir", str(tmp_path / "c")]) == 2
    assert "no usable video" in capsys.readouterr().err


def test_parse_resolutions() -> None:
    assert parse_resolutions("360p, 720p,1080p") == [(640, 360), (1280, 720), (1920, 1080)]
    assert parse_resolutions("320x180") == [(320, 180)]
    for bad in ("720", "0p", "321x180", "x"):
        with pytest.raises(ValueError):
            parse_resolutions(bad)


def test_bench_one_corpus_and_table_per_resolution(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    sizes = parse_resolutions("90p,180p")
    results = run_bench_sizes(sizes, minutes=0.05, workdir=tmp_path, detector="builtin",
                              text_filter=False)
    assert [r["corpus"]["size"] for r in results] == ["160x90", "320x180"]
    for (w, h), r in zip(sizes, results, strict=True):
        corpus = tmp_path / f"corpus-0.05min-{w}x{h}-veryfast-k96"
        with av.open(str(sorted(corpus.glob("*.mp4"))[0])) as c:
            s = c.streams.video[0]
            assert (s.codec_context.width, s.codec_context.height) == (w, h)
            # encoded as most footage is, with B-frames (decode order is not display order)
            assert any(p.pts != p.dts for p in c.demux(s) if p.size)
        assert json.loads((tmp_path / f"bench-{w}x{h}.json").read_text())["corpus"]["size"] \
            == f"{w}x{h}"
        _check_split(r["analysis"], r["analysis"]["cpu_s"])
    assert len(json.loads((tmp_path / "bench.json").read_text())["runs"]) == 2
    out = capsys.readouterr().out
    assert out.count("CPU split") == 2 and "320x180" in out and "resolution" in out
