"""A disk that fills while a model is loaded from a request's files or a version is
registered: nothing half-written (no blob, no row, no temporary file), one clear error
(503 with V2's body; `aiaas models register` exit 4 with one line), and the server
keeps serving."""

from __future__ import annotations

import base64
import json
import subprocess
import sys

import httpx
import models
import numpy as np
import onnx
from limits import file_size_limit
from onnx import numpy_helper
from processes import ROOT, server_env
from traffic import infer

from aiaas.exit_codes import ExitCode

LIMIT = 512 * 1024
CLI = [sys.executable, "-m", "aiaas.cli", "models"]


def big_model(value: float) -> onnx.ModelProto:
    """add_constant(value) carrying 2 MB of unused weights: over LIMIT on disk."""
    model = models.add_constant(value)
    padding = np.random.default_rng(0).random(500_000, dtype=np.float32)
    model.graph.initializer.append(numpy_helper.from_array(padding, "padding"))
    return model


def load_body(model: onnx.ModelProto) -> dict:
    config = {"backend": "onnxruntime"}
    encoded = base64.b64encode(model.SerializeToString()).decode()
    return {"parameters": {"config": json.dumps(config), "file:1/model.onnx": encoded}}


def test_load_with_files_on_a_full_disk_fails_cleanly(tmp_path, start_server, monkeypatch):
    repo = tmp_path / "repo"
    models.save(models.add_constant(1), repo, "served", 1)
    temporary = tmp_path / "server-tmp"
    temporary.mkdir()
    monkeypatch.setenv("TMPDIR", str(temporary))
    server = start_server(
        repo, "--model-control-mode", "explicit", "--load-model", "served",
        preexec_fn=file_size_limit(LIMIT),
    )  # fmt: skip
    x = np.zeros((1, 4), np.float32)
    with httpx.Client(base_url=server.url, timeout=60) as client:
        response = client.post("/v2/repository/models/up/load", json=load_body(big_model(2)))
        assert response.status_code == 503, response.text
        assert "cannot store the passed files" in response.json()["error"]
        assert "File too large" in response.json()["error"]
        assert list(temporary.glob("aiaas-load-*")) == []  # no half-written upload left
        assert client.get("/v2/models/up/ready").status_code != 200
        assert infer(client, "served", x).json()["outputs"][0]["data"] == [1.0] * 4
        # a small model still fits: the server is not left broken
        small = client.post("/v2/repository/models/up/load", json=load_body(models.add_constant(3)))
        assert small.status_code == 200, small.text
        assert infer(client, "up", x).json()["outputs"][0]["data"] == [3.0] * 4
    assert list(temporary.glob("aiaas-load-*")) == []
    assert "Traceback" not in server.logs()


def register(env: dict, model_file, limit: int | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*CLI, "register", "m", str(model_file)],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=120,
        preexec_fn=None if limit is None else file_size_limit(limit),
    )  # fmt: skip


def test_register_on_a_full_disk_leaves_nothing_half_written(tmp_path):
    env = {
        **server_env(),
        "AIAAS_REGISTRY_URI": f"sqlite:///{tmp_path / 'registry.db'}",
        "AIAAS_ARTIFACT_ROOT": str(tmp_path / "artifacts"),
    }
    small, big = tmp_path / "small.onnx", tmp_path / "big.onnx"
    onnx.save(models.add_constant(1), small)
    onnx.save(big_model(2), big)
    assert register(env, small).returncode == 0
    blobs = sorted((tmp_path / "artifacts" / "blobs").rglob("*"))

    failed = register(env, big, limit=LIMIT)
    assert failed.returncode == ExitCode.UNAVAILABLE, failed.stderr
    assert failed.stdout == ""
    lines = failed.stderr.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error: cannot write big.onnx to the artifact store")
    assert "File too large" in lines[0]
    assert sorted((tmp_path / "artifacts" / "blobs").rglob("*")) == blobs
    assert list((tmp_path / "artifacts" / "tmp").iterdir()) == []
    listed = subprocess.run([*CLI, "versions", "m", "--json"], env=env, cwd=ROOT,
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert [v["version"] for v in json.loads(listed.stdout)] == [1], listed

    # with room again, the same file registers as the next version
    again = register(env, big)
    assert again.returncode == 0, again.stderr
    assert "models:/m/2" in again.stdout
