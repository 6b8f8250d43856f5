"""``clipfactory bench-cut`` on a tiny corpus: every mode cuts the same clips, figures add up."""

from __future__ import annotations

import json
from pathlib import Path

from clipfactory.bench.cut import run_cut_bench
from clipfactory.cli import main


def test_bench_cut_compares_the_modes_on_the_same_clips(tmp_path: Path, capsys) -> None:
    report = run_cut_bench(tmp_path, videos=1, seconds=8, gops=(2.0,), width=160, height=90,
                           clip_s=(2.0, 4.0), quiet=True)
    g = report["groups"]["gop_2s"]
    assert {"copy", "exact", "reencode"} <= set(g)
    clips = g["exact"]["clips"]
    assert clips >= 2 and g["reencode"]["clips"] == g["copy"]["clips"] == clips
    # exact and re-encode hold every requested frame; copy only whole GOPs inside
    assert g["exact"]["ok"] == g["reencode"]["ok"] == clips
    assert g["exact"]["output_s"] == g["reencode"]["output_s"] == g["exact"]["requested_s"]
    assert g["copy"]["output_s"] <= g["exact"]["output_s"]
    assert g["copy"]["copied_frames"] == g["copy"]["frames"] > 0
    assert 0 < g["exact"]["copied_frames"] < g["exact"]["frames"]
    assert g["reencode"]["copied_frames"] == 0
    assert all(g[m]["bytes"] > 0 and g[m]["x_realtime_per_core"] > 0 for m in g
               if isinstance(g[m], dict))
    assert json.loads((tmp_path / "bench-cut.json").read_text())["groups"]["gop_2s"]
    # the CLI prints the table (sources are reused from the first run)
    assert main(["bench-cut", "--videos", "1", "--seconds", "8", "--gops", "2", "--width",
                 "160", "--height", "90", "--clip-seconds", "2,4",
                 "--workdir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "vs reencode" in out and "exact" in out and "copy" in out


def test_bench_cut_on_hevc_sources_splices_them(tmp_path: Path) -> None:
    report = run_cut_bench(tmp_path, videos=1, seconds=8, gops=(2.0,), width=160, height=90,
                           clip_s=(2.0, 4.0), quiet=True, codec="hevc")
    g = report["groups"]["gop_2s"]
    assert report["codec"] == "hevc" and g["exact"]["ok"] == g["exact"]["clips"] >= 2
    assert 0 < g["exact"]["copied_frames"] < g["exact"]["frames"]
    assert g["exact"]["fallbacks"] == [] and g["reencode"]["copied_frames"] == 0
    assert [p.name.startswith("hevc_") for p in (tmp_path / "cut-sources").iterdir()] == [True]
