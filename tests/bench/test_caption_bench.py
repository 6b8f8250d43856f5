"""The caption bench runs against its local server and captions every clip (no timings)."""

from __future__ import annotations

import pytest

pytest.importorskip("PIL")

from clipfactory.bench.caption import run_caption_bench


def test_caption_bench_small(tmp_path, capsys):
    r = run_caption_bench(tmp_path, clips=3, seconds=1.0, width=160, height=90, concurrency=2,
                          batch=2)
    assert r["ok"] == 3 and r["requests"] == 3 and r["frames_per_clip"] == 2
    assert set(r["rows"]) == {"decode-only (every frame)", "frames: sample, scale, JPEG",
                              "stage, end to end (own process)"}
    assert all(row["clips_per_s"] > 0 for row in r["rows"].values())
    assert "captions ok 3/3" in capsys.readouterr().out
