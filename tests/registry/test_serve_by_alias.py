"""`aiaas serve --model models:/NAME@ALIAS`: a real server follows the registry's alias,
swaps versions without failing a request, says what it serves, and mounts the
registry's HTTP API behind the admin token."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import models
import numpy as np
import onnx
import pytest
from ports import free_port
from registry_support import ROOT
from tiny_llama import write_tiny_llama
from traffic import VersionedTraffic, assert_clean_swaps, infer, wait_for

pytestmark = pytest.mark.both_workers

TOKEN = "s3cret-token"
PRODUCTION = "models:/mlp@production"
ALIAS_URL = "/v2/registry/models/mlp/aliases/production"


@pytest.fixture
def register(registry, tmp_path):
    """register(name, value) -> the version of a model answering y = x + value."""

    def make(name: str, value: float):
        path = tmp_path / "sources" / f"{name}-{value}.onnx"
        path.parent.mkdir(parents=True, exist_ok=True)
        onnx.save(models.add_constant(value), path)
        return registry.register(name, path)

    return make


@pytest.fixture
def serve(start_server, start_workers, registry_uri, artifact_root, tmp_path):
    """serve(*uris, flags=(), repo=None, default_cache=False) -> a server following the
    URIs, polling every 0.2 s; its cache is tmp_path/cache unless default_cache."""
    if start_workers != 1 and registry_uri.startswith("postgresql"):
        pytest.skip("--workers 2 runs against SQLite only: the engine alone reads the registry")

    def start(
        *uris: str, flags: tuple[str, ...] = (), repo: Path | None = None, default_cache=False
    ):
        registry_flags = ["--registry-uri", registry_uri, "--artifact-root", artifact_root]
        if not default_cache:
            registry_flags += ["--registry-cache-dir", str(tmp_path / "cache")]
        model_flags = [arg for uri in uris for arg in ("--model", uri)]
        return start_server(
            repo, *registry_flags, *model_flags, "--registry-poll-secs", "0.2", *flags
        )

    return start


def answer(client: httpx.Client, name: str = "mlp") -> tuple[int, float]:
    """(the version that answered, what it added to x)."""
    x = np.zeros((1, 4), np.float32)
    response = infer(client, name, x)
    assert response.status_code == 200, response.text
    body = response.json()
    (added,) = set(body["outputs"][0]["data"])
    return int(body["model_version"]), added


def serves(client: httpx.Client, version: int) -> bool:
    return answer(client) == (version, float(version))


def index(client: httpx.Client) -> dict[str, list[dict]]:
    rows: dict[str, list[dict]] = {}
    for row in client.post("/v2/repository/index").json():
        rows.setdefault(row["name"], []).append(row)
    return rows


def test_a_model_is_served_by_alias_and_follows_it(serve, register, cli, tmp_path, monkeypatch):
    first, second, third = (register("mlp", value) for value in (1, 2, 3))
    cli("alias", "set", "mlp", "production", 1)
    home = tmp_path / "home"
    monkeypatch.setenv("AIAAS_HOME", str(home))  # the default cache folder lives here
    repo = tmp_path / "repo"
    models.save(models.add_constant(5), repo, "local", 1)
    server = serve(PRODUCTION, flags=("--admin-token", TOKEN), repo=repo, default_cache=True)
    with httpx.Client(base_url=server.url, timeout=30) as client:
        assert answer(client) == (1, 1.0)
        assert answer(client, "local") == (1, 5.0)
        metadata = client.get("/v2/models/mlp").json()
        assert metadata["versions"] == ["1"]
        assert metadata["parameters"] == {
            "model_uri": PRODUCTION,
            "registry_version": 1,
            "sha256": first.sha256,
            "lineage": "/v2/registry/models/mlp/versions/1/lineage",
            "version_uri": "models:/mlp/1",
        }
        cache = home / "serve-cache" / f"port-{server.http_port}" / "mlp"
        assert (cache / "1" / "model.onnx").is_file()
        # Following the registry must not start polling the directory repository.
        models.save(models.add_constant(6), repo, "late", 1)
        models.save(models.add_constant(7), repo, "local", 2)

        cli("alias", "set", "mlp", "production", 2)
        wait_for(lambda: serves(client, 2))
        assert client.get("/v2/models/mlp").json()["parameters"] == {
            "model_uri": PRODUCTION,
            "registry_version": 2,
            "sha256": second.sha256,
            "lineage": "/v2/registry/models/mlp/versions/2/lineage",
            "version_uri": "models:/mlp/2",
        }
        assert sorted(p.name for p in cache.iterdir()) == ["2"]

        moved = client.put(
            ALIAS_URL, json={"version": 3}, headers={"Authorization": f"Bearer {TOKEN}"}
        )
        assert moved.status_code == 200, moved.text
        wait_for(lambda: serves(client, 3))
        assert client.get("/v2/models/mlp").json()["parameters"]["sha256"] == third.sha256

        cli("alias", "set", "mlp", "production", 1)  # back to a version served before
        wait_for(lambda: serves(client, 1))
        assert answer(client, "local") == (1, 5.0)
        assert infer(client, "late", np.zeros((1, 4), np.float32)).status_code == 404
        assert [row.get("version") for row in index(client)["late"]] == [None]


def test_alias_moves_under_load_fail_no_request(serve, register, cli):
    for value in (1, 2, 3):
        register("mlp", value)
    cli("alias", "set", "mlp", "production", 1)
    server = serve(PRODUCTION, flags=("--admin-token", TOKEN))
    with VersionedTraffic(server.url, "mlp") as traffic:
        traffic.everyone_on(1)
        cli("alias", "set", "mlp", "production", 2)
        traffic.everyone_on(2)
        auth = {"Authorization": f"Bearer {TOKEN}"}
        assert httpx.put(server.url + ALIAS_URL, json={"version": 3}, headers=auth).is_success
        traffic.everyone_on(3)
    assert_clean_swaps(traffic, {1, 2, 3})
    for per_client in traffic.seen:
        assert set(per_client) == {1, 2, 3}


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
@pytest.mark.parametrize(
    ("flags", "status"),
    [(("--host", "127.0.0.1"), 200), (("--host", "0.0.0.0", "--allow-open-admin"), 200)],
)
def test_without_a_token_a_loopback_or_explicitly_open_server_takes_writes(
    serve, register, cli, registry, flags, status
):
    """(A server beyond loopback with no token and no --allow-open-admin does not start:
    tests/serve/test_security_admin.py.)"""
    register("mlp", 1)
    register("mlp", 2)
    cli("alias", "set", "mlp", "production", 1)
    server = serve(PRODUCTION, flags=flags)
    with httpx.Client(base_url=server.url, timeout=30) as client:
        assert client.get("/v2/registry/models/mlp").json()["aliases"] == {"production": 1}
        response = client.put(ALIAS_URL, json={"version": 2})
        assert response.status_code == status, response.text
        assert registry.resolve(PRODUCTION).version == (2 if status == 200 else 1)


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_with_a_token_writes_need_it_and_reads_do_not(serve, register, cli, registry, monkeypatch):
    register("mlp", 1)
    register("mlp", 2)
    cli("alias", "set", "mlp", "production", 1)
    monkeypatch.setenv("AIAAS_ADMIN_TOKEN", TOKEN)
    server = serve(PRODUCTION)
    with httpx.Client(base_url=server.url, timeout=30) as client:
        versions = client.get("/v2/registry/models/mlp/versions").json()["versions"]
        assert [v["version"] for v in versions] == [1, 2]
        for headers in ({}, {"Authorization": "Bearer wrong"}):
            response = client.put(ALIAS_URL, json={"version": 2}, headers=headers)
            assert response.status_code == 401
            assert client.delete(ALIAS_URL, headers=headers).status_code == 401
        assert registry.resolve(PRODUCTION).version == 1
        auth = {"Authorization": f"Bearer {TOKEN}"}
        assert client.put(ALIAS_URL, json={"version": 2}, headers=auth).status_code == 200
        assert registry.resolve(PRODUCTION).version == 2
        wait_for(lambda: serves(client, 2))


def test_a_tampered_artifact_is_refused_and_the_last_version_keeps_serving(
    serve, register, cli, registry, tmp_path
):
    register("mlp", 1)
    second = register("mlp", 2)
    broken = register("other", 7)
    cli("alias", "set", "mlp", "production", 1)

    def tamper(version) -> None:
        blob = Path(registry.artifacts.blob_path(version.files[0].sha256))
        blob.write_bytes(b"x" * version.size_bytes)

    tamper(broken)
    server = serve(PRODUCTION, "models:/other/1")
    with httpx.Client(base_url=server.url, timeout=30) as client:
        (other,) = index(client)["other"]
        assert other["state"] == "UNAVAILABLE"
        assert "corrupt in the artifact store" in other["reason"], other
        assert infer(client, "other", np.zeros((1, 4), np.float32)).status_code == 404

        tamper(second)
        cli("alias", "set", "mlp", "production", 2)

        def refused() -> bool:
            (row,) = index(client)["mlp"]
            return "models:/mlp/2 is corrupt in the artifact store" in row["reason"]

        wait_for(refused)
        (row,) = index(client)["mlp"]
        assert row["version"] == "1"
        assert "still serving models:/mlp/1" in row["reason"]
        assert answer(client) == (1, 1.0)
        assert client.get("/v2/models/mlp").json()["parameters"]["registry_version"] == 1
    assert not (tmp_path / "cache" / "mlp" / "2").exists()


def _serve_and_fail(registry_uri: str, artifact_root: str, home: Path, *uris: str):
    command = [
        sys.executable, "-m", "aiaas.cli", "serve", "--registry-uri", registry_uri,
        "--artifact-root", artifact_root, "--http-port", str(free_port()),
        *[arg for uri in uris for arg in ("--model", uri)],
    ]  # fmt: skip
    env = {**os.environ, "AIAAS_HOME": str(home)}
    return subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=env, timeout=60)


def _one_error_line(result: subprocess.CompletedProcess, code: int, *expected: str) -> None:
    assert result.returncode == code, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    for text in expected:
        assert text in lines[0]


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("models:/mlp@staging", ("models:/mlp@staging", "no alias 'staging'")),
        ("models:/mlp/9", ("models:/mlp/9 not found",)),
        ("models:/nope@production", ("model 'nope' not found",)),
    ],
)
def test_an_unknown_model_or_alias_at_startup_is_exit_3(
    register, cli, registry_uri, artifact_root, tmp_path, uri, expected
):
    register("mlp", 1)
    cli("alias", "set", "mlp", "production", 1)
    result = _serve_and_fail(registry_uri, artifact_root, tmp_path / "home", uri)
    _one_error_line(result, 3, *expected)


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_a_bad_uri_at_startup_is_exit_2(artifact_root, registry_uri, tmp_path):
    home = tmp_path / "home"
    _one_error_line(
        _serve_and_fail(registry_uri, artifact_root, home, "mlp@production"), 2, "invalid model URI"
    )
    _one_error_line(
        _serve_and_fail("bogus://x", artifact_root, home, PRODUCTION), 2, "unsupported registry URI"
    )
    assert not home.exists()


def _completion_text(events: list[str]) -> str:
    chunks = [json.loads(line.removeprefix("data: ")) for line in events if line != "data: [DONE]"]
    return "".join(choice["text"] for chunk in chunks for choice in chunk["choices"])


def _running(server_url: str, version: int) -> float:
    metrics = httpx.get(f"{server_url}/metrics").text
    prefix = f'aiaas_num_requests_running{{model="chat",version="{version}"}} '
    lines = [line for line in metrics.splitlines() if line.startswith(prefix)]
    return float(lines[0].removeprefix(prefix)) if lines else 0.0


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_an_alias_move_during_a_generation_finishes_it_on_the_old_version(
    serve, registry, cli, tmp_path
):
    sources = tmp_path / "llm"
    for version in (1, 2):  # other weights: the versions answer differently
        write_tiny_llama(sources, "tiny", version, seed=version, context_length=4096)
        registry.register("chat", sources / "tiny" / str(version))
    cli("alias", "set", "chat", "production", 1)
    server = serve("models:/chat@production")
    body = {"model": "chat", "prompt": "The capital", "max_tokens": 3500, "temperature": 0}
    body["ignore_eos"] = True
    with httpx.Client(base_url=server.url, timeout=120) as client:
        alone = client.post("/v1/completions", json=body).json()["choices"][0]["text"]
        with client.stream("POST", "/v1/completions", json={**body, "stream": True}) as stream:
            events = (line for line in stream.iter_lines() if line.startswith("data: "))
            received = [next(events)]
            cli("alias", "set", "chat", "production", 2)
            wait_for(lambda: client.get("/v2/models/chat").json()["versions"] == ["2"])
            assert _running(server.url, 1) == 1  # still generating on version 1 after the move
            received += list(events)
        assert _completion_text(received) == alone
        generated = client.post(
            "/v2/models/chat/generate", json={"text_input": "The capital", "parameters": {}}
        )
        assert generated.json()["model_version"] == "2"
