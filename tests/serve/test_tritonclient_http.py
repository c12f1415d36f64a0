"""Triton's own HTTP client, unchanged, against aiaas: JSON and binary tensors."""

from __future__ import annotations

from pathlib import Path

import models
import numpy as np
import pytest
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

#: Against one process and against `--workers 2`: both must answer the same.
pytestmark = pytest.mark.both_workers


@pytest.fixture(scope="module")
def server(module_tmp: Path, module_server):
    repo = module_tmp / "repo"
    for datatype in models.DATATYPES:
        models.save(models.identity(datatype), repo, f"identity_{datatype.lower()}")
    models.save(models.add_sub(), repo, "add_sub")
    return module_server(repo)


@pytest.fixture
def client(server):
    client = httpclient.InferenceServerClient(server.url.removeprefix("http://"))
    yield client
    client.close()


def test_server_and_model_state(client):
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready("add_sub")
    assert not client.is_model_ready("missing")
    assert client.get_server_metadata()["name"] == "aiaas"
    metadata = client.get_model_metadata("add_sub")
    assert metadata["inputs"][0] == {"name": "a", "datatype": "INT32", "shape": [-1, 4]}


CASES = [(d, b) for d in models.DATATYPES for b in (True, False) if (d, b) != ("BYTES", False)]


@pytest.mark.parametrize(("datatype", "binary"), CASES)
def test_every_datatype_round_trips(client, datatype, binary):
    data = models.sample(datatype)
    infer_input = httpclient.InferInput("x", list(data.shape), datatype)
    infer_input.set_data_from_numpy(data, binary_data=binary)
    output = httpclient.InferRequestedOutput("y", binary_data=binary)
    result = client.infer(f"identity_{datatype.lower()}", [infer_input], outputs=[output])
    got = result.as_numpy("y")
    assert got.shape == data.shape
    if datatype == "BYTES":
        assert got.tolist() == data.tolist()
    else:
        assert got.dtype == data.dtype
        np.testing.assert_array_equal(got, data)


def test_text_bytes_round_trip_through_json(client):
    data = np.array([[b"alpha", b"beta", b"", b"delta"]], dtype=np.object_)
    infer_input = httpclient.InferInput("x", [1, 4], "BYTES")
    infer_input.set_data_from_numpy(data, binary_data=False)
    result = client.infer(
        "identity_bytes",
        [infer_input],
        outputs=[httpclient.InferRequestedOutput("y", binary_data=False)],
    )
    # tritonclient hands JSON BYTES back as str
    assert result.as_numpy("y").tolist() == [["alpha", "beta", "", "delta"]]


def test_mixed_binary_and_json_outputs(client):
    a = np.arange(8, dtype=np.int32).reshape(2, 4)
    b = np.ones((2, 4), dtype=np.int32)
    inputs = [
        httpclient.InferInput("a", [2, 4], "INT32"),
        httpclient.InferInput("b", [2, 4], "INT32"),
    ]
    inputs[0].set_data_from_numpy(a, binary_data=True)
    inputs[1].set_data_from_numpy(b, binary_data=False)
    outputs = [
        httpclient.InferRequestedOutput("sum", binary_data=True),
        httpclient.InferRequestedOutput("difference", binary_data=False),
    ]
    result = client.infer("add_sub", inputs, outputs=outputs, request_id="7")
    np.testing.assert_array_equal(result.as_numpy("sum"), a + b)
    np.testing.assert_array_equal(result.as_numpy("difference"), a - b)
    assert result.get_response()["id"] == "7"


def test_bytes_that_are_not_utf8_are_refused_for_onnx_string_tensors(client):
    # ONNX string tensors hold UTF-8 text; other bytes cannot reach the model intact.
    infer_input = httpclient.InferInput("x", [1, 4], "BYTES")
    infer_input.set_data_from_numpy(np.array([[b"ok", b"\xff\xfe", b"", b""]], dtype=np.object_))
    with pytest.raises(InferenceServerException, match=r"\[400\].*not valid UTF-8"):
        client.infer("identity_bytes", [infer_input])


def test_errors_reach_the_client_as_exceptions(client):
    infer_input = httpclient.InferInput("x", [1, 4], "FP32")
    infer_input.set_data_from_numpy(np.zeros((1, 4), dtype=np.float32))
    with pytest.raises(InferenceServerException, match="Request for unknown model: 'nope'"):
        client.infer("nope", [infer_input])
    with pytest.raises(InferenceServerException, match="datatype FP32 does not match"):
        client.infer("identity_int32", [infer_input])


def test_repository_index_through_the_client(client):
    index = client.get_model_repository_index()
    assert {"name": "add_sub", "version": "1", "state": "READY", "reason": ""} in index
