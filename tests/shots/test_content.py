"""The v0 content detector on synthetic frame sequences (no encoding: pure detector behaviour)."""

import numpy as np
import pytest

from clipfactory.shots import ContentDetector


def _texture(seed: int, h: int = 270, w: int = 480) -> np.ndarray:
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (h // 15, w // 15, 3)).astype(np.uint8)
    img = np.kron(coarse, np.ones((15, 15, 1), np.uint8))
    palette = rng.integers(40, 215, 3)
    return ((img.astype(np.int32) + palette) // 2).astype(np.uint8)


def _pan(tex: np.ndarray, n: int, step: int, h: int = 90, w: int = 160) -> list[np.ndarray]:
    out = []
    for i in range(n):
        y, x = (i * step // 3) % (tex.shape[0] - h), (i * step) % (tex.shape[1] - w)
        out.append(np.ascontiguousarray(tex[y:y + h, x:x + w]))
    return out


def _detect(frames):
    d = ContentDetector()
    for i, f in enumerate(frames):
        assert d.process(i, f) == []
    return d.finish()


def test_hard_cuts_are_found_at_the_exact_frame():
    frames = _pan(_texture(1), 40, 2) + _pan(_texture(2), 50, 2) + _pan(_texture(3), 30, 2)
    cuts = _detect(frames)
    assert [(c.kind, c.start_frame, c.end_frame) for c in cuts] == [("cut", 39, 40), ("cut", 89, 90)]


@pytest.mark.parametrize("step", [8, 16, 24])
def test_fast_camera_motion_is_not_a_cut(step):
    assert _detect(_pan(_texture(5, 600, 1200), 90, step)) == []


def test_flashes_and_strobe_are_not_cuts():
    frames = _pan(_texture(7), 60, 2)
    for i in (20, 21, 40):
        frames[i] = np.full_like(frames[i], 255)
    strobe = _pan(_texture(8), 60, 2)
    for i in range(10, 50, 6):
        strobe[i] = np.clip(strobe[i].astype(np.int32) + 120, 0, 255).astype(np.uint8)
    assert _detect(frames) == []
    assert _detect(strobe) == []


def test_static_noisy_shot_is_quiet():
    rng = np.random.default_rng(3)
    base = _texture(9)[:90, :160].astype(np.int16)
    frames = [np.clip(base + rng.normal(0, 6, base.shape), 0, 255).astype(np.uint8) for _ in range(80)]
    assert _detect(frames) == []


def test_frames_must_arrive_in_order():
    d = ContentDetector()
    d.process(0, _texture(1)[:90, :160])
    with pytest.raises(ValueError):
        d.process(2, _texture(1)[:90, :160])
