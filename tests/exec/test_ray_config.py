"""Choosing and configuring the Ray executor, without Ray installed."""

from __future__ import annotations

import sys
from types import SimpleNamespace

import pytest

from clipfactory import cli
from clipfactory.config import Config, RayConfig
from clipfactory.exec import make_executor
from clipfactory.exec.local import LocalExecutor
from clipfactory.exec.ray import (
    RayExecutor,
    cluster_slots,
    import_ray,
    needs_actors,
    setup_worker,
    worker_config,
)


def test_the_config_picks_the_executor():
    assert isinstance(make_executor(Config()), LocalExecutor)
    ex = make_executor(Config(executor="ray", ray_address="ray://head:10001", workers=3,
                              video_timeout_s=0))
    assert isinstance(ex, RayExecutor)
    assert (ex.address, ex.local_cpus, ex.timeout_s) == ("ray://head:10001", 3, None)


def test_actors_for_gpus_or_when_forced():
    assert not needs_actors(Config())
    assert needs_actors(Config(ray=RayConfig(actors=True)))
    assert needs_actors(Config(ray=RayConfig(gpus_per_video=0.25)))


def test_worker_threads_follow_the_cpus_ray_reserves():
    assert worker_config(Config(ray=RayConfig(cpus_per_video=2.5))).analysis.decode_threads == 3
    cfg = Config(ray=RayConfig(cpus_per_video=4))
    cfg.analysis.decode_threads = 1
    assert worker_config(cfg).analysis.decode_threads == 1
    assert cfg.ray.cpus_per_video == 4 and Config().analysis.decode_threads == 0


def test_slots_are_counted_per_alive_node():
    nodes = [{"Alive": True, "Resources": {"CPU": 8.0, "GPU": 1.0}},
             {"Alive": True, "Resources": {"CPU": 3.0}},
             {"Alive": False, "Resources": {"CPU": 64.0, "GPU": 8.0}}]
    fake = SimpleNamespace(nodes=lambda: nodes)
    assert cluster_slots(fake, RayConfig(cpus_per_video=2)) == 4 + 1
    assert cluster_slots(fake, RayConfig(cpus_per_video=1, gpus_per_video=0.25)) == 4 + 0


def test_without_ray_the_error_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ImportError, match=r"pip install 'clipfactory\[ray\]'"):
        import_ray()


def test_cli_ray_address_implies_the_ray_executor(monkeypatch, tmp_path):
    seen = {}

    def fake_run(input_path, output, cfg, **kw):
        seen["cfg"] = cfg
        raise SystemExit(0)

    monkeypatch.setattr("clipfactory.pipeline.run", fake_run)
    with pytest.raises(SystemExit):
        cli.main(["run", "--input", str(tmp_path), "--output", str(tmp_path / "o"),
                  "--ray-address", "10.0.0.1:6379"])
    assert (seen["cfg"].executor, seen["cfg"].ray_address) == ("ray", "10.0.0.1:6379")
    with pytest.raises(SystemExit):
        cli.main(["run", "--input", str(tmp_path), "--output", str(tmp_path / "o"),
                  "--executor", "ray"])
    assert (seen["cfg"].executor, seen["cfg"].ray_address) == ("ray", None)


def test_a_model_detector_runs_on_actors_that_load_it_once():
    cfg = Config()
    cfg.shots.detector = "transnet"
    assert needs_actors(cfg)


def test_actor_setup_loads_the_model_into_the_process_cache():
    from clipfactory.shots.learned import load_model

    cfg = Config()
    cfg.shots.detector = "transnet"
    load_model.cache_clear()
    setup_worker(cfg)  # what each actor's constructor does
    assert load_model.cache_info().currsize == 1
    setup_worker(cfg)
    assert load_model.cache_info().hits >= 1
