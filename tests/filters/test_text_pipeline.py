"""The text-overlay filter inside a run: burned-in text dropped, a sign in a pan kept, scores
recorded, and a clear error at start when the model is not installed."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from clipfactory.annotate.caption_frames import encode_mp4
from clipfactory.cli import main
from clipfactory.config import Config
from clipfactory.filters import text_overlay
from clipfactory.pipeline import run

pytest.importorskip("PIL")
try:
    text_overlay.find_det_model()
except text_overlay.TextModelError:
    pytest.skip("rapidocr-onnxruntime is not installed", allow_module_level=True)

from clipfactory.testing.text_frames import render

KINDS = ("subtitles", "watermark", "lower_third", "sign", "clean")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    d = tmp_path_factory.mktemp("text_corpus")
    for i, kind in enumerate(KINDS):  # 2.5 s slow pans, one kind each
        frames = render(kind, n=75, seed=i, size=(480, 270), step=(3, 1))
        (d / f"{kind}.mp4").write_bytes(encode_mp4(frames, 30))
    return d


def test_overlays_dropped_scene_text_kept(corpus, tmp_path):
    out = tmp_path / "out"
    # the smooth test texture reads as blurry: only the text filter is under test here
    cfg = Config.model_validate({"workers": 1, "filters": {
        "text_overlay": True, "text_max_side": 480, "min_sharpness": 0}})
    run(corpus, out, cfg)
    rows = {r["source"].rsplit("/", 1)[-1][:-4]: r
            for r in pq.read_table(out / "rejected.parquet").to_pylist() if r["clip_id"]}
    kept = {r["source"].rsplit("/", 1)[-1][:-4]: r
            for r in pq.read_table(out / "index.parquet").to_pylist()}
    assert set(rows) == {"subtitles", "watermark", "lower_third"}
    assert all(r["reason"] == "text_overlay" and dict(r["scores"])["text.area"] >= 0.002
               for r in rows.values())
    assert set(kept) == {"sign", "clean"}
    assert dict(kept["sign"]["scores"])["text.any_area"] > 0  # seen, and judged scene text
    assert dict(kept["sign"]["scores"])["text.area"] < 0.002
    assert dict(kept["clean"]["scores"])["text.area"] == 0


def test_missing_model_is_a_clear_error_at_start(corpus, tmp_path, monkeypatch, capsys):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "rapidocr_onnxruntime" else real(name, *a))
    text_overlay._session.cache_clear()
    cfg = tmp_path / "c.yaml"
    cfg.write_text("filters:\n  text_overlay: true\n")
    out = tmp_path / "out"
    assert main(["run", "--input", str(corpus), "--output", str(out), "--config", str(cfg),
                 "--quiet"]) == 2
    assert "clipfactory[text]" in capsys.readouterr().err
    assert not (out / "shards").exists()
