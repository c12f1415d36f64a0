"""Small real ONNX models built in code for the tests (no files committed, no download)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17

#: Protocol datatype -> (ONNX element type, numpy dtype)
DATATYPES: dict[str, tuple[int, type]] = {
    "BOOL": (TensorProto.BOOL, np.bool_),
    "UINT8": (TensorProto.UINT8, np.uint8),
    "UINT16": (TensorProto.UINT16, np.uint16),
    "UINT32": (TensorProto.UINT32, np.uint32),
    "UINT64": (TensorProto.UINT64, np.uint64),
    "INT8": (TensorProto.INT8, np.int8),
    "INT16": (TensorProto.INT16, np.int16),
    "INT32": (TensorProto.INT32, np.int32),
    "INT64": (TensorProto.INT64, np.int64),
    "FP16": (TensorProto.FLOAT16, np.float16),
    "FP32": (TensorProto.FLOAT, np.float32),
    "FP64": (TensorProto.DOUBLE, np.float64),
    "BYTES": (TensorProto.STRING, np.object_),
}


def _model(nodes, inputs, outputs, initializers=()) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "test", inputs, outputs, list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    onnx.checker.check_model(model)
    return model


def identity(datatype: str, dims: tuple = ("batch", 4)) -> onnx.ModelProto:
    element = DATATYPES[datatype][0]
    return _model(
        [helper.make_node("Identity", ["x"], ["y"])],
        [helper.make_tensor_value_info("x", element, list(dims))],
        [helper.make_tensor_value_info("y", element, list(dims))],
    )


def add_sub(datatype: str = "INT32", dims: tuple = ("batch", 4)) -> onnx.ModelProto:
    element = DATATYPES[datatype][0]
    return _model(
        [
            helper.make_node("Add", ["a", "b"], ["sum"]),
            helper.make_node("Sub", ["a", "b"], ["difference"]),
        ],
        [helper.make_tensor_value_info(n, element, list(dims)) for n in ("a", "b")],
        [helper.make_tensor_value_info(n, element, list(dims)) for n in ("sum", "difference")],
    )


def simple() -> onnx.ModelProto:
    """Triton's example model "simple": INPUT0 + INPUT1 and INPUT0 - INPUT1, INT32 [batch, 16],
    with the names Triton's example clients use."""
    element = TensorProto.INT32
    return _model(
        [
            helper.make_node("Add", ["INPUT0", "INPUT1"], ["OUTPUT0"]),
            helper.make_node("Sub", ["INPUT0", "INPUT1"], ["OUTPUT1"]),
        ],
        [helper.make_tensor_value_info(n, element, ["batch", 16]) for n in ("INPUT0", "INPUT1")],
        [helper.make_tensor_value_info(n, element, ["batch", 16]) for n in ("OUTPUT0", "OUTPUT1")],
    )


def batch_probe(width: int | str = 4, depth: int = 0, size: int = 512) -> onnx.ModelProto:
    """y = x, plus ``batch``: the number of rows of the call each row was part of.

    ``depth`` > 0 adds that many 64x``size`` @ ``size``x``size`` MatMuls of busy work
    (each call then takes a while, so concurrent requests pile up and get batched);
    the busy result is multiplied by zero and added to y, which stays equal to x.
    """
    inits = [
        numpy_helper.from_array(np.array(0, dtype=np.int64), "zero"),
        numpy_helper.from_array(np.array([0], dtype=np.int64), "axes0"),
    ]
    nodes = [
        helper.make_node("Shape", ["x"], ["shape"]),
        helper.make_node("Gather", ["shape", "zero"], ["rows"], axis=0),
        helper.make_node("Unsqueeze", ["rows", "axes0"], ["rows_shape"]),
        helper.make_node("Expand", ["rows", "rows_shape"], ["batch"]),
    ]
    if depth:
        inits += [
            numpy_helper.from_array(np.eye(size, dtype=np.float32), "eye"),
            numpy_helper.from_array(np.ones((64, size), dtype=np.float32), "ones"),
            numpy_helper.from_array(np.array(0, dtype=np.float32), "zero_f"),
        ]
        # The busy chain starts from x so that no optimiser can fold it away.
        nodes += [
            helper.make_node("ReduceSum", ["x"], ["x_sum"], keepdims=0),
            helper.make_node("Mul", ["ones", "x_sum"], ["seed"]),
        ]
        current = "seed"
        for step in range(depth):
            nodes.append(helper.make_node("MatMul", [current, "eye"], [f"m{step}"]))
            current = f"m{step}"
        nodes += [
            helper.make_node("ReduceSum", [current], ["busy"], keepdims=0),
            helper.make_node("Mul", ["busy", "zero_f"], ["nothing"]),
            helper.make_node("Add", ["x", "nothing"], ["y"]),
        ]
    else:
        nodes.append(helper.make_node("Identity", ["x"], ["y"]))
    return _model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", width])],
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", width]),
            helper.make_tensor_value_info("batch", TensorProto.INT64, ["batch"]),
        ],
        inits,
    )


def fixed_shape(rows: int = 2, width: int = 3) -> onnx.ModelProto:
    """Not batchable: a fixed first dimension."""
    return _model(
        [helper.make_node("Neg", ["x"], ["y"])],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [rows, width])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [rows, width])],
    )


def save(
    model: onnx.ModelProto, repo: Path, name: str, version: int = 1, config: str | None = None
) -> Path:
    folder = repo / name / str(version)
    folder.mkdir(parents=True, exist_ok=True)
    onnx.save(model, folder / "model.onnx")
    if config is not None:
        (repo / name / "config.pbtxt").write_text(config)
    return folder / "model.onnx"


def add_constant(value: float, width: int = 4) -> onnx.ModelProto:
    """y = x + value: tells from its answer which version computed it."""
    return _model(
        [helper.make_node("Add", ["x", "c"], ["y"])],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", width])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", width])],
        [numpy_helper.from_array(np.array(value, dtype=np.float32), "c")],
    )


def embedding(rows: int = 10, width: int = 3) -> onnx.ModelProto:
    """y = table[ids] with table[i] = [i, i, ...]: an id outside [-rows, rows) makes ONNX
    Runtime's Gather fail, a request that only the model can tell is bad."""
    table = np.repeat(np.arange(rows, dtype=np.float32)[:, None], width, axis=1)
    return _model(
        [helper.make_node("Gather", ["table", "ids"], ["y"], axis=0)],
        [helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 2, width])],
        [numpy_helper.from_array(table, "table")],
    )


def sample(datatype: str) -> np.ndarray:
    """A [1, 4] tensor of the datatype with its edge values: extremes, zero, empty bytes."""
    if datatype == "BYTES":
        return np.array([[b"alpha", b"", "gr\u00fc\u00df".encode(), b"nul \x00"]], dtype=np.object_)
    if datatype == "BOOL":
        return np.array([[True, False, False, True]])
    dtype = np.dtype(DATATYPES[datatype][1])
    if dtype.kind == "f":
        return np.array([[0.5, -1.5, 2.25, 1000.0]], dtype=dtype)
    info = np.iinfo(dtype)
    return np.array([[info.min, 0, 1, info.max]], dtype=dtype)
