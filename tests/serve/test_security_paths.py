"""No path a client sends reaches the filesystem outside the repository: model names,
`file:` parameters and config overrides of load requests, over REST and gRPC;
traversal, absolute paths, NUL bytes and ONNX external data that points out.
(`file:` traversal over REST with tritonclient: test_load_override.py.)"""

from __future__ import annotations

import base64
import json

import httpx
import models
import numpy as np
import onnx
import pytest
import tritonclient.grpc as grpcclient
from onnx import TensorProto, helper, numpy_helper
from tritonclient.utils import InferenceServerException

EXPLICIT = ("--model-control-mode", "explicit", "--load-model", "*")


@pytest.fixture
def layout(tmp_path):
    """A repository with model `m` (adds 1) and, outside it, a model that adds 666."""
    repo = tmp_path / "repo"
    models.save(models.add_constant(1), repo, "m")
    outside = tmp_path / "outside"
    models.save(models.add_constant(666), outside, "secret")
    return repo, outside / "secret" / "1" / "model.onnx"


@pytest.fixture
def server(layout, start_server):
    return start_server(layout[0], *EXPLICIT)


def _load(server, name: str, parameters: dict) -> httpx.Response:
    return httpx.post(
        f"{server.url}/v2/repository/models/{name}/load",
        json={"parameters": parameters},
        timeout=30,
    )


def _added(server, name: str = "m") -> float:
    body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [0] * 4}]}
    answer = httpx.post(f"{server.url}/v2/models/{name}/infer", json=body, timeout=30)
    return float(answer.json()["outputs"][0]["data"][0])


def _config(**fields: str) -> str:
    return json.dumps({"backend": "onnxruntime", **fields})


def test_a_config_override_cannot_name_a_model_file_outside_the_version_folder(layout, server):
    _, secret = layout
    for filename in ("../../../outside/secret/1/model.onnx", str(secret), "1/model.onnx"):
        answer = _load(server, "m", {"config": _config(default_model_filename=filename)})
        assert answer.status_code == 400, answer.text
        assert "must be a plain file name" in answer.json()["error"]
    assert _added(server) == 1.0  # m still serves its own file


def test_a_config_override_cannot_read_labels_outside_the_model_folder(layout, server):
    _, secret = layout
    labels = secret.parent.parent / "labels.txt"
    labels.write_text("a\nb\nc\nd\n")
    for filename in ("../../outside/secret/labels.txt", str(labels)):
        output = {"name": "y", "data_type": "TYPE_FP32", "dims": [4], "label_filename": filename}
        config = json.dumps({"backend": "onnxruntime", "output": [output]})
        answer = _load(server, "m", {"config": config})
        assert answer.status_code == 400, answer.text
        assert "no file" in answer.json()["error"]
    assert _added(server) == 1.0


def test_a_config_override_with_a_nul_in_the_model_file_name_is_400(server):
    answer = _load(server, "m", {"config": _config(default_model_filename="model.onnx\x00.txt")})
    assert answer.status_code == 400
    assert "NUL" in answer.json()["error"]


@pytest.mark.parametrize(
    "path",
    ["1/model.onnx\x00../../x", "..\\..\\model.onnx", "1/./model.onnx", "./1/model.onnx", "1//x"],
)
def test_file_parameters_with_nul_backslash_or_dot_paths_are_400(server, path, tmp_path):
    content = base64.b64encode(models.add_constant(5).SerializeToString()).decode()
    answer = _load(server, "n", {"config": _config(), f"file:{path}": content})
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"].startswith("failed to load 'n': ")
    assert httpx.get(f"{server.url}/v2/models/n/ready", timeout=30).status_code != 200


@pytest.mark.parametrize(
    ("url_name", "problem"),
    [
        ("%2E%2E", "may not be '.', '..'"),
        ("m%5C..", "hold '/'"),
        ("m%00", "control characters"),
        ("m%0Ax", "control characters"),
        ("a" * 300, "longer than 255 bytes"),
    ],
)
def test_model_names_that_could_be_paths_are_400_in_load_unload_and_infer(
    server, url_name, problem
):
    """(Each is refused before the model is looked up, so the same for a known name.)"""
    content = base64.b64encode(models.add_constant(5).SerializeToString()).decode()
    for answer in (
        _load(server, url_name, {"config": _config(), "file:1/model.onnx": content}),
        httpx.post(f"{server.url}/v2/repository/models/{url_name}/unload", timeout=30),
        httpx.post(f"{server.url}/v2/models/{url_name}/infer", json={}, timeout=30),
    ):
        assert answer.status_code == 400, answer.text
        assert problem in answer.json()["error"]


@pytest.mark.parametrize(
    ("raw_name", "status"), [("..", 400), ("../m", 404), ("..%2Fm", 404), ("%2E%2E/m", 404)]
)
def test_names_with_a_slash_or_dot_segments_are_refused(server, raw_name, status):
    """Sent as raw bytes (httpx would resolve the dot segments itself): '..' is refused by
    the name check; no route has a model name with a '/' in it, so those are 404 before
    any handler runs."""
    import socket

    request = f"POST /v2/repository/models/{raw_name}/load HTTP/1.1\r\nHost: x\r\n"
    request += "Content-Length: 0\r\nConnection: close\r\n\r\n"
    with socket.create_connection(("127.0.0.1", server.http_port), timeout=30) as sock:
        sock.sendall(request.encode())
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 %d " % status), answer
    assert httpx.get(f"{server.url}/v2/models/m/ready", timeout=30).status_code == 200


def _external_data_model(location: str) -> onnx.ModelProto:
    """y = x + w, with w stored as external data at ``location``."""
    weight = numpy_helper.from_array(np.full((1, 4), 3.0, np.float32), "w")
    weight.data_location = TensorProto.EXTERNAL
    weight.ClearField("raw_data")
    for key, value in (("location", location), ("offset", "0"), ("length", "16")):
        entry = weight.external_data.add()
        entry.key, entry.value = key, value
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "w"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
        [weight],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_onnx_external_data_inside_the_passed_files_loads(server):
    model = _external_data_model("weights.bin")
    weights = np.full((1, 4), 3.0, np.float32).tobytes()
    answer = _load(
        server,
        "ext",
        {
            "config": _config(),
            "file:1/model.onnx": base64.b64encode(model.SerializeToString()).decode(),
            "file:1/weights.bin": base64.b64encode(weights).decode(),
        },
    )
    assert answer.status_code == 200, answer.text
    assert _added(server, "ext") == 3.0


@pytest.mark.parametrize("where", ["../../../../outside/weights.bin", "absolute"])
def test_onnx_external_data_pointing_outside_the_model_folder_is_refused(server, tmp_path, where):
    outside = tmp_path / "outside"
    outside.mkdir(exist_ok=True)
    (outside / "weights.bin").write_bytes(np.full((1, 4), 9.0, np.float32).tobytes())
    location = str(outside / "weights.bin") if where == "absolute" else where
    model = _external_data_model(location)
    content = base64.b64encode(model.SerializeToString()).decode()
    answer = _load(server, "ext", {"config": _config(), "file:1/model.onnx": content})
    assert answer.status_code == 400, answer.text
    assert httpx.get(f"{server.url}/v2/models/ext/ready", timeout=30).status_code != 200


def test_grpc_load_refuses_traversal_in_names_files_and_overrides(layout, server):
    _, secret = layout
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{server.grpc_port}")
    content = models.add_constant(5).SerializeToString()
    attempts = [
        ("../m", _config(), {"file:1/model.onnx": content}),
        ("n", _config(), {"file:../1/model.onnx": content}),
        ("n", _config(), {"file:/tmp/1/model.onnx": content}),
        ("n", _config(), {"file:1/model.onnx\x00": content}),
        ("m", _config(default_model_filename=str(secret)), None),
    ]
    for name, config, files in attempts:
        with pytest.raises(InferenceServerException) as caught:
            client.load_model(name, config=config, files=files)
        assert caught.value.status() == "StatusCode.INVALID_ARGUMENT", caught.value.message()
    assert client.is_model_ready("m")
    assert not client.is_model_ready("n")
    client.close()
    assert _added(server) == 1.0
