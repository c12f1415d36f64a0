"""Every client mistake over gRPC gets the status code REST's status maps to and the
same message; the server stays up. Unexpected failures are INTERNAL and generic."""

from __future__ import annotations

import contextlib
import json
import queue
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import models
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

#: Against one process and against `--workers 2`: both must answer the same.
pytestmark = pytest.mark.both_workers

ROOT = Path(__file__).resolve().parents[2]

PRIORITY = """
max_batch_size: 4
dynamic_batching { priority_levels: 2 default_priority_level: 2 }
"""


@pytest.fixture(scope="module")
def server(module_tmp: Path, module_server):
    repo = module_tmp / "repo"
    models.save(models.add_sub(), repo, "add_sub", config="max_batch_size: 4")
    models.save(models.simple(), repo, "simple")
    models.save(models.identity("INT8"), repo, "identity_int8")
    models.save(models.identity("FP16"), repo, "identity_fp16")
    models.save(models.identity("BYTES"), repo, "identity_bytes")
    models.save(models.identity("FP32"), repo, "prioritised", config=PRIORITY)
    return module_server(repo, "--max-request-bytes", "4096")


@pytest.fixture
def client(server):
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{server.grpc_port}")
    yield client
    client.close()


@pytest.fixture
def stub(server):
    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
        yield service_pb2_grpc.GRPCInferenceServiceStub(channel)


def int32_input(name: str, rows: int = 1, width: int = 4, datatype: str = "INT32"):
    infer_input = grpcclient.InferInput(name, [rows, width], datatype)
    dtype = np.float32 if datatype == "FP32" else np.int32
    infer_input.set_data_from_numpy(np.ones((rows, width), dtype=dtype))
    return infer_input


def good_inputs(rows: int = 1):
    return [int32_input("a", rows), int32_input("b", rows)]


@contextlib.contextmanager
def refused(code: str, *fragments: str) -> Iterator[None]:
    """Expect the block to fail with this gRPC status and a message holding each fragment,
    whether from tritonclient (InferenceServerException) or a raw stub (grpc.RpcError)."""
    with pytest.raises((InferenceServerException, grpc.RpcError)) as raised:
        yield
    error = raised.value
    if isinstance(error, grpc.RpcError):
        got, message = error.code().name, error.details()
    else:
        got, message = error.status().removeprefix("StatusCode."), error.message()
    assert got == code, error
    assert "Traceback" not in message
    for fragment in fragments:
        assert fragment in message, message


# ---- addressing ----------------------------------------------------------------------


def test_unknown_model_is_not_found_with_tritons_phrase(client):
    message = "Request for unknown model: 'nope' is not found"
    with refused("NOT_FOUND", message):
        client.infer("nope", good_inputs())
    with refused("NOT_FOUND", message):
        client.get_model_metadata("nope")
    with refused("NOT_FOUND", message):
        client.get_model_config("nope")
    with refused("NOT_FOUND", message):
        client.get_inference_statistics("nope")


def test_unknown_version_is_not_found_with_tritons_phrase(client):
    with refused("NOT_FOUND", "Request for unknown model: 'add_sub' version 7 is not found"):
        client.infer("add_sub", good_inputs(), model_version="7")


@pytest.mark.parametrize(
    ("model", "version", "message"),
    [
        ("nope", "", "Request for unknown model: 'nope' is not found"),
        ("add_sub", "7", "Request for unknown model: 'add_sub' version 7 is not found"),
    ],
)
def test_unknown_model_or_version_is_not_found_before_the_request_is_read(
    stub, model, version, message
):
    """Triton looks the model up first: no inputs, or raw contents that fit nothing, are
    not the answer for a model that does not exist."""
    empty = service_pb2.ModelInferRequest(model_name=model, model_version=version)
    with refused("NOT_FOUND", message):
        stub.ModelInfer(empty)
    mismatched = request_with(model, "INT32", [1, 4])
    mismatched.model_version = version
    mismatched.raw_input_contents.extend([b"\x00", b"\x01"])
    with refused("NOT_FOUND", message):
        stub.ModelInfer(mismatched)


def test_version_that_is_not_a_number_is_invalid_argument(client):
    phrase = "failed to get model version from specified version string 'abc'"
    with refused("INVALID_ARGUMENT", phrase):
        client.infer("add_sub", good_inputs(), model_version="abc")
    with refused("INVALID_ARGUMENT", phrase):
        client.is_model_ready("add_sub", "abc")


# ---- inputs that do not fit the model --------------------------------------------------


def test_wrong_datatype_is_invalid_argument(client):
    with refused("INVALID_ARGUMENT", "input 'a'", "FP32", "INT32"):
        client.infer("add_sub", [int32_input("a", datatype="FP32"), int32_input("b")])


def test_wrong_shape_is_invalid_argument(client):
    with refused("INVALID_ARGUMENT", "input 'a'", "shape [1, 2]"):
        client.infer("add_sub", [int32_input("a", width=2), int32_input("b")])


def test_missing_input_is_invalid_argument_naming_it(client):
    with refused("INVALID_ARGUMENT", "missing input 'b'"):
        client.infer("add_sub", good_inputs()[:1])


def test_unknown_input_is_invalid_argument_naming_it(client):
    with refused("INVALID_ARGUMENT", "'c'"):
        client.infer("add_sub", [int32_input("a"), int32_input("c")])


def test_unknown_requested_output_is_invalid_argument(client):
    with refused("INVALID_ARGUMENT", "'product'"):
        client.infer("add_sub", good_inputs(), outputs=[grpcclient.InferRequestedOutput("product")])


def test_batch_over_max_batch_size_is_invalid_argument(client):
    with refused("INVALID_ARGUMENT", "batch size 5", "max_batch_size 4"):
        client.infer("add_sub", good_inputs(rows=5))


def test_priority_parameter_is_honoured_and_checked_against_the_models_levels(client):
    with refused("INVALID_ARGUMENT", "priority 3"):
        client.infer("prioritised", [int32_input("x", datatype="FP32")], priority=3)
    result = client.infer("prioritised", [int32_input("x", datatype="FP32")], priority=1)
    np.testing.assert_array_equal(result.as_numpy("y"), np.ones((1, 4), np.float32))


def test_bytes_that_are_not_utf8_are_refused(client):
    infer_input = grpcclient.InferInput("x", [1, 4], "BYTES")
    infer_input.set_data_from_numpy(np.array([[b"ok", b"\xff\xfe", b"", b""]], dtype=np.object_))
    with refused("INVALID_ARGUMENT", "UTF-8"):
        client.infer("identity_bytes", [infer_input])


# ---- malformed messages (what tritonclient never sends) ------------------------------


def request_with(model: str, datatype: str, shape: list[int], **contents):
    request = service_pb2.ModelInferRequest(model_name=model)
    tensor = request.inputs.add(name="x", datatype=datatype, shape=shape)
    for field, values in contents.items():
        getattr(tensor.contents, field).extend(values)
    return request


def test_raw_contents_of_the_wrong_size_are_invalid_argument(stub):
    request = request_with("identity_int8", "INT8", [1, 4])
    request.raw_input_contents.append(b"\x01\x02\x03")
    with refused("INVALID_ARGUMENT", "3 bytes", "needs 4"):
        stub.ModelInfer(request)


def test_raw_contents_must_cover_every_input(stub):
    request = service_pb2.ModelInferRequest(model_name="add_sub")
    for name in ("a", "b"):
        request.inputs.add(name=name, datatype="INT32", shape=[1, 4])
    request.raw_input_contents.append(np.ones(4, np.int32).tobytes())
    with refused("INVALID_ARGUMENT", "expected 2 raw_input_contents"):
        stub.ModelInfer(request)


def test_raw_bytes_cut_inside_an_element_are_invalid_argument(stub):
    request = request_with("identity_bytes", "BYTES", [1, 1])
    request.raw_input_contents.append(b"\x05\x00\x00\x00abc")
    with refused("INVALID_ARGUMENT", "past the end"):
        stub.ModelInfer(request)


def test_typed_and_raw_contents_together_are_refused_in_tritons_words(stub):
    """As grpc_explicit_int_content_client.py builds it: a typed request that works, then
    raw contents for one input added while INPUT0 keeps its typed contents."""
    request = service_pb2.ModelInferRequest(model_name="simple", model_version="")
    input0_data = list(range(16))
    input1_data = [1] * 16
    input0 = service_pb2.ModelInferRequest().InferInputTensor()
    input0.name = "INPUT0"
    input0.datatype = "INT32"
    input0.shape.extend([1, 16])
    input0.contents.int_contents[:] = input0_data
    input1 = service_pb2.ModelInferRequest().InferInputTensor()
    input1.name = "INPUT1"
    input1.datatype = "INT32"
    input1.shape.extend([1, 16])
    input1.contents.int_contents[:] = input1_data
    request.inputs.extend([input0, input1])
    for name in ("OUTPUT0", "OUTPUT1"):
        output = service_pb2.ModelInferRequest().InferRequestedOutputTensor()
        output.name = name
        request.outputs.append(output)

    response = stub.ModelInfer(request)
    total = np.frombuffer(response.raw_output_contents[0], dtype=np.int32)
    np.testing.assert_array_equal(total, np.arange(16) + 1)

    request.raw_input_contents.extend([np.array(input0_data[0:8]).tobytes()])
    request.inputs[0].contents.int_contents[:] = input0_data[8:]
    expected = (
        "contents field must not be specified when using "
        "raw_input_contents for 'INPUT0' for model 'simple'"
    )
    with refused("INVALID_ARGUMENT", expected):
        stub.ModelInfer(request)


def test_typed_contents_for_an_input_in_shared_memory_are_refused_in_tritons_words(stub):
    request = request_with("identity_int8", "INT8", [1, 4], int_contents=[1, 2, 3, 4])
    request.inputs[0].parameters["shared_memory_region"].string_param = "r"
    request.inputs[0].parameters["shared_memory_byte_size"].int64_param = 4
    expected = (
        "unexpected 'content' provided when using shared memory for input tensor 'x' "
        "for model 'identity_int8'"
    )
    with refused("INVALID_ARGUMENT", expected):
        stub.ModelInfer(request)


def test_typed_value_outside_the_datatype_range_is_invalid_argument(stub):
    request = request_with("identity_int8", "INT8", [1, 4], int_contents=[1, 2, 3, 200])
    with refused("INVALID_ARGUMENT", "range of INT8"):
        stub.ModelInfer(request)


def test_typed_contents_in_the_wrong_field_are_invalid_argument(stub):
    request = request_with("identity_int8", "INT8", [1, 4], fp32_contents=[1, 2, 3, 4])
    with refused("INVALID_ARGUMENT", "int_contents", "fp32_contents"):
        stub.ModelInfer(request)


def test_typed_contents_disagreeing_with_shape_are_invalid_argument(stub):
    request = request_with("identity_int8", "INT8", [1, 4], int_contents=[1, 2, 3])
    with refused("INVALID_ARGUMENT", "3 elements", "needs 4"):
        stub.ModelInfer(request)


def test_fp16_has_no_typed_field_and_must_go_raw(stub):
    request = request_with("identity_fp16", "FP16", [1, 4], fp32_contents=[1, 2, 3, 4])
    with refused("INVALID_ARGUMENT", "FP16", "raw_input_contents"):
        stub.ModelInfer(request)


def test_unknown_datatype_is_invalid_argument(stub):
    request = request_with("identity_int8", "FLOAT", [1, 4])
    request.raw_input_contents.append(bytes(16))
    with refused("INVALID_ARGUMENT", "unsupported datatype 'FLOAT'"):
        stub.ModelInfer(request)


def test_request_over_the_size_limit_is_resource_exhausted(stub):
    request = request_with("identity_int8", "INT8", [1, 5000])
    request.raw_input_contents.append(bytes(5000))
    with refused("RESOURCE_EXHAUSTED"):
        stub.ModelInfer(request)


def test_stream_request_over_the_size_limit_is_resource_exhausted(client, server):
    answers: queue.Queue = queue.Queue()
    client.start_stream(callback=lambda result, error: answers.put((result, error)))
    try:
        big = grpcclient.InferInput("x", [1, 5000], "INT8")
        big.set_data_from_numpy(np.zeros((1, 5000), np.int8))
        client.async_stream_infer("identity_int8", [big])
        result, error = answers.get(timeout=60)
    finally:
        client.stop_stream()
    assert result is None
    assert error.status() == "StatusCode.RESOURCE_EXHAUSTED"
    assert "Task exception" not in server.logs()


def test_server_still_answers_after_all_the_mistakes(client, server):
    result = client.infer("add_sub", good_inputs())
    np.testing.assert_array_equal(result.as_numpy("sum"), np.full((1, 4), 2, np.int32))
    assert server.process.poll() is None
    assert "Traceback" not in server.logs()


# ---- the one error table -------------------------------------------------------------

# Runs in a subprocess: importing aiaas's generated modules here would clash with
# tritonclient's (see conftest).
STATUS_OF = """
import json, logging, sys
import aiaas.errors as errors
from aiaas.serve.protocol.grpc import status_of
logging.basicConfig(stream=sys.stderr)
kinds = [c for c in vars(errors).values()
         if isinstance(c, type) and issubclass(c, errors.AiaasError)]
table = {k.__name__: [k.grpc_code, status_of(k("m"), "rpc")[0].name] for k in kinds}
try:
    raise ValueError("secret detail")
except ValueError as error:
    code, message = status_of(error, "ModelInfer")
print(json.dumps({"table": table, "unexpected": [code.name, message]}))
"""


def test_every_error_kind_maps_to_its_own_code_and_bugs_to_a_generic_internal():
    done = subprocess.run(
        [sys.executable, "-c", STATUS_OF], capture_output=True, text=True, cwd=ROOT, check=True
    )
    result = json.loads(done.stdout)
    assert result["table"]["NotFound"] == ["NOT_FOUND", "NOT_FOUND"]
    assert result["table"]["PayloadTooLarge"] == ["RESOURCE_EXHAUSTED", "RESOURCE_EXHAUSTED"]
    for declared, given in result["table"].values():
        assert declared == given
    assert result["unexpected"] == ["INTERNAL", "internal server error"]
    # The detail and the traceback go to the server log, never to the client.
    assert "secret detail" in done.stderr
    assert "Traceback" in done.stderr
