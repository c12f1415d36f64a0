"""Real processes for the edge agent's tests: a registry server (`aiaas serve
--registry-uri`) that can be stopped and started again on its port, agents
(`aiaas edge agent`) in subprocesses, and bundles made with the manifest module."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import models
import numpy as np
import onnx
from onnx import TensorProto, helper
from ports import free_port
from processes import LoggedProcess

from aiaas.edge import manifest

ROOT = Path(__file__).resolve().parents[2]
WAIT_S = 90.0


def env(**extra: str) -> dict[str, str]:
    found = dict(os.environ)
    found.update(PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1", **extra)
    found["PYTHONPATH"] = os.pathsep.join([str(ROOT), found.get("PYTHONPATH", "")])
    return found


def wait_until(condition: Callable[[], Any], what: str, timeout: float = WAIT_S) -> Any:
    """Poll until `condition` is truthy; timing never decides, the timeout only ends a hang."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = condition()
        except httpx.HTTPError:
            value = None
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


class Process(LoggedProcess):
    """A subprocess with its log in a file, that serves HTTP once up."""

    def wait_http(self, url: str) -> None:
        def up() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(f"exited early:\n{self.logs()}")
            return httpx.get(url, timeout=2).status_code == 200

        wait_until(up, url)


class RegistryServer:
    """The registry's HTTP API served by `aiaas serve`, on a port kept across restarts."""

    def __init__(self, registry_uri: str, artifact_root: str, tmp_path: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.repo = tmp_path / "empty-repository"
        self.repo.mkdir(exist_ok=True)
        self.args = ["--registry-uri", registry_uri, "--artifact-root", artifact_root]
        self.tmp_path = tmp_path
        self.process: Process | None = None

    def start(self) -> None:
        command = [
            sys.executable, "-m", "aiaas.cli", "serve", "--model-repository", str(self.repo),
            "--http-port", str(self.port), "--grpc-port", "0", *self.args,
        ]  # fmt: skip
        self.process = Process(command, self.tmp_path / "registry-server.log", env=env())
        self.process.wait_http(f"{self.url}/v2/registry/models")

    def stop(self) -> None:
        if self.process is not None:
            assert self.process.stop() == 0, self.process.logs()
            self.process = None


class AgentProcess(Process):
    def __init__(
        self,
        registry_url: str,
        directory: Path,
        *flags: str,
        uri: str = "models:/mlp@production",
        extra_env: dict[str, str] | None = None,
        **options: Any,
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.directory = directory
        command = [
            sys.executable, "-m", "aiaas.cli", "edge", "agent", "--registry-url", registry_url,
            "--model", uri, "--dir", str(directory), "--http-port", str(self.port),
            "--poll-secs", "0.2", "--max-backoff-secs", "1", *flags,
        ]  # fmt: skip
        directory.parent.mkdir(parents=True, exist_ok=True)
        log_path = directory.parent / f"{directory.name}.log"
        super().__init__(command, log_path, env=env(**(extra_env or {})), **options)
        self.wait_http(f"{self.url}/v2/health/live")

    def state(self) -> dict[str, Any]:
        return httpx.get(f"{self.url}/v2/edge/state", timeout=5).json()

    def answer(self, name: str = "mlp") -> tuple[int, float]:
        """(the version that answered, what it added to x)."""
        body = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [0] * 4}]}
        response = httpx.post(f"{self.url}/v2/models/{name}/infer", json=body, timeout=10)
        assert response.status_code == 200, response.text
        data = response.json()
        (added,) = set(data["outputs"][0]["data"])
        return int(data["model_version"]), added

    def serves(self, version: int) -> bool:
        """True once the device answers with `version` (whose model adds `version`)."""
        try:
            return self.answer() == (version, float(version))
        except AssertionError:
            return False

    def wait_serving(self, version: int) -> None:
        wait_until(lambda: self.serves(version), f"the agent serving version {version}")


def add_model(path: Path, value: float) -> Path:
    """A model answering y = x + value, so an answer says which version computed it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(models.add_constant(value), path)
    return path


def failing_model(path: Path) -> Path:
    """A valid model that fails every inference: [batch, 4] reshaped to [3]."""
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["x", "shape"], ["y"])],
        "fails",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [onnx.numpy_helper.from_array(np.array([3], dtype=np.int64), "shape")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", models.OPSET)])
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, path)
    return path


def bundle(
    folder: Path,
    value: float,
    key: Path | None,
    *,
    fields: dict[str, Any] | None = None,
    extra_bytes: int = 0,
    model: Path | None = None,
) -> Path:
    """A bundle folder (model.onnx, maybe a large weights file, manifest, signature)."""
    folder.mkdir(parents=True)
    if model is not None:
        model.replace(folder / "model.onnx")
    else:
        add_model(folder / "model.onnx", value)
    if extra_bytes:
        (folder / "weights.bin").write_bytes(np.random.default_rng(0).bytes(extra_bytes))
    manifest.write_manifest(folder, {"name": "mlp", "min_onnxruntime": "1.16", **(fields or {})})
    if key is not None:
        manifest.sign(folder, key)
    return folder
