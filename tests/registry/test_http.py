"""The registry's HTTP routes: reads for all, alias writes behind the admin token."""

from __future__ import annotations

import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from aiaas.registry.http import registry_routes

TOKEN = "s3cret-token"
LOOPBACK = ("127.0.0.1", 50000)


@pytest.fixture
def filled(registry, onnx_file):
    registry.register("mlp", onnx_file("v1"), metrics={"accuracy": 0.9})
    registry.register("mlp", onnx_file("v2"))
    registry.register("small", onnx_file("s1"), parents=["models:/mlp/2"])
    registry.set_alias("mlp", "production", 1)
    return registry


def _client(registry, client=LOOPBACK, **options) -> TestClient:
    return TestClient(Starlette(routes=registry_routes(registry, **options)), client=client)


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_reads(filled):
    client = _client(filled)
    models = client.get("/v2/registry/models").json()["models"]
    assert [m["name"] for m in models] == ["mlp", "small"]
    assert client.get("/v2/registry/models/mlp").json()["aliases"] == {"production": 1}
    versions = client.get("/v2/registry/models/mlp/versions").json()["versions"]
    assert [v["version"] for v in versions] == [1, 2]
    assert client.get("/v2/registry/models/mlp/versions/1").json()["metrics"] == {"accuracy": 0.9}
    assert client.get("/v2/registry/models/mlp/aliases").json() == {"aliases": {"production": 1}}
    assert client.get("/v2/registry/models/mlp/aliases/production").json()["version"] == 1
    lineage = client.get("/v2/registry/models/mlp/versions/2/lineage").json()
    assert [n["uri"] for n in lineage["descendants"]] == ["models:/small/1"]


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/v2/registry/models/nope", 404),
        ("/v2/registry/models/mlp/versions/9", 404),
        ("/v2/registry/models/mlp/versions/0", 400),
        ("/v2/registry/models/mlp/versions/x/lineage", 400),
        ("/v2/registry/models/mlp/aliases/nope", 404),
        ("/v2/registry/models/bad%20name", 400),
    ],
)
def test_read_errors(filled, path, status):
    response = _client(filled).get(path)
    assert response.status_code == status
    assert set(response.json()) == {"error"}


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_alias_writes_with_the_admin_token(filled):
    client = _client(filled, admin_token=TOKEN)
    url = "/v2/registry/models/mlp/aliases/production"
    auth = {"Authorization": f"Bearer {TOKEN}"}
    moved = client.put(url, json={"version": 2}, headers=auth)
    assert moved.status_code == 200
    assert moved.json()["uri"] == "models:/mlp/2"
    assert filled.resolve("models:/mlp@production").version == 2
    assert client.put(url, json={"version": 9}, headers=auth).status_code == 404
    assert client.put(url, json={"version": "two"}, headers=auth).status_code == 400
    assert client.put(url, json={"version": 1, "x": 1}, headers=auth).status_code == 400
    assert client.put(url, content=b"{" * 70_000, headers=auth).status_code == 400
    assert client.delete(url, headers=auth).status_code == 200
    assert client.delete(url, headers=auth).status_code == 404


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
@pytest.mark.parametrize("header", [None, "Bearer wrong", f"Basic {TOKEN}", TOKEN])
def test_writes_without_the_right_token_are_401(filled, header):
    client = _client(filled, admin_token=TOKEN)
    headers = {"Authorization": header} if header else {}
    response = client.put(
        "/v2/registry/models/mlp/aliases/production", json={"version": 2}, headers=headers
    )
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert (
        client.delete("/v2/registry/models/mlp/aliases/production", headers=headers).status_code
        == 401
    )
    assert filled.resolve("models:/mlp@production").version == 1


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_without_a_token_writes_need_loopback_only(filled):
    url = "/v2/registry/models/mlp/aliases/production"
    assert _client(filled).put(url, json={"version": 2}).status_code == 403
    remote = _client(filled, client=("203.0.113.7", 40000), loopback_only=True)
    assert remote.put(url, json={"version": 2}).status_code == 403
    local = _client(filled, loopback_only=True)
    assert local.put(url, json={"version": 2}).status_code == 200
    assert filled.resolve("models:/mlp@production").version == 2
