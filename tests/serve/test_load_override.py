"""Load with an overriding config and with model files passed in the request, as
Triton's repository extension allows, through tritonclient.http and raw HTTP."""

from __future__ import annotations

import base64
import json
import tempfile
from pathlib import Path

import httpx
import models
import numpy as np
import onnx
import pytest
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

EXPLICIT = ("--model-control-mode", "explicit", "--load-model", "*")


@pytest.fixture
def server(tmp_path, start_server):
    repo = tmp_path / "repo"
    models.save(models.add_constant(1), repo, "m")
    return start_server(repo, *EXPLICIT)


@pytest.fixture
def client(server):
    client = httpclient.InferenceServerClient(server.url.removeprefix("http://"))
    yield client
    client.close()


def added(client: httpclient.InferenceServerClient, model: str) -> float:
    """What the model adds to its input: tells which files are being served."""
    x = httpclient.InferInput("x", [1, 4], "FP32")
    x.set_data_from_numpy(np.zeros((1, 4), np.float32))
    return float(client.infer(model, [x]).as_numpy("y")[0, 0])


def leftovers() -> set[str]:
    return {p.name for p in Path(tempfile.gettempdir()).glob("aiaas-load-*")}


def test_a_config_override_replaces_config_pbtxt(client):
    assert client.get_model_config("m")["max_batch_size"] == 32
    client.load_model("m", config=json.dumps({"max_batch_size": 8}))
    assert client.get_model_config("m")["max_batch_size"] == 8
    assert added(client, "m") == 1.0


def test_a_malformed_override_fails_and_the_old_version_keeps_serving(client):
    client.load_model("m", config=json.dumps({"max_batch_size": 8}))
    for bad in ("{not json", json.dumps({"max_batch_size": "many"})):
        with pytest.raises(InferenceServerException, match="failed to load 'm'"):
            client.load_model("m", config=bad)
    with pytest.raises(InferenceServerException, match="failed to load 'm'"):
        client.load_model("m", config=json.dumps({"input": [{"name": "nope"}]}))
    assert client.get_model_config("m")["max_batch_size"] == 8
    assert added(client, "m") == 1.0


def test_model_files_passed_in_the_request_are_served(client):
    before = leftovers()
    files = {"file:1/model.onnx": models.add_constant(7).SerializeToString()}
    client.load_model("uploaded", config=json.dumps({"max_batch_size": 4}), files=files)
    assert added(client, "uploaded") == 7.0
    assert client.get_model_config("uploaded")["max_batch_size"] == 4
    # a model from the repository can be replaced the same way, and back
    client.load_model("m", config="{}", files={"file:3/model.onnx": files["file:1/model.onnx"]})
    assert added(client, "m") == 7.0
    assert client.get_model_metadata("m")["versions"] == ["3"]
    client.load_model("m")
    assert added(client, "m") == 1.0
    assert leftovers() == before, "the temporary model folders are removed after loading"


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("file:../escape/model.onnx", "'..', '.' and NUL are not allowed"),
        ("file:1/../../model.onnx", "'..', '.' and NUL are not allowed"),
        ("file:/etc/aiaas/model.onnx", "must be relative"),
        ("file:", "must be relative"),
        ("file:1/" + "a" * 300, "longer than 255 bytes"),
        ("file:" + "/".join(["d"] * 600), "longer than 1024 bytes"),
    ],
)
def test_bad_file_names_are_client_errors(server, tmp_path, path, message):
    body = {
        "parameters": {
            "config": "{}",
            path: base64.b64encode(
                onnx.helper.make_model(onnx.GraphProto()).SerializeToString()
            ).decode(),
        }
    }
    response = httpx.post(f"{server.url}/v2/repository/models/evil/load", json=body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error.startswith("failed to load 'evil'")
    assert message in error
    assert not (tmp_path / "escape").exists()
    assert httpx.get(f"{server.url}/v2/health/live").status_code == 200


def test_files_need_a_config_and_valid_base64(server):
    url = f"{server.url}/v2/repository/models/evil/load"
    no_config = httpx.post(url, json={"parameters": {"file:1/model.onnx": "AAAA"}})
    assert no_config.status_code == 400
    assert "without a 'config' parameter" in no_config.json()["error"]
    bad = httpx.post(url, json={"parameters": {"config": "{}", "file:1/model.onnx": "%%%"}})
    assert bad.status_code == 400
    assert "not base64-encoded" in bad.json()["error"]
    broken = httpx.post(url, json={"parameters": {"config": "{}", "file:1/model.onnx": "AAAA"}})
    assert broken.status_code == 400
    assert broken.json()["error"].startswith("failed to load 'evil'")
    assert httpx.get(f"{server.url}/v2/models/m/ready").status_code == 200
