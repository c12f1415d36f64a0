"""Every client mistake gets its status and a plain message naming the field; the
server stays up and keeps answering."""

from __future__ import annotations

from pathlib import Path

import httpx
import models
import pytest

#: Against one process and against `--workers 2`: both must answer the same.
pytestmark = pytest.mark.both_workers


@pytest.fixture(scope="module")
def server(module_tmp: Path, module_server):
    repo = module_tmp / "repo"
    models.save(models.add_sub(), repo, "add_sub", config="max_batch_size: 4")
    models.save(models.identity("UINT8"), repo, "identity_uint8")
    models.save(models.identity("BYTES"), repo, "identity_bytes")
    return module_server(repo, "--max-request-bytes", "4096")


@pytest.fixture
def client(server):
    with httpx.Client(base_url=server.url, timeout=30) as http:
        yield http


def good_inputs(rows=1):
    return [
        {"name": "a", "shape": [rows, 4], "datatype": "INT32", "data": [1] * 4 * rows},
        {"name": "b", "shape": [rows, 4], "datatype": "INT32", "data": [2] * 4 * rows},
    ]


def post(client, body, model="add_sub", **kwargs):
    return client.post(f"/v2/models/{model}/infer", content=body, **kwargs)


def assert_error(response, status, *fragments):
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    message = response.json()["error"]
    assert "Traceback" not in message
    for fragment in fragments:
        assert fragment in message, message


def test_malformed_json_is_400(client):
    assert_error(post(client, b'{"inputs": [}'), 400, "malformed JSON")


def test_body_that_is_not_an_object_is_400(client):
    assert_error(post(client, b"[1, 2]"), 400, "JSON object")


def test_missing_inputs_list_is_400(client):
    assert_error(client.post("/v2/models/add_sub/infer", json={}), 400, "'inputs'")


def test_unknown_model_is_404_with_tritons_phrase(client):
    response = client.post("/v2/models/nope/infer", json={"inputs": good_inputs()})
    assert_error(response, 404, "Request for unknown model: 'nope' is not found")


def test_unknown_version_is_404_with_tritons_phrase(client):
    response = client.post("/v2/models/add_sub/versions/7/infer", json={"inputs": good_inputs()})
    assert_error(response, 404, "Request for unknown model: 'add_sub' version 7 is not found")


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/v2/models/nope/infer", "Request for unknown model: 'nope' is not found"),
        (
            "/v2/models/add_sub/versions/7/infer",
            "Request for unknown model: 'add_sub' version 7 is not found",
        ),
    ],
)
@pytest.mark.parametrize(
    "body",
    [b'{"inputs": []}', b"{}", b'{"inputs": [}', b'{"inputs": [{"name": "a"}]}'],
    ids=["empty-inputs", "no-inputs", "malformed", "incomplete-input"],
)
def test_unknown_model_or_version_is_404_before_the_body_is_read(client, path, message, body):
    """Triton looks the model up first: the body's own faults are never the answer."""
    assert_error(client.post(path, content=body), 404, message)


def test_version_that_is_not_a_number_is_400(client):
    response = client.post("/v2/models/add_sub/versions/abc/infer", json={"inputs": good_inputs()})
    assert_error(response, 400, "failed to get model version from specified version string 'abc'")


def test_unknown_input_is_400_naming_it(client):
    inputs = good_inputs()
    inputs[1]["name"] = "c"
    response = client.post("/v2/models/add_sub/infer", json={"inputs": inputs})
    assert_error(response, 400, "'c'")


def test_missing_input_is_400_naming_it(client):
    response = client.post("/v2/models/add_sub/infer", json={"inputs": good_inputs()[:1]})
    assert_error(response, 400, "missing input 'b'")


def test_wrong_datatype_is_400(client):
    inputs = good_inputs()
    inputs[0]["datatype"] = "FP32"
    response = client.post("/v2/models/add_sub/infer", json={"inputs": inputs})
    assert_error(response, 400, "input 'a'", "FP32", "INT32")


def test_unknown_datatype_is_400(client):
    inputs = good_inputs()
    inputs[0]["datatype"] = "FLOAT"
    response = client.post("/v2/models/add_sub/infer", json={"inputs": inputs})
    assert_error(response, 400, "unsupported datatype 'FLOAT'")


def test_wrong_shape_is_400(client):
    inputs = good_inputs()
    inputs[0]["shape"] = [1, 2]
    inputs[0]["data"] = [1, 2]
    response = client.post("/v2/models/add_sub/infer", json={"inputs": inputs})
    assert_error(response, 400, "input 'a'", "shape [1, 2]")


def test_data_length_disagreeing_with_shape_is_400(client):
    inputs = good_inputs()
    inputs[0]["data"] = [1, 2, 3]
    response = client.post("/v2/models/add_sub/infer", json={"inputs": inputs})
    assert_error(response, 400, "input 'a'", "3 elements", "needs 4")


def test_negative_dimension_is_400(client):
    inputs = good_inputs()
    inputs[0]["shape"] = [-1, 4]
    response = client.post("/v2/models/add_sub/infer", json={"inputs": inputs})
    assert_error(response, 400, "'shape'")


def test_batch_over_max_batch_size_is_400(client):
    response = client.post("/v2/models/add_sub/infer", json={"inputs": good_inputs(rows=5)})
    assert_error(response, 400, "batch size 5", "max_batch_size 4")


def test_inputs_disagreeing_on_batch_size_is_400(client):
    inputs = good_inputs(rows=2)
    inputs[1] = good_inputs(rows=1)[1]
    response = client.post("/v2/models/add_sub/infer", json={"inputs": inputs})
    assert_error(response, 400, "batch size")


def test_value_out_of_datatype_range_is_400(client):
    inputs = [{"name": "x", "shape": [1, 4], "datatype": "UINT8", "data": [1, 2, 3, 256]}]
    response = client.post("/v2/models/identity_uint8/infer", json={"inputs": inputs})
    assert_error(response, 400, "outside the range of UINT8")


def test_float_for_integer_datatype_is_400(client):
    inputs = [{"name": "x", "shape": [1, 4], "datatype": "UINT8", "data": [1, 2, 3, 4.5]}]
    response = client.post("/v2/models/identity_uint8/infer", json={"inputs": inputs})
    assert_error(response, 400, "UINT8")


def test_string_for_bytes_must_be_text(client):
    inputs = [{"name": "x", "shape": [1, 4], "datatype": "BYTES", "data": ["a", "b", 3, "d"]}]
    response = client.post("/v2/models/identity_bytes/infer", json={"inputs": inputs})
    assert_error(response, 400, "BYTES elements must be strings")


def test_ragged_nested_data_is_400(client):
    inputs = good_inputs(rows=2)
    inputs[0]["data"] = [[1, 2, 3, 4], [5, 6, 7]]
    response = client.post("/v2/models/add_sub/infer", json={"inputs": inputs})
    assert_error(response, 400, "input 'a'")


def test_unknown_requested_output_is_400(client):
    body = {"inputs": good_inputs(), "outputs": [{"name": "product"}]}
    response = client.post("/v2/models/add_sub/infer", json=body)
    assert_error(response, 400, "'product'")


def test_body_over_the_size_limit_is_413(client):
    response = post(client, b'{"inputs": [' + b" " * 5000 + b"]}")
    assert_error(response, 413, "exceeds the limit of 4096 bytes")


def test_chunked_body_over_the_size_limit_is_413(client):
    def chunks():
        for _ in range(10):
            yield b" " * 1000

    response = post(client, chunks())
    assert_error(response, 413, "exceeds the limit")


def test_binary_header_length_beyond_body_is_400(client):
    response = post(client, b'{"inputs": []}', headers={"Inference-Header-Content-Length": "999"})
    assert_error(response, 400, "Inference-Header-Content-Length")


def test_server_still_answers_after_all_the_mistakes(client, server):
    response = client.post("/v2/models/add_sub/infer", json={"inputs": good_inputs()})
    assert response.status_code == 200
    assert server.process.poll() is None
    assert "Traceback" not in server.logs()
