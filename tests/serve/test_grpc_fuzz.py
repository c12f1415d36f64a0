"""Hypothesis-generated gRPC messages against the real server: valid protobuf, hostile
content (huge and negative dims, shape and data disagreeing, unknown datatypes, mixed
content fields, raw_input_contents that do not match, thousands of inputs, odd
parameters), and valid requests with one or two of those mistakes, which reach the
model checks, the batcher and ONNX Runtime. Every answer is a clean status a client can
act on, never UNKNOWN or INTERNAL, and the server keeps answering.

AIAAS_FUZZ_EXAMPLES raises the example count (`make fuzz`)."""

from __future__ import annotations

from pathlib import Path

import grpc
import models
import pytest
from fuzzing import fuzz_examples, fuzz_settings
from hypothesis import given
from hypothesis import strategies as st
from tritonclient.grpc import service_pb2, service_pb2_grpc

EXAMPLES = fuzz_examples(40)
#: What no client mistake may be answered with: our bug, or a hang.
FAULTS = {grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL, grpc.StatusCode.DEADLINE_EXCEEDED}
MODELS = ["add_sub", "identity_bytes", "identity_fp16", "identity_int8", "identity_uint64"]
DATATYPES = ["BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64"]
DATATYPES += ["FP16", "FP32", "FP64", "BF16", "BYTES", "STRING", "", "int32"]
INT64 = st.integers(-(2**63), 2**63 - 1)
DIM = st.one_of(st.integers(-2, 6), st.sampled_from([2**31, 2**62, 2**63 - 1, -(2**63)]), INT64)
NAMES = st.one_of(st.sampled_from(["a", "b", "x", "y", "sum", "diff"]), st.text())
PARAMETER_KEYS = ["priority", "timeout", "binary_data_output", "binary_data", "class_count"]
PARAMETER_KEYS += ["shared_memory_region", "shared_memory_byte_size", "shared_memory_offset"]
TIMEOUT_S = 30


@pytest.fixture(scope="module")
def server(module_tmp: Path, module_server):
    repo = module_tmp / "repo"
    models.save(models.add_sub(), repo, "add_sub", config="max_batch_size: 4")
    for datatype in ("BYTES", "FP16", "INT8", "UINT64"):
        models.save(models.identity(datatype), repo, f"identity_{datatype.lower()}")
    return module_server(
        repo, "--model-control-mode", "explicit", "--load-model", "*",
        "--max-request-bytes", str(1 << 20),
    )  # fmt: skip


@pytest.fixture(scope="module")
def stub(server):
    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
        yield service_pb2_grpc.GRPCInferenceServiceStub(channel)


@st.composite
def parameters(draw: st.DrawFn, target) -> None:
    for key in draw(st.lists(st.one_of(st.sampled_from(PARAMETER_KEYS), st.text()), max_size=3)):
        kind = draw(st.sampled_from(["int64_param", "string_param", "bool_param", "none"]))
        if kind == "int64_param":
            target[key].int64_param = draw(INT64)
        elif kind == "string_param":
            target[key].string_param = draw(st.text(max_size=20))
        elif kind == "bool_param":
            target[key].bool_param = draw(st.booleans())
        else:
            target[key].SetInParent()


@st.composite
def contents(draw: st.DrawFn, tensor) -> None:
    """One or more typed content fields, of any length, with edge values."""
    fields = {
        "bool_contents": st.booleans(),
        "int_contents": st.integers(-(2**31), 2**31 - 1),
        "int64_contents": INT64,
        "uint_contents": st.integers(0, 2**32 - 1),
        "uint64_contents": st.integers(0, 2**64 - 1),
        "fp32_contents": st.floats(width=32),
        "fp64_contents": st.floats(),
        "bytes_contents": st.binary(max_size=8),
    }
    for name in draw(st.lists(st.sampled_from(sorted(fields)), max_size=2, unique=True)):
        values = draw(st.lists(fields[name], max_size=10))
        getattr(tensor.contents, name).extend(values)


SERVED = st.sampled_from(MODELS)
ANY_MODEL = st.one_of(st.sampled_from([*MODELS, "missing", ""]), st.text(max_size=10))
NO_VERSION = st.just("")
ANY_VERSION = st.sampled_from(["", "1", "2", "0", "-1", "x", "99999999999999999999"])


@st.composite
def infer_requests(
    draw: st.DrawFn, names: st.SearchStrategy[str] = SERVED, versions=NO_VERSION
) -> service_pb2.ModelInferRequest:
    request = service_pb2.ModelInferRequest(
        model_name=draw(names),
        model_version=draw(versions),
        id=draw(st.text(max_size=8)),
    )
    for _ in range(draw(st.integers(0, 4))):
        tensor = request.inputs.add(
            name=draw(NAMES),
            datatype=draw(st.one_of(st.sampled_from(DATATYPES), st.text(max_size=6))),
        )
        tensor.shape.extend(draw(st.lists(DIM, max_size=4)))
        draw(parameters(tensor.parameters))
        draw(contents(tensor))
    raw_count = draw(st.sampled_from([0, len(request.inputs), len(request.inputs) + 1, 1]))
    for _ in range(raw_count):
        size = draw(st.sampled_from([0, 1, 3, 4, 8, 16, 32]))
        request.raw_input_contents.append(draw(st.binary(min_size=size, max_size=size)))
    for _ in range(draw(st.integers(0, 2))):
        output = request.outputs.add(name=draw(NAMES))
        draw(parameters(output.parameters))
    draw(parameters(request.parameters))
    return request


#: Each served model's inputs: (name, datatype); every one is [batch, 4].
MODEL_INPUTS = {
    "add_sub": [("a", "INT32"), ("b", "INT32")],
    **{f"identity_{d.lower()}": [("x", d)] for d in ("BYTES", "FP16", "INT8", "UINT64")},
}
MUTATIONS = ["none", "dim", "datatype", "drop", "duplicate", "raw_size", "contents", "output"]


def _valid_raw(datatype: str, count: int) -> bytes:
    if datatype == "BYTES":
        return b"".join(len(b"ab").to_bytes(4, "little") + b"ab" for _ in range(count))
    size = {"INT32": 4, "FP16": 2, "INT8": 1, "UINT64": 8}[datatype]
    return bytes(count * size)


@st.composite
def nearly_valid_requests(draw: st.DrawFn) -> service_pb2.ModelInferRequest:
    """A valid request for a served model with one or two things wrong: the messages
    that get past the decoder to the model checks, the batcher and the runtime."""
    model = draw(SERVED)
    request = service_pb2.ModelInferRequest(model_name=model)
    rows = draw(st.integers(0, 6))
    for name, datatype in MODEL_INPUTS[model]:
        request.inputs.add(name=name, datatype=datatype, shape=[rows, 4])
        request.raw_input_contents.append(_valid_raw(datatype, rows * 4))
    for mutation in draw(st.lists(st.sampled_from(MUTATIONS), min_size=1, max_size=2)):
        tensor = request.inputs[draw(st.integers(0, len(request.inputs) - 1))]
        raw_index = list(request.inputs).index(tensor)
        if mutation == "dim":
            tensor.shape[draw(st.integers(0, 1))] = draw(DIM)
        elif mutation == "datatype":
            tensor.datatype = draw(st.sampled_from(DATATYPES))
        elif mutation == "drop" and len(request.inputs) > 1:
            del request.inputs[raw_index]
            del request.raw_input_contents[raw_index]
        elif mutation == "duplicate":
            request.inputs.add().CopyFrom(tensor)
            request.raw_input_contents.append(request.raw_input_contents[raw_index])
        elif mutation == "raw_size":
            request.raw_input_contents[raw_index] = draw(st.binary(max_size=40))
        elif mutation == "contents":
            draw(contents(tensor))
        elif mutation == "output":
            output = request.outputs.add(name=draw(NAMES))
            draw(parameters(output.parameters))
    draw(parameters(request.parameters))
    return request


def _call(method, request):
    """The status of one RPC; a fault fails with the server's message."""
    code, details = grpc.StatusCode.OK, ""
    try:
        method(request, timeout=TIMEOUT_S)
    except grpc.RpcError as error:
        code, details = error.code(), error.details()
    assert code not in FAULTS, f"{code}: {details}\n{request}"
    return code


def _still_serving(stub) -> None:
    assert stub.ServerLive(service_pb2.ServerLiveRequest(), timeout=TIMEOUT_S).live
    request = service_pb2.ModelInferRequest(model_name="identity_int8")
    tensor = request.inputs.add(name="x", datatype="INT8", shape=[1, 4])
    tensor.contents.int_contents.extend([1, -2, 3, -4])
    answer = stub.ModelInfer(request, timeout=TIMEOUT_S)
    assert answer.raw_output_contents[0] == bytes([1, 254, 3, 252])


def test_nearly_valid_infer_messages_get_clean_statuses(stub):
    seen = set()

    @given(nearly_valid_requests())
    @fuzz_settings(EXAMPLES * 5)
    def fuzz(request):
        seen.add(_call(stub.ModelInfer, request))

    fuzz()
    _still_serving(stub)
    assert {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT} <= seen


@pytest.mark.parametrize(
    ("names", "versions"),
    [(SERVED, NO_VERSION), (ANY_MODEL, ANY_VERSION)],
    ids=["served-models", "any-address"],
)
def test_hostile_infer_messages_get_clean_statuses(stub, names, versions):
    seen = set()

    @given(infer_requests(names, versions))
    @fuzz_settings(EXAMPLES * 5)
    def fuzz(request):
        seen.add(_call(stub.ModelInfer, request))

    fuzz()
    _still_serving(stub)
    assert grpc.StatusCode.INVALID_ARGUMENT in seen


def test_hostile_stream_infer_messages_get_clean_statuses_in_the_stream(stub):
    @given(st.lists(infer_requests(), min_size=1, max_size=4))
    @fuzz_settings(EXAMPLES)
    def fuzz(requests):
        responses = stub.ModelStreamInfer(iter(requests), timeout=TIMEOUT_S)
        count = 0
        for response in responses:
            count += 1
            assert "internal" not in response.error_message.lower(), response.error_message
        assert count == len(requests)

    fuzz()
    _still_serving(stub)


@pytest.mark.parametrize("count", [1000, 5000])
def test_thousands_of_inputs_are_a_clean_invalid_argument(stub, count):
    request = service_pb2.ModelInferRequest(model_name="identity_int8")
    for index in range(count):
        request.inputs.add(name=f"in{index}", datatype="INT8", shape=[1, 4])
        request.raw_input_contents.append(b"\x00" * 4)
    assert _call(stub.ModelInfer, request) == grpc.StatusCode.INVALID_ARGUMENT
    _still_serving(stub)


@st.composite
def admin_requests(draw: st.DrawFn):
    """The other RPCs, with any names, versions, keys and offsets."""
    name = draw(st.one_of(st.sampled_from([*MODELS, "missing", ""]), st.text(max_size=12)))
    version = draw(st.sampled_from(["", "1", "0", "x", "99999999999999999999"]))
    kind = draw(st.sampled_from(["ready", "metadata", "config", "stats", "load", "shm", "cuda"]))
    if kind == "ready":
        return "ModelReady", service_pb2.ModelReadyRequest(name=name, version=version)
    if kind == "metadata":
        return "ModelMetadata", service_pb2.ModelMetadataRequest(name=name, version=version)
    if kind == "config":
        return "ModelConfig", service_pb2.ModelConfigRequest(name=name, version=version)
    if kind == "stats":
        return "ModelStatistics", service_pb2.ModelStatisticsRequest(name=name, version=version)
    if kind == "load":
        request = service_pb2.RepositoryModelLoadRequest(model_name=name)
        for key in draw(st.lists(st.sampled_from(["config", "file:1/model.onnx", "x"]))):
            choice = draw(st.sampled_from(["string_param", "bytes_param", "int64_param"]))
            value = {"string_param": st.text(max_size=40), "bytes_param": st.binary(max_size=40)}
            setattr(request.parameters[key], choice, draw(value.get(choice, INT64)))
        return "RepositoryModelLoad", request
    if kind == "shm":
        return "SystemSharedMemoryRegister", service_pb2.SystemSharedMemoryRegisterRequest(
            name=name, key=draw(st.text(max_size=12)), offset=draw(st.integers(0, 2**64 - 1)),
            byte_size=draw(st.integers(0, 2**64 - 1)),
        )  # fmt: skip
    return "CudaSharedMemoryRegister", service_pb2.CudaSharedMemoryRegisterRequest(
        name=name, raw_handle=draw(st.binary(max_size=16)), device_id=draw(INT64),
        byte_size=draw(st.integers(0, 2**64 - 1)),
    )  # fmt: skip


def test_hostile_admin_messages_get_clean_statuses(stub):
    @given(admin_requests())
    @fuzz_settings(EXAMPLES * 2)
    def fuzz(call):
        method, request = call
        _call(getattr(stub, method), request)

    fuzz()
    _still_serving(stub)
