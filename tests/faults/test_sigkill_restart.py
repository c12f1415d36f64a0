"""SIGKILL of the server under load, then a restart on the same ports: nothing the dead
process left (listening sockets, the registry cache and its staging folder) blocks the
new one, which answers correctly from the repository and from the registry."""

from __future__ import annotations

import signal

import httpx
import models
import numpy as np
import onnx
from load import AddSubLoad, add_sub_body, check_add_sub
from traffic import infer, wait_for

from aiaas.registry import Registry


def test_sigkill_under_load_then_restart_on_the_same_ports(tmp_path, start_server):
    repo = tmp_path / "repo"
    models.save(models.add_sub(), repo, "add_sub", 1)
    registry_uri = f"sqlite:///{tmp_path / 'registry.db'}"
    artifacts = str(tmp_path / "artifacts")
    model_file = tmp_path / "five.onnx"
    onnx.save(models.add_constant(5), model_file)
    with Registry.open(registry_uri, artifacts) as registry:
        registry.register("five", model_file)
        registry.set_alias("five", "prod", 1)
    cache = tmp_path / "cache"
    flags = (
        "--registry-uri", registry_uri, "--artifact-root", artifacts,
        "--model", "models:/five@prod", "--registry-cache-dir", str(cache),
    )  # fmt: skip
    first = start_server(repo, *flags)
    ports = (first.http_port, first.grpc_port)

    with AddSubLoad(first.url) as load:
        wait_for(lambda: load.answered >= 20)
        first.stop(signal.SIGKILL)
        assert first.process.returncode == -signal.SIGKILL
        second = start_server(repo, *flags, ports=ports)
        answered = load.answered
        wait_for(lambda: load.answered >= answered + 20)
    assert load.wrong == []

    x = np.ones((1, 4), np.float32)
    a = np.arange(4, dtype=np.int32).reshape(1, 4)
    with httpx.Client(base_url=second.url, timeout=30) as client:
        check_add_sub(client.post("/v2/models/add_sub/infer", json=add_sub_body(a, a)), a, a)
        assert infer(client, "five", x).json()["outputs"][0]["data"] == [6.0] * 4
    assert list((cache / ".staging").glob("*")) == []
    assert "Traceback" not in second.logs()
