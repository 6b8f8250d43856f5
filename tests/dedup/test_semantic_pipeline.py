"""Semantic dedup inside a run: re-encoded copies dropped by their vectors, the eps=None
statistics, and incremental runs that never drop a clip already in the dataset."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

from clipfactory.config import Config
from clipfactory.dedup.semantic import dedup_new
from clipfactory.pipeline import run
from clipfactory.testing.stages import MeanColourStage
from clipfactory.testing.synth import ShotSpec, write_video

_SHOTS = [[ShotSpec(66, "texture", 10 * v + 1), ShotSpec(72, "texture", 10 * v + 2)]
          for v in range(4)]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Three videos, and a re-encode of v0 (other bytes and pixels, same pictures)."""
    d = tmp_path_factory.mktemp("sem_corpus")
    for v in range(3):
        write_video(d / f"v{v}.mp4", _SHOTS[v], gop=30)
    write_video(d / "v0_copy.mp4", _SHOTS[0], gop=30, crf=30)
    return d


def _cfg(eps: float | None) -> Config:
    # exact and near dedup off: only the vectors can find the copy
    return Config.model_validate({"workers": 1, "annotate": {"embeddings": {"model": "x"}},
                                  "dedup": {"exact": False, "perceptual": False,
                                            "semantic": True, "semantic_eps": eps}})


def _stage() -> MeanColourStage:
    return MeanColourStage(batch_size=4, frames=3, vector="thumb")


def test_the_reencoded_copy_is_a_semantic_duplicate(corpus, tmp_path):
    out = tmp_path / "out"
    s = run(corpus, out, _cfg(0.02), stages=[_stage()])
    rej = [r for r in pq.read_table(out / "rejected.parquet").to_pylist() if r["clip_id"]]
    assert {r["reason"] for r in rej} == {"semantic_duplicate"}
    assert {r["source"].rsplit("/", 1)[-1] for r in rej} in ({"v0_copy.mp4"}, {"v0.mp4"})
    assert len(rej) == 2
    index = {r["clip_id"]: r for r in pq.read_table(out / "index.parquet").to_pylist()}
    assert len(index) == 6
    for r in rej:  # each points at the kept clip of the same span in the other file
        kept = index[r["duplicate_of"]]
        assert (kept["start_frame"], kept["end_frame"]) == (r["start_frame"], r["end_frame"])
        assert 0 <= dict(r["scores"])["dedup.distance"] < 0.02
    assert s["counts"]["dropped_by_reason"] == {"dedup/semantic_duplicate": 2}
    card = (out / "README.md").read_text()
    assert "## Semantic dedup" in card and "eps = 0.02" in card


def test_eps_none_drops_nothing_and_writes_the_distribution(corpus, tmp_path):
    out = tmp_path / "out"
    s = run(corpus, out, _cfg(None), stages=[_stage()])
    assert s["counts"]["clips"]["kept"] == 8
    sem = s["semantic_dedup"]
    assert sem["eps"] is None and sem["clips"] == 8
    table = {r["eps"]: r["clips"] for r in sem["eps_table"]}
    assert table[0.02] == 4  # the two pairs, both sides
    assert sem["quantiles"]["max"] > 0.98
    card = (out / "README.md").read_text()
    assert "`semantic_eps: null`: nothing dropped" in card and "| 0.02 | 0.980 | 4 " in card


def test_an_incremental_copy_is_dropped_and_the_dataset_clip_stays(corpus, tmp_path):
    first = tmp_path / "first"
    first.mkdir()
    for v in range(3):
        (first / f"v{v}.mp4").symlink_to(corpus / f"v{v}.mp4")
    out = tmp_path / "out"
    run(first, out, _cfg(0.02), stages=[_stage()])
    before = {r["clip_id"] for r in pq.read_table(out / "index.parquet").to_pylist()}
    assert len(before) == 6
    (first / "v0_copy.mp4").symlink_to(corpus / "v0_copy.mp4")
    s = run(first, out, _cfg(0.02), stages=[_stage()])
    after = {r["clip_id"] for r in pq.read_table(out / "index.parquet").to_pylist()}
    assert after == before  # the copy's clips went, whatever their priority
    rej = [r for r in pq.read_table(out / "rejected.parquet").to_pylist() if r["clip_id"]]
    assert {r["source"].rsplit("/", 1)[-1] for r in rej} == {"v0_copy.mp4"}
    assert {r["duplicate_of"] for r in rej} <= before
    assert s["semantic_dedup"]["trained_on"] == 6  # no retraining for one more video


def test_dedup_new_decides_only_the_new_members():
    a = np.array([1.0, 0.0, 0.0], dtype=np.float32)
    b = np.array([0.0, 1.0, 0.0], dtype=np.float32)
    near_a = np.array([0.995, 0.0999, 0.0], dtype=np.float32)
    near_a /= np.linalg.norm(near_a)
    c = np.array([0.0, 0.0, 1.0], dtype=np.float32)
    res, old_best = dedup_new(np.stack([a, b]), np.stack([near_a, c, c]), eps=0.02)
    assert res.kept.tolist() == [False, True, False]
    assert res.duplicate_of.tolist() == [0, -1, 3]  # kept a; then the first new c (2 + 1)
    assert res.similarity[0] == pytest.approx(float(near_a @ a), abs=1e-6)
    assert old_best == pytest.approx([float(near_a @ a), float(near_a @ b)], abs=1e-6)
    none, _ = dedup_new(np.stack([a, b]), np.stack([near_a, c]), eps=None)
    assert none.kept.all() and none.nn_sim[1] == pytest.approx(0.0, abs=1e-6)
    first, _ = dedup_new(np.zeros((0, 3), np.float32), np.stack([a, near_a]), eps=0.02)
    assert first.kept.tolist() == [True, False] and first.duplicate_of.tolist() == [-1, 0]


def test_copies_cut_again_after_their_keeper_is_taken_down_are_compared_again(tmp_path):
    """Three encodes of one video: one kept, two semantic duplicates of it. The kept one is
    taken down, and the next run cuts its duplicates again. They kept the cluster of the
    time they were dropped, so semantic dedup never looked at them: both came back, near
    copies of each other. Now one is kept and the other is its duplicate."""
    from clipfactory.provenance.takedown import takedown, takedown_rules

    src = tmp_path / "in"
    src.mkdir()
    for name, crf in (("v.mp4", 18), ("copy_a.mp4", 28), ("copy_b.mp4", 32)):
        write_video(src / name, _SHOTS[0], gop=30, crf=crf)
    out = tmp_path / "out"
    run(src, out, _cfg(0.02), stages=[_stage()])
    kept = pq.read_table(out / "index.parquet").to_pylist()
    assert len(kept) == 2 and len({r["source"] for r in kept}) == 1
    takedown(out, takedown_rules(sources=[kept[0]["source"]]), "a request")
    s = run(src, out, _cfg(0.02), stages=[_stage()])
    index = pq.read_table(out / "index.parquet").to_pylist()
    assert len(index) == 2 and len({r["source"] for r in index}) == 1  # one copy, not both
    assert index[0]["source"] != kept[0]["source"]
    rej = [r for r in pq.read_table(out / "rejected.parquet").to_pylist()
           if r["reason"] == "semantic_duplicate"]
    by_id = {r["clip_id"]: r for r in index}
    assert len(rej) == 2 and all(r["duplicate_of"] in by_id for r in rej)
    assert s["counts"]["clips"]["kept"] == 2


def test_another_model_after_every_vector_was_taken_down_trains_its_own_clusters(tmp_path):
    """Every clip taken down (its vectors with it), then the output reused with another
    model, whose vectors have another width: the old model's centroids were kept, and
    assigning to them raised in this run and every later one."""
    from clipfactory.ledger import Ledger
    from clipfactory.provenance.takedown import takedown, takedown_rules

    src = tmp_path / "in"
    src.mkdir()
    write_video(src / "a.mp4", _SHOTS[0], gop=30)
    out = tmp_path / "out"
    run(src, out, _cfg(0.02), stages=[MeanColourStage(frames=3, vector="colour")])
    assert takedown(out, takedown_rules(sources=[str(src / "a.mp4")]), "all of it").embeddings
    for v in (1, 2):
        write_video(src / f"b{v}.mp4", _SHOTS[v], gop=30)
    write_video(src / "b1_copy.mp4", _SHOTS[1], gop=30, crf=30)
    s = run(src, out, _cfg(0.02),
            stages=[MeanColourStage(frames=3, vector="thumb", revision="v2")])
    assert s["counts"]["clips"]["kept"] == 4
    assert s["counts"]["dropped_by_reason"]["dedup/semantic_duplicate"] == 2
    ledger = Ledger(out / "ledger.sqlite")
    state = ledger.get_meta("semantic_index")
    dims = {r[0] for r in ledger.db.execute("SELECT dim FROM embeddings")}
    ledger.close()
    assert dims == {state["dim"]} and state["model"][1] == "v2"
