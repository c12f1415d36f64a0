"""The tensor codec: tables, JSON and raw forms, round trips (hypothesis)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from onnx import TensorProto

from aiaas import tensors
from aiaas.errors import InvalidArgument

NUMERIC = [d for d in tensors.DATATYPE_TO_NUMPY if d != "BYTES"]

shapes = hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=5)


@st.composite
def arrays(draw, datatype=None):
    datatype = datatype or draw(st.sampled_from(NUMERIC))
    dtype = tensors.numpy_dtype(datatype)
    elements = None
    if dtype.kind == "f":
        elements = hnp.from_dtype(dtype, allow_nan=False, allow_infinity=False)
    return datatype, draw(hnp.arrays(dtype, draw(shapes), elements=elements))


@given(arrays())
def test_json_round_trip_is_exact(case):
    datatype, array = case
    data = tensors.to_json_data(array)
    decoded = tensors.from_json_data(data, datatype, array.shape, "x")
    assert decoded.dtype == array.dtype
    np.testing.assert_array_equal(decoded, array)


@given(arrays())
def test_raw_round_trip_is_exact(case):
    datatype, array = case
    decoded = tensors.from_raw(tensors.to_raw(array), datatype, array.shape, "x")
    np.testing.assert_array_equal(decoded, array)


@given(st.lists(st.binary(max_size=20), max_size=10))
def test_length_prefixed_bytes_round_trip(items):
    raw = tensors.join_length_prefixed(items)
    assert tensors.split_length_prefixed(raw, "x") == items
    array = tensors.from_raw(raw, "BYTES", (len(items),), "x")
    assert array.tolist() == items


@given(st.lists(st.text(max_size=10), min_size=1, max_size=8))
def test_bytes_json_round_trip(texts):
    array = tensors.from_json_data(texts, "BYTES", (len(texts),), "x")
    assert array.tolist() == [t.encode() for t in texts]
    assert tensors.to_json_data(array) == texts


@given(arrays("INT32"))
def test_nested_and_flat_data_decode_alike(case):
    _, array = case
    flat = tensors.from_json_data(array.ravel().tolist(), "INT32", array.shape, "x")
    nested = tensors.from_json_data(array.tolist(), "INT32", array.shape, "x")
    np.testing.assert_array_equal(flat, nested)


@pytest.mark.parametrize(
    ("data", "datatype", "shape", "message"),
    [
        ([1, 2, 3], "INT32", (2, 2), "3 elements"),
        ([1.5], "INT32", (1,), "INT32"),
        ([True], "FP32", (1,), "boolean"),
        ([300], "UINT8", (1,), "outside the range"),
        ([-1], "UINT64", (1,), "outside the range"),
        ([2**64], "UINT64", (1,), "outside the range"),
        ([[1, 2], [3]], "INT32", (2, 2), "ragged"),
        (["a"], "FP32", (1,), "FP32"),
        ([1], "FLOAT", (1,), "unsupported datatype"),
        ([1, "a"], "BYTES", (2,), "must be strings"),
    ],
)
def test_bad_json_data_is_a_client_error(data, datatype, shape, message):
    with pytest.raises(InvalidArgument, match=message):
        tensors.from_json_data(data, datatype, shape, "input 'x'")


def test_raw_size_must_match_shape():
    with pytest.raises(InvalidArgument, match="needs 16"):
        tensors.from_raw(b"\0" * 12, "FP32", (2, 2), "x")


def test_truncated_length_prefix_is_a_client_error():
    with pytest.raises(InvalidArgument, match="length prefix"):
        tensors.split_length_prefixed(b"\x05\x00", "x")
    with pytest.raises(InvalidArgument, match="past the end"):
        tensors.split_length_prefixed(b"\x05\x00\x00\x00ab", "x")


@pytest.mark.parametrize("shape", [[1, -1], [1.5], "3", [True]])
def test_bad_shapes_are_rejected(shape):
    with pytest.raises(InvalidArgument, match="shape"):
        tensors.check_shape(shape, "x")


def test_datatype_table_is_a_bijection():
    assert {tensors.NUMPY_TO_DATATYPE[v] for v in tensors.DATATYPE_TO_NUMPY.values()} == set(
        tensors.DATATYPE_TO_NUMPY
    )


@pytest.mark.parametrize("datatype", NUMERIC)
def test_an_array_is_named_by_its_datatype_in_either_byte_order(datatype):
    dtype = tensors.numpy_dtype(datatype)
    for order in "<>":
        assert tensors.datatype_of(np.zeros(2, dtype=dtype.newbyteorder(order))) == datatype


def test_text_and_object_arrays_are_bytes_and_other_dtypes_are_refused():
    assert tensors.datatype_of(np.array(["a"])) == "BYTES"
    assert tensors.datatype_of(np.array([b"a"])) == "BYTES"
    assert tensors.datatype_of(np.array([b"a"], dtype=object)) == "BYTES"
    with pytest.raises(InvalidArgument, match="complex64"):
        tensors.datatype_of(np.zeros(1, dtype=np.complex64))


def test_onnx_element_types_name_every_served_datatype_in_both_spellings():
    names = {TensorProto.DataType.Name(t) for t in TensorProto.DataType.values()}
    assert set(tensors.ONNX_TO_DATATYPE) <= names
    served = {tensors.onnx_datatype(name) for name in names} - {None, "BF16"}
    assert served == set(tensors.DATATYPE_TO_NUMPY)
    assert tensors.onnx_datatype("float") == tensors.onnx_datatype("FLOAT") == "FP32"
    assert tensors.onnx_datatype("complex64") is None


def test_a_tensor_spec_survives_its_json_form():
    spec = tensors.TensorSpec("x", "FP32", (-1, 3))
    assert spec.to_dict() == {"name": "x", "datatype": "FP32", "shape": [-1, 3]}
    assert tensors.TensorSpec.from_dict(spec.to_dict()) == spec
