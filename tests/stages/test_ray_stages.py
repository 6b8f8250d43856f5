"""Model stages on a real local Ray cluster: an actor pool per stage that declares its CPUs
(and GPUs where the cluster has some), a dead actor failing only its batch, and a private
instance when no cluster is given. Run with ``-m ray`` (``pip install -e '.[ray]'``)."""

from __future__ import annotations

import logging

import numpy as np
import pyarrow.parquet as pq
import pytest

from clipfactory.config import Config
from clipfactory.pipeline import run
from clipfactory.stages.ray import RayStageRunner
from clipfactory.testing.stages import MeanColourStage

ray = pytest.importorskip("ray")
pytestmark = [pytest.mark.ray, pytest.mark.timeout(240)]


@pytest.fixture(scope="module", autouse=True)
def _only_when_asked(request):
    if "ray" not in (request.config.getoption("markexpr") or "").replace("not ray", ""):
        pytest.skip("Ray cluster tests run with -m ray")


def _vectors(out):
    return {r["clip_id"]: np.asarray(r["embedding"]) for r in
            pq.read_table(out / "embeddings").to_pylist()}


def test_private_instance_runs_the_stage_as_actors(stage_corpus, tmp_path):
    assert not ray.is_initialized()
    out = tmp_path / "out"
    s = run(stage_corpus, out, Config(workers=1, executor="ray"),
            stages=[MeanColourStage(batch_size=3)])
    assert not ray.is_initialized()  # the run shut down the instance it started
    index = {r["clip_id"] for r in pq.read_table(out / "index.parquet").to_pylist()}
    assert len(index) == 8 and set(_vectors(out)) == index
    assert s["annotations"]["embeddings"] == 8


def test_cluster_actor_pool_with_gpus_and_a_dead_actor(stage_corpus, tmp_path):
    from ray.cluster_utils import Cluster

    c = Cluster(initialize_head=True, connect=False,
                head_node_args={"num_cpus": 1, "include_dashboard": False,
                                "object_store_memory": 80 << 20})
    c.add_node(num_cpus=1, num_gpus=1, object_store_memory=80 << 20)
    ray.init(address=c.address, logging_level=logging.WARNING, configure_logging=False)
    try:
        c.wait_for_nodes()
        ref = tmp_path / "ref"
        run(stage_corpus, ref, Config(workers=1))  # clips to feed the pool directly
        from clipfactory.ledger import Ledger
        from clipfactory.stages.store import AnnotationStore

        ledger = Ledger(ref / "ledger.sqlite")
        clips = AnnotationStore(ref, ledger).pending("colour")
        ledger.close()
        stage = MeanColourStage(batch_size=2, crash_on=frozenset({clips[0].clip_id}))
        stage.gpus_auto = True  # type: ignore[attr-defined]
        runner = RayStageRunner(ray, stage, workers=1)
        assert runner.gpus == 1.0  # the cluster has a GPU: the actor declares one
        runner.submit(clips)
        outs = {o.clip_id: o for o in runner.drain()}
        runner.close()
        assert len(outs) == 8 and runner.crashes == 1
        assert {cid for cid, o in outs.items() if not o.ok} == {clips[0].clip_id,
                                                                 clips[1].clip_id}
        assert outs[clips[0].clip_id].reason == "colour_crashed"
        assert all(o.ok and o.vector is not None for o in outs.values()
                   if o.clip_id not in (clips[0].clip_id, clips[1].clip_id))
        # the whole run on the cluster, with the stage's actors beside the video tasks
        out = tmp_path / "out"
        run(stage_corpus, out, Config(workers=1, executor="ray", ray_address=c.address),
            stages=[MeanColourStage(batch_size=3)])
        assert set(_vectors(out)) == {r["clip_id"] for r in
                                      pq.read_table(out / "index.parquet").to_pylist()}
    finally:
        ray.shutdown()
        c.shutdown()


def test_captions_on_ray_against_a_local_server(stage_corpus, tmp_path):
    pytest.importorskip("PIL")
    from clipfactory.testing.vlm_server import VLMServer

    with VLMServer() as server:
        cfg = Config.model_validate({"workers": 1, "executor": "ray", "annotate": {"captions": {
            "backend": "openai", "base_url": server.base_url, "model": "fake-vlm", "fps": 1,
            "max_frames": 2, "max_side": 64, "batch": 3}}})
        out = tmp_path / "out"
        run(stage_corpus, out, cfg)
    rows = pq.read_table(out / "index.parquet").to_pylist()
    assert len(rows) == 8 and {r["caption_status"] for r in rows} == {"ok"}
    assert all(r["caption"].startswith("frame 1: 64x36") for r in rows)
