"""The shipped TransNetV2 ONNX model: loading, windowing, the 48x27 input, and bad model files."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from clipfactory.shots.learned import (
    ModelError,
    default_model_path,
    load_model,
    resize_matrix,
    to_model_frames,
)
from clipfactory.testing.models import tiny_shot_model

REAL = Path(__file__).parent.parent / "fixtures" / "real"


def _frames(name: str, n: int) -> np.ndarray:
    with av.open(str(REAL / name)) as c:
        out = [f.to_ndarray(format="rgb24") for _, f in zip(range(n), c.decode(video=0),
                                                                strict=False)]
    return to_model_frames(np.stack(out))


def _video(n: int) -> np.ndarray:
    """Real footage (public domain, then CC BY; tests/fixtures/real) with a hard cut after
    frame ``n // 2 - 1``."""
    return np.concatenate([_frames("calais1906.mp4", n // 2),
                           _frames("bigbuckbunny.mp4", n - n // 2)])


def test_the_shipped_model_loads_once_and_says_what_it_is():
    m = load_model()
    assert m is load_model() and m.path == default_model_path()
    assert m.providers[-1] == "CPUExecutionProvider" and not m.on_gpu


def test_the_session_keeps_no_arena_or_memory_patterns():
    """Memory a window used goes back to the process (the cut reuses it): a 1080p worker's
    peak depends on it (learned.load_model's comment has the figures)."""
    opts = load_model().session.get_session_options()
    assert opts.enable_cpu_mem_arena is False and opts.enable_mem_pattern is False


def test_predict_is_the_authors_windowing():
    frames = _video(130)
    m = load_model()
    single, many = m.predict(frames)  # windows of 100 every 50, middle 50 kept
    assert single.shape == many.shape == (130,)
    padded = frames[np.clip(np.arange(-25, 175), 0, 129)]
    for k in range(3):
        s, p = m.run(padded[None, 50 * k:50 * k + 100])
        keep = slice(50 * k, min(130, 50 * k + 50))
        assert np.allclose(single[keep], s[0, 25:25 + keep.stop - keep.start], atol=1e-5)
        assert np.allclose(many[keep], p[0, 25:25 + keep.stop - keep.start], atol=1e-5)
    assert single.argmax() in (64, 65) and single.max() > 0.5  # the cut, after frame 64
    assert np.delete(single, [63, 64, 65, 66]).max() < 0.5


def test_model_frames_are_area_averages():
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 256, (5, 90, 160, 3), dtype=np.uint8)
    ref = np.einsum("ih,nhwc,wj->nijc", resize_matrix(90, 27), frames.astype(np.float32),
                    resize_matrix(160, 48).T)
    got = to_model_frames(frames)
    assert got.shape == (5, 27, 48, 3) and got.dtype == np.uint8
    assert np.abs(got.astype(float) - ref).max() <= 0.5 + 1e-3
    flat = np.full((2, 90, 160, 3), 77, np.uint8)
    assert np.all(to_model_frames(flat) == 77)


def test_missing_file(tmp_path):
    with pytest.raises(ModelError, match="no such file"):
        load_model(str(tmp_path / "nope.onnx"))


def test_truncated_and_foreign_files(tmp_path):
    cut = tmp_path / "truncated.onnx"
    cut.write_bytes(Path(default_model_path()).read_bytes()[:4096])
    with pytest.raises(ModelError, match="cannot be loaded as ONNX"):
        load_model(str(cut))
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x00not a model at all" * 50)
    with pytest.raises(ModelError, match=r"junk\.onnx: cannot be loaded"):
        load_model(str(junk))


def test_a_model_of_the_wrong_shape_is_refused(tmp_path):
    onnx = pytest.importorskip("onnx")

    wrong = tiny_shot_model(tmp_path / "rgb_float.onnx", elem=onnx.TensorProto.FLOAT)
    with pytest.raises(ModelError, match=r"expected one uint8 input \[batch, time, 27, 48, 3\]"):
        load_model(wrong)
    size = tiny_shot_model(tmp_path / "size.onnx", shape=("b", "t", 64, 64, 3))
    with pytest.raises(ModelError, match="TransNetV2"):
        load_model(size)
    names = tiny_shot_model(tmp_path / "names.onnx", outputs=("a", "b2"))
    with pytest.raises(ModelError, match=r"expected outputs \['single', 'many'\]"):
        load_model(names)


def test_a_model_that_fails_when_run_says_so(tmp_path):
    pytest.importorskip("onnx")
    bad = tiny_shot_model(tmp_path / "fails.onnx", fail=True)
    m = load_model(bad)  # loads: its signature is right
    with pytest.raises(ModelError, match=r"fails\.onnx: inference failed"):
        m.run(np.zeros((1, 30, 27, 48, 3), np.uint8))


def test_cuda_asked_for_without_it_is_a_clear_error():
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ModelError, match="no CUDA provider"):
        load_model(None, "cuda")


@pytest.mark.gpu
def test_cuda_gives_the_cpu_answer():
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip("needs onnxruntime-gpu and a CUDA device")
    frames = _video(120)
    cpu = load_model(None, "cpu").predict(frames)
    gpu = load_model(None, "cuda")
    assert gpu.on_gpu
    assert np.allclose(gpu.predict(frames)[0], cpu[0], atol=1e-3)


def test_colour_histograms_are_scattered_not_one_hot(tmp_path):
    """The one-hot histogram the exporter writes ([batch, time, 1296, 512] float32: 2.5 MiB a
    frame) becomes a ScatterElements sum with the same counts; the shipped model has it."""
    onnx = pytest.importorskip("onnx")
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from clipfactory.shots.export_transnet import lean_histograms

    shipped = onnx.load(default_model_path())
    ops = [n.op_type for n in shipped.graph.node if "color_hist" in n.name]
    assert "ScatterElements" in ops and "Equal" not in ops

    def one_hot_model():
        bins = helper.make_tensor_value_info("bins", TensorProto.INT32, ["b", "t", 1296, 1])
        out = helper.make_tensor_value_info("hist", TensorProto.FLOAT, ["b", "t", 512])
        inits = [numpy_helper.from_array(np.arange(512, dtype=np.int32).reshape(1, 1, 1, 512),
                                         "arange"),
                 numpy_helper.from_array(np.array([2], np.int64), "axes")]
        nodes = [helper.make_node("Equal", ["bins", "arange"], ["eq"]),
                 helper.make_node("Cast", ["eq"], ["hot"], to=TensorProto.FLOAT),
                 helper.make_node("ReduceSum", ["hot", "axes"], ["hist"], keepdims=0)]
        graph = helper.make_graph(nodes, "hist", [bins], [out], inits)
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])

    lean = lean_histograms(one_hot_model())
    onnx.checker.check_model(lean)
    assert [n.op_type for n in lean.graph.node].count("ScatterElements") == 1
    assert not any(n.op_type == "Equal" for n in lean.graph.node)
    bins = np.random.default_rng(2).integers(0, 512, (2, 5, 1296, 1), dtype=np.int32)
    bins[0, 0] = 7  # one bin holds a whole frame
    got, want = (ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
                 .run(None, {"bins": bins})[0] for m in (lean, one_hot_model()))
    assert got.shape == (2, 5, 512) and np.array_equal(got, want)
    assert lean_histograms(lean) is lean  # nothing left to rewrite
