"""The end of a run: ONNX in a servable repository, registered with the run's lineage."""

from __future__ import annotations

import json

import httpx
import numpy as np
import onnxruntime
import torch
from train_support import TrainRuns, final_params

from aiaas.registry.api import Registry
from aiaas.train.examples import digits_dataset, digits_mlp


def test_final_model_is_exported_as_onnx_that_matches_the_trained_weights(train_runs: TrainRuns):
    run_dir = train_runs.baseline()
    published = json.loads((run_dir / "final" / "publish.json").read_text())
    onnx_path = run_dir / "model_repository" / "digits" / "1" / "model.onnx"
    assert published["onnx"] == str(onnx_path)
    model = digits_mlp(hidden=32)
    model.load_state_dict(final_params(run_dir))
    inputs = digits_dataset("test").tensors[0][:50]
    with torch.no_grad():
        expected = model(inputs).numpy()
    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    (actual,) = session.run(None, {"input": inputs.numpy()})
    np.testing.assert_allclose(actual, expected, atol=1e-4)


def test_model_is_registered_with_run_spec_metrics_and_data_fingerprint(train_runs: TrainRuns):
    run_dir = train_runs.baseline()
    info = json.loads((run_dir / "run.json").read_text())
    final_metrics = json.loads((run_dir / "final" / "metrics.json").read_text())
    with Registry.open(uri=train_runs.registry_uri) as registry:
        version = registry.resolve("models:/digits/1")
    assert version.run_id == info["run_id"]
    assert version.tags["dataset_fingerprint"] == info["dataset_fingerprint"]
    assert info["dataset_fingerprint"].startswith("sha256:")
    assert version.metrics == final_metrics
    assert version.metrics["eval_accuracy"] > 0.4  # chance is 0.1
    assert version.recipe is not None
    assert version.recipe["spec"] == train_runs.spec.read_text()
    assert version.recipe["config"]["training"]["global_batch_size"] == 32


def test_run_directory_holds_spec_config_logs_metrics_and_checkpoints(train_runs: TrainRuns):
    run_dir = train_runs.baseline()
    for name in ("spec.toml", "config.json", "run.json", "train.log", "metrics.jsonl"):
        assert (run_dir / name).is_file(), name
    assert (run_dir / "checkpoints" / "latest").read_text().strip() == "step-00000012"
    assert any((run_dir / "logs").iterdir())
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    events = [json.loads(line)["event"] for line in lines]
    assert events.count("train") == 12
    assert events.count("checkpoint") == 2


def test_exported_model_is_served_by_aiaas_serve(train_runs: TrainRuns, start_server):
    server = start_server(train_runs.baseline() / "model_repository")
    sample = digits_dataset("test").tensors[0][:2]
    body = {"inputs": [{"name": "input", "shape": [2, 64], "datatype": "FP32",
                        "data": sample.flatten().tolist()}]}  # fmt: skip
    response = httpx.post(f"{server.url}/v2/models/digits/infer", json=body, timeout=10)
    assert response.status_code == 200, response.text
    (output,) = response.json()["outputs"]
    assert output["shape"] == [2, 10]
