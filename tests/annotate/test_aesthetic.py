"""The aesthetic predictor on the clip embeddings: scores equal to the MLP of each clip's own
vector, `filters.min_aesthetic` dropping clips before they reach a shard, and bad predictor
files stopped before the run."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

pytest.importorskip("transformers")

from clipfactory.annotate.aesthetic import AestheticError, AestheticPredictor
from clipfactory.cli import main
from clipfactory.config import Config
from clipfactory.pipeline import run
from clipfactory.testing.clipmodels import make_tiny_aesthetic, make_tiny_clip
from clipfactory.testing.synth import ShotSpec, write_video


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("aes")
    corpus = d / "corpus"
    corpus.mkdir()
    for v in range(3):
        write_video(corpus / f"v{v}.mp4", [ShotSpec(66, "texture", 10 * v + 1),
                                           ShotSpec(72, "texture", 10 * v + 2)], gop=30)
    clip = make_tiny_clip(d / "clip")
    return corpus, clip, make_tiny_aesthetic(d / "aes.pth", 16), make_tiny_aesthetic(
        d / "aes32.pth", 32)


def _cfg(clip, pred, **filters) -> Config:
    return Config.model_validate({
        "workers": 1, "annotate": {"embeddings": {"model": str(clip), "frames": 2},
                                   "aesthetic": {"model": str(pred)},
                                   "categories": {"enabled": False}},
        "filters": filters})


@pytest.fixture(scope="module")
def scored(setup, tmp_path_factory):
    """One run with the predictor and no filter: the reference both tests read."""
    corpus, clip, pred, _ = setup
    out = tmp_path_factory.mktemp("scored") / "out"
    run(corpus, out, _cfg(clip, pred))
    return out


def test_scores_are_the_predictor_of_each_clip_vector(setup, scored):
    _, _, pred, _ = setup
    out = scored
    index = {r["clip_id"]: r for r in pq.read_table(out / "index.parquet").to_pylist()}
    vecs = {r["clip_id"]: np.asarray(r["embedding"], np.float32)
            for r in pq.read_table(out / "embeddings").to_pylist()}
    mlp = AestheticPredictor(pred)
    import torch

    sd = torch.load(pred, weights_only=True)
    for cid, row in index.items():
        x = torch.from_numpy(vecs[cid][None])
        for i in (0, 2, 4, 6, 7):  # the reference: torch's own linear layers
            x = x @ sd[f"layers.{i}.weight"].T + sd[f"layers.{i}.bias"]
        assert dict(row["scores"])["aesthetic"] == pytest.approx(float(x[0, 0]), abs=1e-3)
        assert float(mlp(vecs[cid][None])[0]) == pytest.approx(float(x[0, 0]), abs=1e-4)
    assert len({round(dict(r["scores"])["aesthetic"], 4) for r in index.values()}) == 6


def test_min_aesthetic_drops_before_the_shards(setup, scored, tmp_path):
    corpus, clip, pred, _ = setup
    ref = scored
    scores = sorted(dict(r["scores"])["aesthetic"]
                    for r in pq.read_table(ref / "index.parquet").to_pylist())
    cut = (scores[2] + scores[3]) / 2
    out = tmp_path / "out"
    s = run(corpus, out, _cfg(clip, pred, min_aesthetic=cut))
    kept = pq.read_table(out / "index.parquet").to_pylist()
    assert len(kept) == 3 and all(dict(r["scores"])["aesthetic"] >= cut for r in kept)
    rej = [r for r in pq.read_table(out / "rejected.parquet").to_pylist() if r["clip_id"]]
    assert len(rej) == 3 and {(r["stage"], r["reason"]) for r in rej} == {
        ("filter", "low_aesthetic")}
    assert s["counts"]["dropped_by_reason"] == {"filter/low_aesthetic": 3}
    assert not list((out / "staging").rglob("*.mp4"))  # their staged files went too
    from clipfactory.provenance.audit import audit

    assert audit(out).ok


def test_bad_predictors_stop_the_run_before_it_starts(setup, tmp_path, capsys):
    corpus, clip, _, wrong_dim = setup
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a state dict")
    with pytest.raises(AestheticError, match="cannot be read"):
        AestheticPredictor(junk)
    for pred, why in ((wrong_dim, "takes 32-d embeddings"), (junk, "cannot be read"),
                      (tmp_path / "none.pth", "no such file")):
        cfg = tmp_path / "c.yaml"
        cfg.write_text(json.dumps({"annotate": {"embeddings": {"model": str(clip)},
                                                "aesthetic": {"model": str(pred)}}}))
        assert main(["models", "--config", str(cfg)]) == 2
        assert why in capsys.readouterr().out
    out = tmp_path / "out"
    assert main(["run", "--input", str(corpus), "--output", str(out), "--config", str(cfg),
                 "--quiet"]) == 2
    assert not (out / "shards").exists()
