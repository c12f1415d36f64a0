"""The V2 REST endpoints, against a real server, with httpx."""

from __future__ import annotations

from pathlib import Path

import httpx
import models
import numpy as np
import pytest

#: Against one process and against `--workers 2`: both must answer the same.
pytestmark = pytest.mark.both_workers

MLP_LIKE_CONFIG = """
name: "probe"
max_batch_size: 8
dynamic_batching { max_queue_delay_microseconds: 100 }
"""


@pytest.fixture(scope="module")
def server(module_tmp: Path, module_server):
    repo = module_tmp / "repo"
    for datatype in models.DATATYPES:
        models.save(models.identity(datatype), repo, f"identity_{datatype.lower()}")
    models.save(models.add_sub(), repo, "add_sub")
    models.save(models.add_sub(), repo, "add_sub", version=2)
    models.save(models.batch_probe(), repo, "probe", config=MLP_LIKE_CONFIG)
    models.save(models.fixed_shape(), repo, "fixed")
    return module_server(repo)


@pytest.fixture
def client(server):
    with httpx.Client(base_url=server.url, timeout=30) as http:
        yield http


def infer(client, model, inputs, **extra):
    return client.post(f"/v2/models/{model}/infer", json={"inputs": inputs, **extra})


def add_sub_inputs(a=(1, 2, 3, 4), b=(10, 20, 30, 40)):
    return [
        {"name": "a", "shape": [1, 4], "datatype": "INT32", "data": list(a)},
        {"name": "b", "shape": [1, 4], "datatype": "INT32", "data": list(b)},
    ]


def test_health_endpoints_answer_live_and_ready(client):
    assert client.get("/v2/health/live").json() == {"live": True}
    assert client.get("/v2/health/ready").json() == {"ready": True}


def test_server_metadata_names_server_and_extensions(client):
    body = client.get("/v2").json()
    assert body["name"] == "aiaas"
    assert "model_repository" in body["extensions"]
    assert "binary_tensor_data" in body["extensions"]


def test_model_metadata_is_completed_from_the_graph(client):
    body = client.get("/v2/models/add_sub").json()
    assert body["name"] == "add_sub"
    assert body["platform"] == "onnxruntime_onnx"
    assert body["inputs"] == [
        {"name": "a", "datatype": "INT32", "shape": [-1, 4]},
        {"name": "b", "datatype": "INT32", "shape": [-1, 4]},
    ]
    assert [o["name"] for o in body["outputs"]] == ["sum", "difference"]


def test_default_version_policy_serves_only_the_latest_version(client):
    assert client.get("/v2/models/add_sub").json()["versions"] == ["2"]
    assert client.get("/v2/models/add_sub/versions/2").status_code == 200
    assert client.get("/v2/models/add_sub/versions/1").status_code == 404


def test_model_ready_per_model_and_version(client):
    assert client.get("/v2/models/add_sub/ready").json() == {"name": "add_sub", "ready": True}
    assert client.get("/v2/models/add_sub/versions/2/ready").status_code == 200
    assert client.get("/v2/models/add_sub/versions/1/ready").status_code == 404


def test_infer_returns_every_output_and_echoes_id(client):
    response = infer(client, "add_sub", add_sub_inputs(), id="req-42")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["id"] == "req-42"
    assert body["model_name"] == "add_sub"
    assert body["model_version"] == "2"
    outputs = {o["name"]: o for o in body["outputs"]}
    assert outputs["sum"] == {
        "name": "sum",
        "datatype": "INT32",
        "shape": [1, 4],
        "data": [11, 22, 33, 44],
    }
    assert outputs["difference"]["data"] == [-9, -18, -27, -36]


def test_infer_on_a_named_version(client):
    response = client.post("/v2/models/add_sub/versions/2/infer", json={"inputs": add_sub_inputs()})
    assert response.json()["model_version"] == "2"


def test_requested_outputs_limit_the_response(client):
    response = infer(client, "add_sub", add_sub_inputs(), outputs=[{"name": "difference"}])
    assert [o["name"] for o in response.json()["outputs"]] == ["difference"]


def test_nested_data_is_read_row_major(client):
    inputs = [
        {"name": "a", "shape": [2, 4], "datatype": "INT32", "data": [[1, 2, 3, 4], [5, 6, 7, 8]]},
        {"name": "b", "shape": [2, 4], "datatype": "INT32", "data": [0] * 8},
    ]
    body = infer(client, "add_sub", inputs).json()
    assert body["outputs"][0]["data"] == [1, 2, 3, 4, 5, 6, 7, 8]
    assert body["outputs"][0]["shape"] == [2, 4]


SAMPLES = {
    "BOOL": [True, False, True, True],
    "UINT8": [0, 1, 254, 255],
    "UINT16": [0, 1, 65534, 65535],
    "UINT32": [0, 1, 2**32 - 2, 2**32 - 1],
    "UINT64": [0, 1, 2**63, 2**64 - 1],
    "INT8": [-128, -1, 0, 127],
    "INT16": [-32768, -1, 0, 32767],
    "INT32": [-(2**31), -1, 0, 2**31 - 1],
    "INT64": [-(2**63), -1, 0, 2**63 - 1],
    "FP16": [0.5, -1.25, 65504.0, 0.0],
    "FP32": [1.5, -2.25, 3.0e38, 1e-30],
    "FP64": [1.5, -2.25, 1.0e300, 5e-324],
    "BYTES": ["hello", "", "wörld", "a b c"],
}


@pytest.mark.parametrize("datatype", list(SAMPLES))
def test_every_datatype_round_trips_through_json(client, datatype):
    data = SAMPLES[datatype]
    response = infer(
        client, f"identity_{datatype.lower()}",
        [{"name": "x", "shape": [1, 4], "datatype": datatype, "data": data}],
    )  # fmt: skip
    assert response.status_code == 200, response.text
    output = response.json()["outputs"][0]
    assert output["datatype"] == datatype
    assert output["shape"] == [1, 4]
    if datatype == "FP32":
        assert np.allclose(output["data"], np.array(data, dtype=np.float32), rtol=1e-7)
    else:
        assert output["data"] == data


def test_non_batchable_model_takes_its_fixed_shape(client):
    response = infer(
        client, "fixed", [{"name": "x", "shape": [2, 3], "datatype": "FP32", "data": [1] * 6}]
    )
    assert response.json()["outputs"][0]["data"] == [-1.0] * 6
    assert client.get("/v2/models/fixed").json()["inputs"][0]["shape"] == [2, 3]


def test_repository_index_lists_every_model(client):
    index = client.post("/v2/repository/index").json()
    names = {row["name"] for row in index}
    assert {"add_sub", "probe", "fixed", "identity_fp32"} <= names
    row = next(r for r in index if r["name"] == "add_sub")
    assert row == {"name": "add_sub", "version": "2", "state": "READY", "reason": ""}


def test_repository_index_accepts_a_ready_filter(client):
    index = client.post("/v2/repository/index", json={"ready": True}).json()
    assert all(row["state"] == "READY" for row in index)


def test_load_and_unload_refused_outside_explicit_mode(client):
    response = client.post("/v2/repository/models/add_sub/unload")
    assert response.status_code == 400
    assert "model control mode 'none'" in response.json()["error"]
    assert client.get("/v2/models/add_sub/ready").status_code == 200


def test_unknown_route_is_a_json_404(client):
    response = client.get("/v2/nothing/here")
    assert response.status_code == 404
    assert "error" in response.json()
