"""The embedding stage end to end with tiny random CLIP and SigLIP checkpoints loaded through
the real path: vectors, categories in the index and in KEY.json, remuxes, and the checks that
stop a run before it starts (`clipfactory models`)."""

from __future__ import annotations

import json
import tarfile

import numpy as np
import pyarrow.parquet as pq
import pytest

pytest.importorskip("transformers")

from clipfactory.cli import main
from clipfactory.config import Config
from clipfactory.pipeline import run
from clipfactory.testing.clipmodels import make_tiny_clip, make_tiny_siglip
from clipfactory.testing.compare import remux
from clipfactory.testing.synth import ShotSpec, write_video

LABELS = ["red things", "blue things", "noise"]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("models")
    return {"clip": make_tiny_clip(d / "clip"), "siglip": make_tiny_siglip(d / "siglip")}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    d = tmp_path_factory.mktemp("embed_corpus")
    write_video(d / "a.mp4", [ShotSpec(66, "texture", 1), ShotSpec(72, "texture", 2)], gop=30)
    write_video(d / "b.mp4", [ShotSpec(70, "texture", 3)], gop=30)
    remux(d / "a.mp4", d / "a_remux.mkv")  # same frames, other bytes and container
    return d


def _cfg(model, **dedup) -> Config:
    return Config.model_validate({
        "workers": 1,
        "annotate": {"embeddings": {"model": str(model), "frames": 3, "batch": 2},
                     "categories": {"labels": LABELS}},
        "dedup": {"exact": False, "perceptual": False, **dedup}})


@pytest.mark.parametrize("kind", ["clip", "siglip"])
def test_vectors_and_categories_for_every_clip(kind, models, corpus, tmp_path):
    out = tmp_path / "out"
    s = run(corpus, out, _cfg(models[kind]))
    index = pq.read_table(out / "index.parquet").to_pylist()
    assert len(index) == 5 and s["annotations"]["failed_by_reason"] == {}
    parts = pq.read_table(out / "embeddings").to_pylist()
    vec = {r["clip_id"]: np.asarray(r["embedding"], dtype=np.float32) for r in parts}
    assert set(vec) == {r["clip_id"] for r in index}
    dim = {"clip": 16, "siglip": 32}[kind]
    for v in vec.values():
        assert v.shape == (dim,) and abs(float(np.linalg.norm(v)) - 1.0) < 1e-5
    assert {r["revision"] for r in parts} == {s["annotations"]["embedding_model"]["revision"]}
    assert parts[0]["model"] == str(models[kind])
    # the remux decodes to the same frames: the same vector, clip for clip
    by_span: dict[tuple, list] = {}
    for r in index:
        by_span.setdefault((r["source"].rsplit("/", 1)[-1].split(".")[0].split("_")[0],
                            r["start_frame"]), []).append(vec[r["clip_id"]])
    pairs = [v for v in by_span.values() if len(v) == 2]
    assert len(pairs) == 2
    for a, b in pairs:
        assert float(a @ b) > 0.999
    # categories: one of the labels, scores for every label, probabilities for CLIP
    for r in index:
        scores = dict(r["scores"])
        probs = [scores[f"category.{lab}"] for lab in LABELS]
        assert r["category"] == LABELS[int(np.argmax(probs))]
        if kind == "clip":
            assert sum(probs) == pytest.approx(1.0, abs=1e-4)
        else:
            assert all(0.0 < p < 1.0 for p in probs)
    # KEY.json in the shard carries the same annotations as the index row
    row = index[0]
    with tarfile.open(out / "shards" / row["shard"]) as tar:
        meta = json.loads(tar.extractfile(f"{row['key']}.json").read())
    assert meta["category"] == row["category"]
    assert meta["scores"] == pytest.approx(dict(row["scores"]))
    card = (out / "README.md").read_text()
    assert "| category | clips | share |" in card


def test_models_lists_where_weights_come_from(models, tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"annotate:\n  embeddings:\n    model: {models['clip']}\n")
    assert main(["models", "--config", str(cfg), "--json"]) == 0
    rows = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    embed = next(r for r in rows if r["stage"] == "embed")
    assert embed["source"] == "folder" and embed["path"] == str(models["clip"])
    assert embed["revision"].startswith("sha256:") and embed["device"] == "cpu"
    assert any(r["stage"].startswith("shots") for r in rows)


def test_a_missing_or_broken_model_stops_the_run_before_any_work(models, corpus, tmp_path,
                                                                  capsys):
    missing = tmp_path / "c1.yaml"
    missing.write_text(f"annotate:\n  embeddings:\n    model: {tmp_path / 'nowhere'}\n")
    assert main(["models", "--config", str(missing)]) == 2
    assert "MISSING" in capsys.readouterr().out
    hub = tmp_path / "c2.yaml"
    hub.write_text("annotate:\n  embeddings:\n    model: someone/not-cached-model\n")
    assert main(["models", "--config", str(hub)]) == 2
    assert "allow_download" in capsys.readouterr().out
    # a truncated weights file: found by `models`, and `run` stops with exit 2, output untouched
    broken = tmp_path / "broken"
    broken.mkdir()
    for f in models["clip"].iterdir():
        (broken / f.name).write_bytes(f.read_bytes())
    w = broken / "model.safetensors"
    w.write_bytes(w.read_bytes()[: w.stat().st_size // 2])
    cfg = tmp_path / "c3.yaml"
    cfg.write_text(f"annotate:\n  embeddings:\n    model: {broken}\n")
    assert main(["models", "--config", str(cfg)]) == 2
    assert "truncated" in capsys.readouterr().out
    out = tmp_path / "out"
    assert main(["run", "--input", str(corpus), "--output", str(out), "--config", str(cfg),
                 "--quiet"]) == 2
    assert "truncated" in capsys.readouterr().err
    assert not (out / "shards").exists()


@pytest.mark.parametrize("categories", [True, False])
def test_a_model_that_gives_nan_fails_its_clips_and_the_run_goes_on(corpus, tmp_path,
                                                                     categories):
    """A checkpoint whose projection holds NaN passes the file checks and gives NaN vectors
    and category scores. Kept as `ok`, the NaN made the record's JSON invalid (the ledger
    refused it: this run and every later one stopped), or, without categories, made semantic
    dedup's clustering raise. Each clip now fails as embed/non_finite_output, nothing kept."""
    from safetensors.numpy import load_file, save_file

    model = make_tiny_clip(tmp_path / "nan-clip")
    tensors = load_file(str(model / "model.safetensors"))
    tensors["visual_projection.weight"][:] = np.nan
    save_file(tensors, str(model / "model.safetensors"), metadata={"format": "pt"})
    cfg = _cfg(model, semantic=True, semantic_cluster_size=2)
    cfg.annotate.categories.enabled = categories
    out = tmp_path / "out"
    for _ in range(2):  # and again: the failures are retried, and fail the same way
        s = run(corpus, out, cfg)
        assert s["counts"]["clips"]["kept"] == 5
        assert s["annotations"]["failed_by_reason"] == {"embed/non_finite_output": 5}
    assert not (out / "embeddings").exists() or pq.read_table(out / "embeddings").num_rows == 0
    for r in pq.read_table(out / "index.parquet").to_pylist():
        assert r["category"] is None and not any(k.startswith("category.") for k in
                                                 dict(r["scores"]))
