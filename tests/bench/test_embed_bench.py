"""``clipfactory bench --embed`` on a tiny random CLIP: every level is measured on the same
clips and the counts add up (timings only checked to be positive)."""

from __future__ import annotations

import json
from pathlib import Path

from clipfactory.bench.embed import run_embed_bench
from clipfactory.cli import main
from clipfactory.testing.clipmodels import make_tiny_clip

ROW_KEYS = {"clips", "frames", "wall_s", "cpu_s", "clips_per_s", "frames_per_s",
            "ratio_to_decode"}


def test_embed_bench_measures_every_level_on_the_same_clips(tmp_path: Path, capsys) -> None:
    model = str(make_tiny_clip(tmp_path / "tiny"))
    r = run_embed_bench(tmp_path / "work", model=model, clips=4, frames=2, batch=2,
                        device="cpu", seconds=1.0, width=160, height=90)
    assert r["corpus"]["clips"] == 4 and r["model"]["random_vitb32"] is False
    decode = r["decode_only"]
    assert set(decode) == ROW_KEYS and decode["clips"] == 4 and decode["frames"] == 4 * 30
    assert decode["ratio_to_decode"] == 1.0
    cpu = r["devices"]["cpu"]
    assert set(r["devices"]) == {"cpu"} and cpu["failed"] == {}
    rows = [r["sampling"], cpu["model"], cpu["end_to_end"], cpu["warm"]]
    for row in [decode, *rows]:
        assert set(row) == ROW_KEYS
        assert row["wall_s"] > 0 and row["clips_per_s"] > 0 and row["frames_per_s"] > 0
        assert row["ratio_to_decode"] > 0
    for row in rows:  # sampled frames: clips x frames, counted at every level
        assert row["clips"] == 4 and row["frames"] == 4 * 2
    assert cpu["child_cpu_s_total"] > 0 and r["peak_rss_mib"]["stage_worker"] > 0
    assert 0 < cpu["first_output_s"] <= cpu["end_to_end"]["wall_s"]
    assert r["gpu"] == "GPU: skipped (device cpu)"
    assert json.loads((tmp_path / "work" / "bench-embed.json").read_text())["devices"]["cpu"]
    out = capsys.readouterr().out
    assert "stage, end to end [cpu]" in out and "decode-only" in out

    # the CLI: --embed-only skips the pipeline bench; device auto says what it did on the GPU
    assert main(["bench", "--embed-only", "--embed-model", model, "--embed-clips", "2",
                 "--width", "160", "--height", "90", "--workdir", str(tmp_path / "work")]) == 0
    out = capsys.readouterr().out
    assert "model only [cpu]" in out and "GPU: " in out and "x-realtime" not in out
    assert len(list((tmp_path / "work").glob("clips-3s-160x90-30fps/clip-*.mp4"))) == 2
