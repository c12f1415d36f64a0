"""Each request limit answers its documented status on both wires, and the server goes on
serving: body size (413), headers (431), elements of a tensor, inputs of a request, one
BYTES element, files of a load request, open gRPC streams per client."""

from __future__ import annotations

import base64
import json
import socket

import grpc
import httpx
import models
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from grpc_stream import GrpcStream
from tritonclient.utils import InferenceServerException

LIMITS = (
    "--max-request-bytes", "65536",
    "--max-header-bytes", "4096",
    "--max-tensor-elements", "1000",
    "--max-inputs", "4",
    "--max-bytes-element", "8",
    "--max-load-files", "2",
    "--max-load-file-bytes", "4096",
    "--max-streams-per-client", "2",
    "--model-control-mode", "explicit",
    "--load-model", "*",
)  # fmt: skip


@pytest.fixture(scope="module")
def server(module_tmp, module_server):
    repo = module_tmp / "models"
    unbatched = 'backend: "onnxruntime"\nmax_batch_size: 0\n'
    models.save(models.identity("FP32", dims=("n",)), repo, "floats", config=unbatched)
    models.save(models.identity("BYTES", dims=("n",)), repo, "strings", config=unbatched)
    models.save(models.add_constant(1), repo, "m")
    return module_server(repo, *LIMITS)


def _infer(server, model: str, body: dict) -> httpx.Response:
    return httpx.post(f"{server.url}/v2/models/{model}/infer", json=body, timeout=30)


def _alive(server) -> None:
    body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [0] * 4}]}
    assert _infer(server, "m", body).json()["outputs"][0]["data"] == [1.0] * 4


def test_a_body_over_the_limit_is_413(server):
    answer = httpx.post(
        f"{server.url}/v2/models/m/infer", content=b"{" + b" " * 70000 + b"}", timeout=30
    )
    assert answer.status_code == 413
    assert "exceeds the limit of 65536 bytes" in answer.json()["error"]
    _alive(server)


def _raw(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


def test_headers_over_the_limit_are_431(server):
    big = b"x-filler: " + b"a" * 5000 + b"\r\n"
    answer = _raw(server.http_port, b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n" + big + b"\r\n")
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
    assert b"request headers are larger" in answer
    many = b"".join(b"x-h%d: v\r\n" % i for i in range(600))
    answer = _raw(server.http_port, b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n" + many + b"\r\n")
    assert answer.startswith(b"HTTP/1.1 431 ")
    long_url = b"GET /v2/health/live?" + b"q" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    assert _raw(server.http_port, long_url).startswith(b"HTTP/1.1 431 ")
    # Just under the limit is served.
    fits = b"x-filler: " + b"a" * 3000 + b"\r\n"
    request = b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + fits + b"\r\n"
    assert _raw(server.http_port, request).startswith(b"HTTP/1.1 200 ")
    _alive(server)


def test_a_tensor_over_the_element_limit_is_413_before_its_data_is_read(server):
    # Declared far larger than the body could hold: refused from the shape alone.
    body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1 << 40], "data": [1.0]}]}
    answer = _infer(server, "floats", body)
    assert answer.status_code == 413
    assert "over the limit of 1000" in answer.json()["error"]
    ok = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1000], "data": [1.0] * 1000}]}
    assert _infer(server, "floats", ok).status_code == 200


def test_more_inputs_than_the_limit_is_400(server):
    tensor = {"datatype": "FP32", "shape": [1], "data": [1.0]}
    body = {"inputs": [{"name": f"x{i}", **tensor} for i in range(5)]}
    answer = _infer(server, "floats", body)
    assert answer.status_code == 400
    assert answer.json()["error"] == "5 inputs exceed the limit of 4"
    outputs = {"inputs": [{"name": "x", **tensor}], "outputs": [{"name": "y"}] * 5}
    assert _infer(server, "floats", outputs).status_code == 400


def test_a_bytes_element_over_the_limit_is_413(server):
    body = {"inputs": [{"name": "x", "datatype": "BYTES", "shape": [2], "data": ["ok", "x" * 9]}]}
    answer = _infer(server, "strings", body)
    assert answer.status_code == 413
    assert "a BYTES element of 9 bytes is over the limit of 8" in answer.json()["error"]
    body["inputs"][0]["data"] = ["ok", "x" * 8]
    assert _infer(server, "strings", body).json()["outputs"][0]["data"] == ["ok", "x" * 8]


def test_grpc_answers_the_same_limits(server):
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{server.grpc_port}")
    big = grpcclient.InferInput("x", [1001], "FP32")
    big.set_data_from_numpy(np.zeros(1001, np.float32))
    many = []
    for i in range(5):
        tensor = grpcclient.InferInput(f"x{i}", [1], "FP32")
        tensor.set_data_from_numpy(np.zeros(1, np.float32))
        many.append(tensor)
    long_bytes = grpcclient.InferInput("x", [1], "BYTES")
    long_bytes.set_data_from_numpy(np.array([b"x" * 9], dtype=object))
    for model, inputs, status in (
        ("floats", [big], "RESOURCE_EXHAUSTED"),
        ("floats", many, "INVALID_ARGUMENT"),
        ("strings", [long_bytes], "RESOURCE_EXHAUSTED"),
    ):
        with pytest.raises(InferenceServerException) as caught:
            client.infer(model, inputs)
        assert caught.value.status() == f"StatusCode.{status}", caught.value.message()
    client.close()


def _files(count: int, size: int) -> dict[str, str]:
    content = base64.b64encode(b"\0" * size).decode()
    return {f"file:1/f{i}.bin": content for i in range(count)}


def test_files_of_a_load_request_over_the_limits_are_413(server):
    url = f"{server.url}/v2/repository/models/new/load"
    config = json.dumps({"backend": "onnxruntime"})
    for files, problem in (
        (_files(3, 1), "3 files passed, over the limit of 2"),
        (_files(2, 2500), "total 5000 bytes, over the limit of 4096"),
    ):
        answer = httpx.post(url, json={"parameters": {"config": config, **files}}, timeout=30)
        assert answer.status_code == 413, answer.text
        assert answer.json()["error"].startswith("failed to load 'new': ")
        assert problem in answer.json()["error"]


def test_grpc_streams_per_client_are_limited_and_a_closed_one_frees_its_slot(server):
    channel = grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}")
    first, second = GrpcStream(channel), GrpcStream(channel)
    assert first.ask().infer_response.outputs[0].name == "y"
    assert second.ask().infer_response.outputs[0].name == "y"
    third = GrpcStream(channel)
    refused = third.answers.get(timeout=60)
    assert isinstance(refused, grpc.RpcError)
    assert refused.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "2 open streams" in refused.details()
    first.close()
    # Its slot is free once the server has seen the stream end; a fourth gets it.
    for _ in range(600):
        fourth = GrpcStream(channel)
        answer = fourth.ask()
        if not isinstance(answer, grpc.RpcError):
            break
        fourth.close()
    assert answer.infer_response.outputs[0].name == "y"
    second.call.cancel()  # a client that drops its stream also frees the slot
    fourth.close()
    fifth, sixth = GrpcStream(channel), GrpcStream(channel)
    for stream in (fifth, sixth):
        for _ in range(600):
            answer = stream.ask()
            if not isinstance(answer, grpc.RpcError):
                break
            stream = GrpcStream(channel)
        assert answer.infer_response.outputs[0].name == "y"
    channel.close()
