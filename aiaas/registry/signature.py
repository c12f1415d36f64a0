"""A version's signature, read from its ONNX graph: what it takes and returns,
in the V2 vocabulary the server speaks (FP32, INT64, BYTES...)."""

from __future__ import annotations

from pathlib import Path

import onnx
from onnx import TensorProto

from aiaas import tensors
from aiaas.errors import InvalidArgument
from aiaas.registry.records import Signature
from aiaas.tensors import TensorSpec


def read_signature(path: Path) -> Signature:
    """The graph's inputs (less initializers) and outputs; weights are not loaded."""
    return read_model_facts(path)[0]


def read_model_facts(path: Path) -> tuple[Signature, dict[str, str]]:
    """The signature and the metadata_props (where a lineage record lives), from one read
    of the graph: a language model's graph is worth parsing once."""
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as error:  # onnx raises DecodeError, ValueError... for a bad file
        raise InvalidArgument(f"{path.name} is not a readable ONNX model: {error}") from None
    props = {prop.key: prop.value for prop in model.metadata_props}
    return _signature(model, path), props


def _signature(model: onnx.ModelProto, path: Path) -> Signature:
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
    name = TensorProto.DataType.Name(tensor.elem_type)
    datatype = tensors.onnx_datatype(name)
    if datatype is None:
        raise InvalidArgument(f"ONNX value {value.name!r} has element type {name}, no V2 datatype")
    if not tensor.HasField("shape"):
        return TensorSpec(value.name, datatype, (-1,))
    shape = tuple(dim.dim_value if dim.HasField("dim_value") else -1 for dim in tensor.shape.dim)
    return TensorSpec(value.name, datatype, shape)
