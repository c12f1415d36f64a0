"""A version's signature, read from its ONNX graph: what it takes and returns,
in the V2 vocabulary the server speaks (FP32, INT64, BYTES...)."""

from __future__ import annotations

from pathlib import Path

import onnx
from onnx import TensorProto

from aiaas.errors import InvalidArgument
from aiaas.registry.records import Signature, TensorSpec

#: ONNX element type -> Open Inference Protocol datatype.
ONNX_TO_DATATYPE: dict[int, str] = {
    TensorProto.BOOL: "BOOL",
    TensorProto.UINT8: "UINT8",
    TensorProto.UINT16: "UINT16",
    TensorProto.UINT32: "UINT32",
    TensorProto.UINT64: "UINT64",
    TensorProto.INT8: "INT8",
    TensorProto.INT16: "INT16",
    TensorProto.INT32: "INT32",
    TensorProto.INT64: "INT64",
    TensorProto.FLOAT16: "FP16",
    TensorProto.FLOAT: "FP32",
    TensorProto.DOUBLE: "FP64",
    TensorProto.STRING: "BYTES",
    TensorProto.BFLOAT16: "BF16",
}


def read_signature(path: Path) -> Signature:
    """The graph's inputs (less initializers) and outputs; weights are not loaded."""
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as error:  # onnx raises DecodeError, ValueError... for a bad file
        raise InvalidArgument(f"{path.name} is not a readable ONNX model: {error}") from None
    graph = model.graph
    initializers = {item.name for item in graph.initializer}
    inputs = tuple(_spec(value) for value in graph.input if value.name not in initializers)
    outputs = tuple(_spec(value) for value in graph.output)
    if not outputs:
        raise InvalidArgument(f"{path.name} is not a usable ONNX model: its graph has no outputs")
    return Signature(inputs, outputs)


def _spec(value: onnx.ValueInfoProto) -> TensorSpec:
    tensor = value.type.tensor_type
    if not value.type.HasField("tensor_type"):
        raise InvalidArgument(f"ONNX value {value.name!r} is not a tensor; only tensors are served")
    datatype = ONNX_TO_DATATYPE.get(tensor.elem_type)
    if datatype is None:
        name = TensorProto.DataType.Name(tensor.elem_type)
        raise InvalidArgument(f"ONNX value {value.name!r} has element type {name}, no V2 datatype")
    if not tensor.HasField("shape"):
        return TensorSpec(value.name, datatype, (-1,))
    shape = tuple(dim.dim_value if dim.HasField("dim_value") else -1 for dim in tensor.shape.dim)
    return TensorSpec(value.name, datatype, shape)
