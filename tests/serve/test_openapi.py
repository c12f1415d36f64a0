"""The OpenAPI document against the app: every mounted route and method is documented,
nothing documented is not mounted, and the document is valid OpenAPI 3.1."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import models
import pytest
from starlette.routing import Route

from aiaas.serve.protocol.openapi import build_document
from aiaas.serve.server import Server, ServerSettings

#: Mounted on purpose without an entry: the /v1 fallback that answers any other /v1 path
#: with OpenAI's 404 (the document's description says so).
UNDOCUMENTED = {"/v1/{rest}"}
METHODS = {"get", "put", "post", "delete", "patch", "options", "head", "trace"}


def _server(tmp_path: Path, *, registry: bool) -> Server:
    extra = {}
    if registry:
        extra = {
            "registry_uri": f"sqlite:///{tmp_path / 'registry.db'}",
            "artifact_root": str(tmp_path / "artifacts"),
            "registry_cache_dir": tmp_path / "cache",
        }
    settings = ServerSettings(model_repository=tmp_path / "repo", grpc_port=0, **extra)
    (tmp_path / "repo").mkdir(exist_ok=True)
    return Server(settings)


def mounted(server: Server) -> set[tuple[str, str]]:
    """(path, method) of every route, Starlette's `{x:path}` written as OpenAPI's `{x}`;
    HEAD is Starlette's automatic companion of GET, not a route of ours."""
    found = set()
    for route in server.http_app().routes:
        assert isinstance(route, Route)
        path = re.sub(r"\{(\w+):\w+\}", r"{\1}", route.path)
        for method in route.methods or ():
            if method != "HEAD" and path not in UNDOCUMENTED:
                found.add((path, method.lower()))
    return found


def documented(document: dict) -> set[tuple[str, str]]:
    return {
        (path, method)
        for path, item in document["paths"].items()
        for method in item
        if method in METHODS
    }


@pytest.mark.parametrize("registry", [False, True], ids=["plain", "with-registry"])
def test_the_document_covers_exactly_the_mounted_routes(tmp_path, registry):
    server = _server(tmp_path, registry=registry)
    try:
        document = build_document(registry=registry)
        missing = mounted(server) - documented(document)
        extra = documented(document) - mounted(server)
        assert not missing, f"mounted but not in the OpenAPI document: {sorted(missing)}"
        assert not extra, f"documented but not mounted: {sorted(extra)}"
    finally:
        if server.registry is not None:
            server.registry.close()


def test_every_path_parameter_is_declared_and_operation_ids_are_unique():
    document = build_document(registry=True)
    ids = [
        op["operationId"]
        for item in document["paths"].values()
        for m, op in item.items()
        if m in METHODS
    ]
    assert len(ids) == len(set(ids))
    for path, item in document["paths"].items():
        names = set(re.findall(r"\{(\w+)\}", path))
        declared = {p["name"] for p in item.get("parameters", []) if p["in"] == "path"}
        assert names == declared, path


def test_links_name_existing_operations_and_parameters():
    document = build_document(registry=True)
    operations = {
        op["operationId"]: path
        for path, item in document["paths"].items()
        for method, op in item.items()
        if method in METHODS
    }
    for item in document["paths"].values():
        for method, op in item.items():
            if method not in METHODS:
                continue
            for response in op["responses"].values():
                for link in response.get("links", {}).values():
                    target = operations[link["operationId"]]
                    assert set(link["parameters"]) <= set(re.findall(r"\{(\w+)\}", target))


def test_the_document_is_valid_openapi_3_1():
    from schemathesis.openapi import from_dict

    schema = from_dict(build_document(registry=True))
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == len(documented(build_document(registry=True)))


def test_the_live_server_serves_its_document(start_server, tmp_path):
    models.save(models.add_sub(), tmp_path / "repo", "add_sub")
    server = start_server(tmp_path / "repo")
    answer = httpx.get(f"{server.url}/openapi.json", timeout=10)
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/json"
    document = answer.json()
    assert document == build_document(registry=False)
    infer = document["paths"]["/v2/models/{model}/infer"]["post"]
    assert "application/octet-stream" in infer["requestBody"]["content"]
    assert infer["parameters"][0]["name"] == "Inference-Header-Content-Length"
