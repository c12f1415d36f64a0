"""Statistics, Prometheus metrics and the configuration endpoint: values checked
exactly against the requests the test made."""

from __future__ import annotations

from pathlib import Path

import httpx
import models
import pytest
import tritonclient.http as httpclient
from prometheus_client.parser import text_string_to_metric_families

#: Against one process and against `--workers 2`: both must answer the same.
pytestmark = pytest.mark.both_workers

SERIAL = "max_batch_size: 8\ndynamic_batching { }\n"


@pytest.fixture(scope="module")
def server(module_tmp: Path, module_server):
    repo = module_tmp / "repo"
    models.save(models.batch_probe(), repo, "probe", config=SERIAL)
    models.save(models.add_sub(), repo, "plain")
    models.save(models.add_sub(), repo, "plain", version=2)
    return module_server(repo)


@pytest.fixture
def client(server):
    with httpx.Client(base_url=server.url, timeout=30) as http:
        yield http


def body(rows: int) -> dict:
    return {
        "inputs": [{"name": "x", "shape": [rows, 4], "datatype": "FP32", "data": [0.5] * 4 * rows}]
    }


def metric_samples(client) -> dict[tuple[str, tuple], float]:
    samples = {}
    for family in text_string_to_metric_families(client.get("/metrics").text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def test_statistics_and_metrics_count_exactly_what_was_sent(client):
    sizes = [1, 2, 2, 3, 1, 8]
    for rows in sizes:  # one at a time: each request is its own execution
        assert client.post("/v2/models/probe/infer", json=body(rows)).status_code == 200
    bad = client.post("/v2/models/probe/infer", json=body(9))  # over max_batch_size
    assert bad.status_code == 400
    (stats,) = client.get("/v2/models/probe/stats").json()["model_stats"]
    assert stats["name"] == "probe"
    assert stats["version"] == "1"
    assert stats["inference_count"] == sum(sizes)
    assert stats["execution_count"] == len(sizes)
    inference = stats["inference_stats"]
    assert inference["success"]["count"] == len(sizes)
    assert inference["fail"]["count"] == 1
    for phase in ("queue", "compute_input", "compute_infer", "compute_output"):
        assert inference[phase]["count"] == len(sizes)
        assert inference[phase]["ns"] > 0 or phase != "compute_infer"
    batch = {b["batch_size"]: b["compute_infer"]["count"] for b in stats["batch_stats"]}
    assert batch == {1: 2, 2: 2, 3: 1, 8: 1}
    assert stats["last_inference"] > 1_600_000_000_000

    labels = (("model", "probe"), ("version", "1"))
    metrics = metric_samples(client)
    assert metrics[("aiaas_inference_request_success_total", labels)] == len(sizes)
    assert metrics[("aiaas_inference_request_failure_total", labels)] == 1
    assert metrics[("aiaas_inference_count_total", labels)] == sum(sizes)
    assert metrics[("aiaas_inference_exec_count_total", labels)] == len(sizes)
    assert metrics[("aiaas_inference_request_latency_seconds_count", labels)] == len(sizes) + 1
    assert metrics[("aiaas_inference_pending_request_count", labels)] == 0
    assert metrics[("aiaas_inference_queue_duration_us_total", labels)] == pytest.approx(
        inference["queue"]["ns"] / 1000
    )
    assert metrics[("aiaas_inference_compute_infer_duration_us_total", labels)] == pytest.approx(
        inference["compute_infer"]["ns"] / 1000
    )
    assert metrics[("aiaas_model_ready", labels)] == 1


def test_statistics_scopes_all_model_and_version(client):
    names = {
        (s["name"], s["version"]) for s in client.get("/v2/models/stats").json()["model_stats"]
    }
    assert {("probe", "1"), ("plain", "2")} <= names
    scoped = client.get("/v2/models/plain/versions/2/stats").json()["model_stats"]
    assert [(s["name"], s["version"]) for s in scoped] == [("plain", "2")]
    assert client.get("/v2/models/nope/stats").status_code == 404
    assert client.get("/v2/models/plain/versions/1/stats").status_code == 404


def test_tritonclient_reads_statistics_and_config(server):
    client = httpclient.InferenceServerClient(server.url.removeprefix("http://"))
    stats = client.get_inference_statistics("probe")
    assert stats["model_stats"][0]["name"] == "probe"
    config = client.get_model_config("probe")
    assert config["max_batch_size"] == 8
    client.close()


def test_config_of_a_model_with_config_pbtxt(client):
    config = client.get("/v2/models/probe/config").json()
    assert config["name"] == "probe"
    assert config["max_batch_size"] == 8
    assert config["input"] == [
        {"name": "x", "data_type": "TYPE_FP32", "dims": [4], "format": "FORMAT_NONE",
         "is_shape_tensor": False, "allow_ragged_batch": False, "optional": False}
    ]  # fmt: skip
    assert [o["name"] for o in config["output"]] == ["y", "batch"]
    assert "dynamic_batching" in config


def test_config_of_a_model_completed_from_the_graph(client):
    config = client.get("/v2/models/plain/versions/2/config").json()
    assert config["platform"] == "onnxruntime_onnx"
    assert config["backend"] == "onnxruntime"
    assert config["max_batch_size"] == 32
    assert [(i["name"], i["data_type"], i["dims"]) for i in config["input"]] == [
        ("a", "TYPE_INT32", [4]),
        ("b", "TYPE_INT32", [4]),
    ]
    assert config["version_policy"] == {"latest": {"num_versions": 1}}
    assert config["instance_group"][0]["count"] == 1


def test_metrics_port_serves_the_same_metrics(tmp_path, start_server):
    from ports import free_port

    repo = tmp_path / "repo"
    models.save(models.add_sub(), repo, "plain")
    port = free_port()
    server = start_server(repo, "--metrics-port", str(port))
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    assert 'aiaas_model_ready{model="plain",version="1"} 1.0' in text
    assert httpx.get(f"{server.url}/metrics").status_code == 200


def test_a_model_that_failed_to_load_is_ready_0_beside_a_served_one(tmp_path, start_server):
    repo = tmp_path / "repo"
    models.save(models.add_sub(), repo, "plain")
    (repo / "broken" / "1").mkdir(parents=True)
    (repo / "broken" / "1" / "model.onnx").write_bytes(b"not an ONNX model")
    server = start_server(repo)  # ready: readiness is not strict by default
    with httpx.Client(base_url=server.url, timeout=30) as client:
        index = {row["name"]: row for row in client.post("/v2/repository/index").json()}
        assert index["broken"]["state"] == "UNAVAILABLE"
        assert index["plain"]["state"] == "READY"
        ready = {
            labels: value
            for (name, labels), value in metric_samples(client).items()
            if name == "aiaas_model_ready"
        }
    assert ready == {
        (("model", "broken"), ("version", "")): 0.0,
        (("model", "plain"), ("version", "1")): 1.0,
    }
