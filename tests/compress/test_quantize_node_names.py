"""Quantizing a graph whose nodes have no names, as hand-built ONNX models often do."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from aiaas.compress import quantize


def _unnamed_mlp(sizes: tuple[int, ...] = (16, 32, 32, 4)) -> onnx.ModelProto:
    """Three Gemms and two Relus, none of them named (ONNX allows it)."""
    rng = np.random.default_rng(0)
    nodes, initializers, current = [], [], "x"
    for layer in range(len(sizes) - 1):
        weight = rng.normal(0, 0.3, (sizes[layer], sizes[layer + 1])).astype(np.float32)
        initializers += [
            numpy_helper.from_array(weight, f"w{layer}"),
            numpy_helper.from_array(np.zeros(sizes[layer + 1], np.float32), f"b{layer}"),
        ]
        nodes.append(helper.make_node("Gemm", [current, f"w{layer}", f"b{layer}"], [f"h{layer}"]))
        current = f"h{layer}"
        if layer < len(sizes) - 2:
            nodes.append(helper.make_node("Relu", [current], [f"r{layer}"]))
            current = f"r{layer}"
    graph = helper.make_graph(
        nodes,
        "unnamed",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", sizes[0]])],
        [helper.make_tensor_value_info(current, TensorProto.FLOAT, ["batch", sizes[-1]])],
        initializers,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _run(path, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


@pytest.mark.parametrize("mode", ["dynamic", "static"])
def test_a_graph_of_unnamed_nodes_quantizes_to_a_model_onnx_runtime_loads(tmp_path, mode):
    source = tmp_path / "fp32.onnx"
    onnx.save(_unnamed_mlp(), str(source))
    x = np.random.default_rng(1).random((32, 16), dtype=np.float32)
    if mode == "dynamic":
        int8 = quantize.quantize_dynamic(source, tmp_path / "int8.onnx")
    else:
        int8 = quantize.quantize_static(source, tmp_path / "int8.onnx", {"x": x})
    names = [node.name for node in onnx.load(str(int8)).graph.node]
    assert len(names) == len(set(names))
    assert quantize.int8_node_count(int8) >= 3
    np.testing.assert_allclose(_run(int8, x), _run(source, x), atol=0.1)


def test_naming_keeps_given_names_and_makes_the_others_unique():
    model = _unnamed_mlp()
    model.graph.node[0].name = "first"
    model.graph.node[1].name = "first"
    model.graph.node[2].name = "Gemm_4"
    names = [node.name for node in quantize.name_nodes(model).graph.node]
    assert names[0] == "first"
    assert names[2] == "Gemm_4"
    assert all(names)
    assert len(names) == len(set(names))
