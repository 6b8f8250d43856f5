"""Burned-in text: PP-OCRv4 detection on rendered footage (clipfactory.testing.text_frames)."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from clipfactory.filters.text_overlay import (
    TextDetector,
    TextModelError,
    TextScore,
    find_det_model,
    is_overlay,
    overlay_score,
)

pytest.importorskip("PIL")
from clipfactory.testing.text_frames import SIZE, render


@pytest.fixture(scope="module")
def detector() -> TextDetector:
    # find_det_model, not importorskip: importing rapidocr_onnxruntime pulls OpenCV (slow)
    try:
        return TextDetector(find_det_model())
    except TextModelError as e:
        pytest.skip(str(e))


# kind -> a test on the (sole or first) persistent box (x0, y0, x1, y1), normalised
WHERE = {
    "subtitles": lambda b: b[1] > 0.75 and b[0] < 0.5 < b[2],
    "lower_third": lambda b: b[1] > 0.6 and b[2] < 0.5,
    "title": lambda b: b[1] < 0.5 < b[3] and b[0] < 0.5 < b[2],
    "ticker": lambda b: b[1] > 0.85,
    "watermark": lambda b: b[0] > 0.7 and b[3] < 0.2,
}


def test_text_map_and_mask_shapes(detector):
    frame = render("subtitles", 1)[0]
    prob = detector.text_map(frame)
    assert prob.shape == (352, 640) and prob.dtype == np.float32
    assert prob.min() >= 0.0 and prob.max() <= 1.0
    mask = detector.text_mask(frame)
    assert mask.shape == (88, 160) and mask.dtype == bool
    ys, _ = np.nonzero(mask)
    assert len(ys) > 0 and ys.min() > 0.75 * 88  # the subtitle line, nothing else
    assert detector.input_size(1080, 1920) == (352, 640)


@pytest.mark.parametrize("n", [3, 4])
@pytest.mark.parametrize("kind", sorted(WHERE))
def test_each_overlay_kind_is_overlay(detector, kind, n):
    score = overlay_score(render(kind, n, seed=n), detector)
    assert is_overlay(score), score
    assert score.area > 0 and score.frames == n
    assert score.camera_shift > 0.05  # the camera pans under the overlay
    assert WHERE[kind](score.persistent_boxes[0]), score.persistent_boxes


def test_clean_footage_has_no_text(detector):
    score = overlay_score(render("clean", 3), detector)
    assert score.area == 0 and score.any_text_area < 0.001
    assert not is_overlay(score)


@pytest.mark.parametrize("n", [3, 4])
def test_a_sign_in_a_pan_is_scene_text(detector, n):
    score = overlay_score(render("sign", n, seed=n), detector)
    assert score.any_text_area > 0.005  # seen in every single frame
    assert score.area < 0.002 and not is_overlay(score), score


def test_a_slow_pan_over_a_sign_is_still_scene_text(detector):
    # the sign overlaps itself across frames: persistent in place, but the camera explains it
    score = overlay_score(render("sign", 3, step=(16, 0)), detector)
    assert score.scene_text_area > 0.002 and not is_overlay(score), score


def test_scene_text_in_a_still_shot_counts_as_overlay(detector):
    # the documented limit: nothing moves, so nothing tells a sign from an overlay
    score = overlay_score(render("static_sign", 3), detector)
    assert is_overlay(score) and score.camera_shift == 0


class _FakeDetector:
    """Masks given per frame (by object identity): the rule without the model."""

    def __init__(self, masks: dict[int, np.ndarray]) -> None:
        self.masks = masks

    def text_mask(self, rgb: np.ndarray, threshold: float = 0.3) -> np.ndarray:
        return self.masks[id(rgb)]


def test_text_in_nearly_all_frames_is_persistent():
    frames = render("clean", 4)
    box = np.zeros((88, 160), bool)
    box[70:74, 40:120] = True
    fake = _FakeDetector({id(f): box if i != 2 else np.zeros_like(box)
                          for i, f in enumerate(frames)})
    score = overlay_score(frames, fake)  # 3 of 4 frames: nearly all
    assert is_overlay(score)
    assert score.persistent_boxes[0] == pytest.approx((0.25, 70 / 88, 0.75, 74 / 88), abs=1e-4)
    assert not is_overlay(overlay_score(frames[1:], fake))  # 2 of 3 frames: not enough


def test_overlay_score_input_errors():
    with pytest.raises(ValueError, match="at least one frame"):
        overlay_score([], _FakeDetector({}))
    assert not is_overlay(TextScore(0.001, 0.01, (), 3))


def test_a_missing_model_is_a_clear_error(tmp_path):
    with pytest.raises(TextModelError, match="no such file") as e:
        TextDetector(str(tmp_path / "det.onnx"))
    assert str(tmp_path / "det.onnx") in str(e.value)
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(TextModelError, match="cannot be loaded as ONNX"):
        TextDetector(str(bad))


def test_a_missing_package_says_what_to_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "rapidocr_onnxruntime" else real(name, *a))
    with pytest.raises(TextModelError, match=r"pip install 'clipfactory\[text\]'"):
        find_det_model()


def test_rendered_footage_is_deterministic():
    a, b = render("ticker", 3, seed=5), render("ticker", 3, seed=5)
    assert all(x.shape == (SIZE[1], SIZE[0], 3) and np.array_equal(x, y)
               for x, y in zip(a, b, strict=True))
    assert not np.array_equal(a[0], a[1])
