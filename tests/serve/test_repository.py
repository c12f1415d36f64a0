"""The model repository through a real server: layout, config errors, version policies,
readiness, and explicit load/unload."""

from __future__ import annotations

from pathlib import Path

import httpx
import models
import pytest

BAD_CONFIGS = {
    "unknown_field": ("max_batch_size: 4\nbogus_field: 1", "bogus_field"),
    "malformed": ("max_batch_size: [", "config.pbtxt"),
    "wrong_datatype": (
        'input [ { name: "a" data_type: TYPE_FP32 dims: [ 4 ] } ]',
        "input[0].data_type",
    ),
    "wrong_dims": ('max_batch_size: 8\ninput [ { name: "a" dims: [ 5 ] } ]', "input[0].dims"),
    "unknown_input": (
        'input [ { name: "zz" data_type: TYPE_INT32 dims: [ -1, 4 ] } ]',
        "input[0].name",
    ),
    "wrong_name": ('name: "other"', "name:"),
    "wrong_platform": ('platform: "tensorrt_plan"', "platform"),
    "gpu_instances": ("instance_group [ { kind: KIND_GPU count: 1 } ]", "instance_group[0].kind"),
    "preferred_too_big": (
        "max_batch_size: 4\ndynamic_batching { preferred_batch_size: [ 8 ] }",
        "preferred_batch_size",
    ),
    "batching_without_batch": (
        "max_batch_size: 0\ndynamic_batching { }\n"
        'input [ { name: "a" dims: [ -1, 4 ] } ]\ninput [ { name: "b" dims: [ -1, 4 ] } ]',
        "dynamic_batching",
    ),
    "missing_specific_version": (
        "version_policy { specific { versions: [ 3 ] } }",
        "version_policy",
    ),
    "bad_thread_count": (
        'parameters { key: "intra_op_thread_count" value: { string_value: "many" } }',
        "intra_op_thread_count",
    ),
}


@pytest.fixture(scope="module")
def server(module_tmp: Path, module_server):
    repo = module_tmp / "repo"
    models.save(models.add_sub(), repo, "good")
    for name, (config, _) in BAD_CONFIGS.items():
        models.save(models.add_sub(), repo, name, config=config)
    broken = repo / "not_onnx" / "1"
    broken.mkdir(parents=True)
    (broken / "model.onnx").write_bytes(b"this is not a model")
    (repo / "no_versions").mkdir()
    models.save(models.fixed_shape(), repo, "fixed_batched", config="max_batch_size: 4")
    for version in (1, 2, 3):
        models.save(
            models.add_sub(), repo, "all_versions", version, config="version_policy { all { } }"
        )
        models.save(
            models.add_sub(), repo, "latest_two", version,
            config="version_policy { latest { num_versions: 2 } }",
        )  # fmt: skip
        models.save(
            models.add_sub(), repo, "specific", version,
            config="version_policy { specific { versions: [ 1, 3 ] } }",
        )  # fmt: skip
    (repo / "all_versions" / "notes").mkdir()  # a non-numeric folder is ignored
    models.save(
        models.add_sub(), repo, "configured",
        config="""
name: "configured"
platform: "onnxruntime_onnx"
backend: "onnxruntime"
max_batch_size: 8
input [ { name: "a" data_type: TYPE_INT32 dims: [ 4 ] },
        { name: "b" data_type: TYPE_INT32 dims: [ -1 ] } ]
output [ { name: "sum" data_type: TYPE_INT32 dims: [ 4 ] } ]
instance_group [ { count: 2 kind: KIND_CPU } ]
dynamic_batching {
  max_queue_delay_microseconds: 500
  preferred_batch_size: [ 2, 4 ]
  default_queue_policy { timeout_action: REJECT default_timeout_microseconds: 0 max_queue_size: 10 }
}
parameters { key: "intra_op_thread_count" value: { string_value: "1" } }
""",
    )  # fmt: skip
    return module_server(repo)


@pytest.fixture
def client(server):
    with httpx.Client(base_url=server.url, timeout=30) as http:
        yield http


def index_by_name(client) -> dict[str, list[dict]]:
    rows: dict[str, list[dict]] = {}
    for row in client.post("/v2/repository/index").json():
        rows.setdefault(row["name"], []).append(row)
    return rows


@pytest.mark.parametrize("name", list(BAD_CONFIGS))
def test_bad_config_makes_only_that_model_unavailable_naming_the_field(client, name):
    (row,) = index_by_name(client)[name]
    assert row["state"] == "UNAVAILABLE"
    assert BAD_CONFIGS[name][1] in row["reason"], row["reason"]
    response = client.get(f"/v2/models/{name}/ready")
    assert response.status_code == 503


def test_file_that_is_not_a_model_is_unavailable(client):
    (row,) = index_by_name(client)["not_onnx"]
    assert row["state"] == "UNAVAILABLE"
    assert "not a valid ONNX model" in row["reason"]


def test_model_without_versions_is_unavailable(client):
    (row,) = index_by_name(client)["no_versions"]
    assert "no version folders" in row["reason"]


def test_fixed_first_dimension_contradicts_batching(client):
    (row,) = index_by_name(client)["fixed_batched"]
    assert "max_batch_size" in row["reason"]


def test_good_models_serve_beside_broken_ones_and_server_is_ready(client):
    assert client.get("/v2/health/ready").status_code == 200
    body = {"inputs": [
        {"name": "a", "shape": [1, 4], "datatype": "INT32", "data": [1, 2, 3, 4]},
        {"name": "b", "shape": [1, 4], "datatype": "INT32", "data": [1, 1, 1, 1]},
    ]}  # fmt: skip
    response = client.post("/v2/models/good/infer", json=body)
    assert response.status_code == 200
    failed = client.post("/v2/models/unknown_field/infer", json=body)
    assert failed.status_code == 503
    assert "bogus_field" in failed.json()["error"]


def test_version_policy_all(client):
    assert client.get("/v2/models/all_versions").json()["versions"] == ["1", "2", "3"]


def test_version_policy_latest_n(client):
    assert client.get("/v2/models/latest_two").json()["versions"] == ["2", "3"]
    assert client.get("/v2/models/latest_two/versions/1").status_code == 404


def test_version_policy_specific(client):
    assert client.get("/v2/models/specific").json()["versions"] == ["1", "3"]
    assert client.get("/v2/models/specific/versions/2").status_code == 404


def test_config_fields_are_applied(client):
    metadata = client.get("/v2/models/configured").json()
    assert metadata["inputs"] == [
        {"name": "a", "datatype": "INT32", "shape": [-1, 4]},
        {"name": "b", "datatype": "INT32", "shape": [-1, -1]},
    ]
    # outputs the config leaves out are completed from the graph
    assert [o["name"] for o in metadata["outputs"]] == ["sum", "difference"]
    body = {"inputs": [
        {"name": "a", "shape": [9, 4], "datatype": "INT32", "data": [1] * 36},
        {"name": "b", "shape": [9, 4], "datatype": "INT32", "data": [1] * 36},
    ]}  # fmt: skip
    response = client.post("/v2/models/configured/infer", json=body)
    assert response.status_code == 400
    assert "max_batch_size 8" in response.json()["error"]


def test_strict_readiness_reports_broken_models(tmp_path, start_server):
    repo = tmp_path / "repo"
    models.save(models.add_sub(), repo, "good")
    models.save(models.add_sub(), repo, "bad", config="bogus: 1")
    server = start_server(repo, "--strict-readiness", wait_ready=False)
    with httpx.Client(base_url=server.url) as client:
        assert client.get("/v2/health/live").status_code == 200
        assert client.get("/v2/health/ready").status_code == 503
        assert client.get("/v2/models/good/ready").status_code == 200


def test_explicit_mode_loads_and_unloads_on_request(tmp_path, start_server):
    repo = tmp_path / "repo"
    models.save(models.add_sub(), repo, "first")
    models.save(models.add_sub(), repo, "second")
    server = start_server(repo, "--model-control-mode", "explicit", "--load-model", "first")
    with httpx.Client(base_url=server.url) as client:
        assert client.get("/v2/models/first/ready").status_code == 200
        assert client.get("/v2/models/second").status_code == 404
        assert client.post("/v2/repository/models/second/load").status_code == 200
        assert client.get("/v2/models/second/ready").status_code == 200
        assert client.post("/v2/repository/models/first/unload").status_code == 200
        assert client.get("/v2/models/first").status_code == 404
        rows = {r["name"]: r for r in client.post("/v2/repository/index").json()}
        assert rows["first"]["state"] == "UNAVAILABLE"
        assert rows["first"]["reason"] == "unloaded"
        missing = client.post("/v2/repository/models/nothing/load")
        assert missing.status_code == 400
        assert missing.json()["error"].startswith("failed to load 'nothing'")
