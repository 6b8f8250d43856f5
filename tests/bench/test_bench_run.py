"""``clipfactory bench`` on tiny inputs: the levels, the per-stage CPU split, per-level peak RSS
and one result per ``--resolution`` (consistency only, no timings asserted)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import av
import pytest

from clipfactory.bench.run import parse_resolutions, run_bench, run_bench_sizes
from clipfactory.cli import main
from clipfactory.media.stagetime import STAGES
from clipfactory.testing.synth import make_corpus


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
    assert r["analysis_rules_only"] is None  # the detector is the rules already
    _check_split(r["analysis"], r["analysis"]["cpu_s"])
    full = r["pipeline"]  # the split covers the workers' per-video work, not the driver
    _check_split(full, full["cpu_s"] - full["driver_cpu_s"])
    assert {"cut_decode", "cut_encode", "mux_write"} & set(full["cpu_split"]) or \
        r["clips"]["kept"] == 0
    rss = r["peak_rss_mib"]
    assert rss["largest_worker"] == full["peak_rss_mib"] > 0 and rss["driver"] > 0
    assert rss["analysis"] == r["analysis"]["peak_rss_mib"]
    assert json.loads((tmp_path / "bench.json").read_text())["pipeline"]["cpu_split"]


def test_cli_bench_input_file_prints_the_split(corpus: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    video = corpus / "video_000.mp4"
    assert main(["bench", "--input", str(video), "--workdir", str(tmp_path),
                 "--detector", "builtin"]) == 0
    out = capsys.readouterr().out
    assert "clipfactory bench: 1 videos" in out
    assert "CPU split" in out and "decode" in out and "outside the split" in out
    assert "peak RSS MiB" in out
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
        corpus = tmp_path / f"corpus-0.05min-{w}x{h}"
        with av.open(str(sorted(corpus.glob("*.mp4"))[0])) as c:
            s = c.streams.video[0]
            assert (s.codec_context.width, s.codec_context.height) == (w, h)
        assert json.loads((tmp_path / f"bench-{w}x{h}.json").read_text())["corpus"]["size"] \
            == f"{w}x{h}"
        _check_split(r["analysis"], r["analysis"]["cpu_s"])
    assert len(json.loads((tmp_path / "bench.json").read_text())["runs"]) == 2
    out = capsys.readouterr().out
    assert out.count("CPU split") == 2 and "320x180" in out and "resolution" in out
