"""Admin actions (load, unload, shared memory, over REST and gRPC) behind the admin
token; a server that would leave them open to the network refuses to start; the token
never reaches the logs."""

from __future__ import annotations

import base64
import subprocess
import sys

import httpx
import pytest
import tritonclient.grpc as grpcclient
from models import add_sub, save
from ports import free_port
from processes import ROOT, server_env
from tritonclient.utils import InferenceServerException

pytestmark = pytest.mark.both_workers

TOKEN = "s3cret-admin-token-7f9a"
WRONG = "not-the-token-1b2c"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def repo(tmp_path):
    save(add_sub(), tmp_path / "models", "add_sub")
    return tmp_path / "models"


def _admin_calls(client: httpx.Client, headers: dict[str, str], key: str) -> list[int]:
    """Every REST admin action once; their statuses."""
    return [
        client.post("/v2/repository/models/add_sub/load", headers=headers).status_code,
        client.post(
            "/v2/systemsharedmemory/region/r/register",
            json={"key": key, "offset": 0, "byte_size": 16},
            headers=headers,
        ).status_code,
        client.post("/v2/systemsharedmemory/region/r/unregister", headers=headers).status_code,
        client.post("/v2/systemsharedmemory/unregister", headers=headers).status_code,
        client.post("/v2/cudasharedmemory/unregister", headers=headers).status_code,
        client.post("/v2/repository/models/add_sub/unload", headers=headers).status_code,
    ]


def test_rest_admin_actions_need_the_token_when_one_is_set(repo, start_server, shm_regions):
    _, key, _ = shm_regions(16)
    server = start_server(
        repo, "--model-control-mode", "explicit", "--admin-token", TOKEN, "--load-model", "*"
    )
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for headers in ({}, {"Authorization": f"Bearer {WRONG}"}, {"Authorization": TOKEN}):
            assert _admin_calls(client, headers, key) == [401] * 6
            refused = client.post("/v2/repository/models/add_sub/unload", headers=headers)
            assert refused.headers["www-authenticate"] == "Bearer"
            body = refused.json()
            needs = "unloading a model needs 'Authorization: Bearer <admin token>'"
            assert body == {"error": needs}
        # Nothing was done by the refused calls: the model still serves.
        assert client.get("/v2/models/add_sub/ready").status_code == 200
        assert _admin_calls(client, AUTH, key) == [200] * 6
        assert client.get("/v2/models/add_sub/ready").status_code == 404
        # Reads stay open.
        assert client.post("/v2/repository/index", json={}).status_code == 200
        assert client.get("/v2/systemsharedmemory/status").status_code == 200


def test_grpc_admin_actions_need_the_token_metadata(repo, start_server, shm_regions):
    _, key, _ = shm_regions(16)
    server = start_server(
        repo, "--model-control-mode", "explicit", "--admin-token", TOKEN, "--load-model", "*"
    )
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{server.grpc_port}")
    actions = [
        lambda h: client.load_model("add_sub", headers=h),
        lambda h: client.register_system_shared_memory("r", key, 16, headers=h),
        lambda h: client.unregister_system_shared_memory("r", headers=h),
        lambda h: client.unregister_cuda_shared_memory(headers=h),
        lambda h: client.unload_model("add_sub", headers=h),
    ]
    for headers in (None, {"authorization": f"Bearer {WRONG}"}):
        for action in actions:
            with pytest.raises(InferenceServerException) as caught:
                action(headers)
            assert caught.value.status() == "StatusCode.UNAUTHENTICATED"
    assert client.is_model_ready("add_sub")
    for action in actions:
        action({"authorization": f"Bearer {TOKEN}"})
    assert not client.is_model_ready("add_sub")
    client.close()


def test_a_loopback_server_without_a_token_keeps_admin_actions_open(repo, start_server):
    server = start_server(repo, "--model-control-mode", "explicit")
    with httpx.Client(base_url=server.url, timeout=30) as client:
        assert client.post("/v2/repository/models/add_sub/load").status_code == 200
        assert client.post("/v2/repository/models/add_sub/unload").status_code == 200


def _serve(*flags: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "aiaas.cli", "serve", *flags]
    return subprocess.run(
        command, capture_output=True, text=True, cwd=ROOT, env=server_env(), timeout=60, check=False
    )


@pytest.mark.parametrize("host", ["0.0.0.0", "::"])
def test_a_server_beyond_loopback_without_a_token_refuses_to_start(repo, host):
    result = _serve(
        "--model-repository", str(repo), "--host", host,
        "--http-port", str(free_port()), "--grpc-port", str(free_port()),
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(f"error: refusing to serve on {host} with admin actions")
    assert "--admin-token" in result.stderr
    assert "--allow-open-admin" in result.stderr
    assert result.stderr.count("\n") == 1
    assert "Traceback" not in result.stdout + result.stderr


def test_allow_open_admin_serves_beyond_loopback_with_admin_actions_open(repo, start_server):
    server = start_server(
        repo, "--host", "0.0.0.0", "--allow-open-admin", "--model-control-mode", "explicit"
    )
    with httpx.Client(base_url=server.url, timeout=30) as client:
        assert client.post("/v2/repository/models/add_sub/load").status_code == 200


def test_a_token_beyond_loopback_is_enough_to_start_and_is_required(repo, start_server):
    server = start_server(
        repo, "--host", "0.0.0.0", "--admin-token", TOKEN, "--model-control-mode", "explicit"
    )
    with httpx.Client(base_url=server.url, timeout=30) as client:
        assert client.post("/v2/repository/models/add_sub/load").status_code == 401
        assert client.post("/v2/repository/models/add_sub/load", headers=AUTH).status_code == 200


def test_the_admin_token_never_reaches_the_logs(repo, start_server):
    server = start_server(
        repo, "--model-control-mode", "explicit", "--admin-token", TOKEN, "--log-level", "trace"
    )
    files = {"config": '{"backend": "onnxruntime"}', "file:1/model.onnx": ""}
    broken = {"parameters": {**files, "file:1/model.onnx": base64.b64encode(b"junk").decode()}}
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for headers in (AUTH, {"Authorization": f"Bearer {WRONG}"}, {"Authorization": TOKEN}):
            client.post("/v2/repository/models/add_sub/load", headers=headers)
            client.post("/v2/repository/models/add_sub/load", json=broken, headers=headers)
            client.post("/v2/repository/models/nope/unload", headers=headers)
            client.post("/v2/systemsharedmemory/region/r/register", json={}, headers=headers)
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{server.grpc_port}")
    for token in (TOKEN, WRONG):
        with pytest.raises(InferenceServerException):
            client.load_model("nope", headers={"authorization": f"Bearer {token}"})
    client.close()
    assert server.stop() == 0
    logs = server.log_path.read_text(errors="replace")
    assert "/v2/repository/models/add_sub/load" in logs  # trace: the calls were logged
    assert TOKEN not in logs
    assert WRONG not in logs
