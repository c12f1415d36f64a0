"""The hop's wire format: requests and responses survive encode -> msgpack -> decode for
every datatype, tensors travel as frames of their own (never inside msgpack), shared
memory tensors carry none, and each error kind comes back as itself."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from aiaas import errors, tensors
from aiaas.errors import AiaasError, InternalError, NotFound, decode_error, encode_error
from aiaas.serve import shared_memory
from aiaas.serve.stats import ComputeTimes, ModelStats, statistics_json
from aiaas.serve.types import InferInput, InferOutput, InferRequest, InferResponse, RequestedOutput
from aiaas.serve.workers import hop_codec as codec

NUMERIC = [d for d in tensors.DATATYPE_TO_NUMPY if d != "BYTES"]
SHAPES = hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=5)


@st.composite
def arrays(draw: st.DrawFn) -> tuple[str, np.ndarray]:
    datatype = draw(st.sampled_from([*NUMERIC, "BYTES"]))
    shape = draw(SHAPES)
    if datatype == "BYTES":
        items = draw(st.lists(st.binary(max_size=8), min_size=int(np.prod(shape)),
                              max_size=int(np.prod(shape))))  # fmt: skip
        data = np.empty(len(items), dtype=object)
        data[:] = items
        return datatype, data.reshape(shape)
    dtype = tensors.DATATYPE_TO_NUMPY[datatype]
    # Either byte order: the hop's frames are little-endian whatever the array was.
    dtype = dtype.newbyteorder(draw(st.sampled_from("<>")))
    return datatype, draw(hnp.arrays(dtype, shape))


def through_the_wire(header: dict[str, Any], frames: list[codec.Buffer]) -> tuple[Any, list[bytes]]:
    """What the far side receives: msgpack bytes and each frame's bytes."""
    return codec.unpack(codec.pack(header)), [bytes(f) for f in frames]


def assert_same_tensor(got: np.ndarray, datatype: str, expected: np.ndarray) -> None:
    if datatype == "BYTES":
        assert list(got.flat) == list(expected.flat)
    else:
        assert got.dtype == expected.dtype.newbyteorder("<")
        np.testing.assert_array_equal(got, expected)
    assert got.shape == expected.shape


@given(
    st.lists(arrays(), min_size=1, max_size=4),
    st.dictionaries(st.text(), st.integers(-(2**63), 2**64 - 1)),
)
def test_a_request_comes_out_as_it_went_in(items, parameters):
    request = InferRequest(
        [InferInput(f"in{i}", d, tuple(a.shape), a, {"n": i}) for i, (d, a) in enumerate(items)],
        outputs=[RequestedOutput("y", {"binary_data": True})],
        id="r1",
        parameters=parameters,
    )
    args, frames = codec.encode_request("m", "2", request)
    assert len(frames) == len(items)
    name, version, decoded = codec.decode_request(*through_the_wire(args, frames))
    assert (name, version, decoded.id, decoded.parameters) == ("m", "2", "r1", parameters)
    assert decoded.outputs == request.outputs
    for got, sent in zip(decoded.inputs, request.inputs, strict=True):
        assert (got.name, got.datatype, got.shape, got.parameters) == (
            sent.name, sent.datatype, sent.shape, sent.parameters)  # fmt: skip
        assert_same_tensor(got.data, sent.datatype, sent.data)


@given(st.lists(arrays(), min_size=0, max_size=4))
def test_a_response_comes_out_as_it_went_in(items):
    response = InferResponse(
        model_name="m",
        model_version="3",
        outputs=[InferOutput(f"out{i}", d, tuple(a.shape), a) for i, (d, a) in enumerate(items)],
        id=None,
        parameters={"sequence_end": True},
        provenance="m/3 sha256:abc",
    )
    decoded = codec.decode_response(*through_the_wire(*codec.encode_response(response)))
    assert (decoded.model_name, decoded.model_version, decoded.id) == ("m", "3", None)
    assert (decoded.parameters, decoded.provenance) == (response.parameters, response.provenance)
    for got, sent in zip(decoded.outputs, response.outputs, strict=True):
        assert (got.name, got.datatype, got.shape) == (sent.name, sent.datatype, sent.shape)
        assert_same_tensor(got.data, sent.datatype, sent.data)


def test_a_contiguous_little_endian_tensor_is_its_own_frame_without_a_copy():
    data = np.arange(12, dtype="<f4").reshape(3, 4)
    request = InferRequest([InferInput("x", "FP32", (3, 4), data)])
    args, (frame,) = codec.encode_request("m", None, request)
    assert np.shares_memory(frame, data)
    received = codec.decode_request(args, [frame])[2]
    # The array over the received frame reads its memory: no copy on this side either.
    assert np.shares_memory(received.inputs[0].data, frame)


def test_a_tensor_in_shared_memory_carries_no_frame():
    region = {shared_memory.REGION: "r", shared_memory.BYTE_SIZE: 16}
    placeholder = np.empty(0, dtype=np.uint8)
    request = InferRequest(
        [
            InferInput("a", "INT32", (1, 4), placeholder, region),
            InferInput("b", "INT32", (1, 4), np.ones((1, 4), np.int32)),
        ]
    )
    args, frames = codec.encode_request("m", None, request)
    assert len(frames) == 1
    decoded = codec.decode_request(*through_the_wire(args, frames))[2]
    assert decoded.inputs[0].data.size == 0
    assert decoded.inputs[0].parameters == region
    np.testing.assert_array_equal(decoded.inputs[1].data, np.ones((1, 4), np.int32))


def test_a_frame_that_does_not_fit_its_shape_is_refused():
    args, _ = codec.encode_request(
        "m", None, InferRequest([InferInput("x", "FP32", (2, 2), np.zeros((2, 2), np.float32))])
    )
    with pytest.raises(errors.InvalidArgument, match="raw data has 12 bytes"):
        codec.decode_request(args, [b"\0" * 12])


KINDS = [k for k in vars(errors).values() if isinstance(k, type) and issubclass(k, AiaasError)]


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.__name__)
def test_each_error_kind_comes_back_as_itself_with_its_message(kind):
    record = codec.unpack(codec.pack(encode_error(kind("the words"))))
    error = decode_error(record)
    assert type(error) is kind
    assert error.message == "the words"


def test_a_packages_own_error_comes_back_as_the_kind_it_extends():
    class ModelGone(NotFound):
        pass

    error = decode_error(encode_error(ModelGone("gone")))
    assert (type(error), error.message) == (NotFound, "gone")


@pytest.mark.parametrize("record", [None, ["Exploded", "x"], ["NotFound"], [1, 2], "NotFound"])
def test_a_record_that_is_no_error_of_ours_is_an_internal_error(record):
    error = decode_error(record)
    assert (type(error), error.message) == (InternalError, "internal server error")


def test_parameters_msgpack_cannot_carry_are_the_requests_fault():
    with pytest.raises(errors.InvalidArgument, match="cannot be passed to the engine"):
        codec.pack({"parameters": {"x": object()}})


def test_a_bundle_gives_each_header_back_with_its_own_frames():
    parts = [
        (codec.pack({"id": 1, "frames": 2}), [b"a", b"bb"]),
        (codec.pack({"id": 2, "frames": 0}), []),
        (codec.pack({"id": 3, "frames": 1}), [memoryview(b"ccc")]),
    ]
    got = codec.unbundle(codec.bundle(parts))
    assert [(header["id"], [bytes(f) for f in own]) for header, own in got] == [
        (1, [b"a", b"bb"]),
        (2, []),
        (3, [b"ccc"]),
    ]


@pytest.mark.parametrize(
    "headers",
    [
        [{"id": 1}],  # says nothing of its frames
        [{"id": 1, "frames": 3}],  # more frames than the message has
        [{"id": 1, "frames": -1}],
        [[1, "infer", {}, 0]],  # not a map
    ],
)
def test_a_bundle_whose_headers_do_not_add_up_is_refused(headers):
    message = [b"".join(codec.pack(h) for h in headers), b"x"]
    with pytest.raises(ValueError, match="does not say its frames"):
        codec.unbundle(message)


def test_a_models_statistics_cross_the_hop_whole():
    """A model's process reports its statistics as a dict the engine process takes over:
    every figure the statistics extension and the metrics read comes back the same."""
    stats = ModelStats("m", "1")
    stats.record_execution(4, ComputeTimes(10, 200, 30))
    stats.record_execution(1, ComputeTimes(1, 20, 3))
    stats.record_request_compute(55, ComputeTimes(10, 200, 30))
    stats.record_request(True, 2_000_000)
    stats.record_request(False, 7_000_000_000)
    mirror = ModelStats("m", "1")
    mirror.update_from(codec.unpack(codec.pack(stats.to_dict())))
    assert statistics_json(mirror) == statistics_json(stats)
    assert mirror.latency_buckets == stats.latency_buckets
    assert mirror.latency_sum_s == stats.latency_sum_s
