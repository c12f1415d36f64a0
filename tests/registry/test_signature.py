"""Signatures read from ONNX graphs, in the V2 datatype vocabulary."""

from __future__ import annotations

import models
import onnx
import pytest
from onnx import TensorProto, helper

from aiaas.errors import InvalidArgument
from aiaas.registry.records import Signature
from aiaas.registry.signature import read_signature
from aiaas.tensors import TensorSpec


@pytest.mark.parametrize("datatype", sorted(models.DATATYPES))
def test_every_v2_datatype_is_named_as_the_protocol_names_it(tmp_path, datatype):
    path = tmp_path / "m.onnx"
    onnx.save(models.identity(datatype, ("batch", 3)), path)
    assert read_signature(path) == Signature(
        (TensorSpec("x", datatype, (-1, 3)),), (TensorSpec("y", datatype, (-1, 3)),)
    )


def test_fixed_dims_stay_and_initializers_are_not_inputs(tmp_path):
    path = tmp_path / "m.onnx"
    onnx.save(models.batch_probe(width=5), path)
    signature = read_signature(path)
    assert [spec.name for spec in signature.inputs] == ["x"]
    assert signature.outputs == (
        TensorSpec("y", "FP32", (-1, 5)),
        TensorSpec("batch", "INT64", (-1,)),
    )
    assert Signature.from_dict(signature.to_dict()) == signature


def test_a_non_tensor_input_is_refused(tmp_path):
    sequence = helper.make_tensor_sequence_value_info("xs", TensorProto.FLOAT, None)
    graph = helper.make_graph(
        [helper.make_node("SequenceLength", ["xs"], ["n"])],
        "g",
        [sequence],
        [helper.make_tensor_value_info("n", TensorProto.INT64, [])],
    )
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    with pytest.raises(InvalidArgument, match="not a tensor"):
        read_signature(path)


def test_a_file_that_is_not_onnx_is_an_invalid_argument(tmp_path):
    path = tmp_path / "m.onnx"
    path.write_bytes(b"\x00\x01garbage")
    with pytest.raises(InvalidArgument, match="not a readable ONNX model"):
        read_signature(path)
