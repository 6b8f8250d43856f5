"""Tiny ONNX models for tests: real onnxruntime sessions, built in a few lines (needs ``onnx``,
in the ``dev`` extra)."""

from __future__ import annotations

import os

__all__ = ["tiny_shot_model"]


def tiny_shot_model(path: str | os.PathLike[str], *, elem: int | None = None,
                    shape: tuple[object, ...] = ("b", "t", 27, 48, 3),
                    outputs: tuple[str, ...] = ("single", "many"), fail: bool = False) -> str:
    """Write an ONNX graph shaped like the shot model (or not, as asked) and return its path:
    input ``frames`` of element type ``elem`` (default uint8) and ``shape``, ``outputs`` the
    sigmoid of the mean pixel per frame. ``fail``: the graph loads but every run fails (a
    reshape to a shape no input has)."""
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("frames", TensorProto.UINT8 if elem is None else elem,
                                      list(shape))
    outs = [helper.make_tensor_value_info(o, TensorProto.FLOAT, ["b", "t"]) for o in outputs]
    nodes = [helper.make_node("Cast", ["frames"], ["f"], to=TensorProto.FLOAT),
             helper.make_node("ReduceMean", ["f"], ["m"], axes=[2, 3, 4], keepdims=0)]
    inits = []
    src = "m"
    if fail:
        inits.append(helper.make_tensor("bad", TensorProto.INT64, [2], [7, 11]))
        nodes.append(helper.make_node("Reshape", ["m", "bad"], ["r"]))
        src = "r"
    nodes += [helper.make_node("Sigmoid", [src], [o]) for o in outputs]
    graph = helper.make_graph(nodes, "tiny", [x], outs, inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return str(path)
