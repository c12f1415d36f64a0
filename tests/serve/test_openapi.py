"""The OpenAPI document against the app: every mounted route and method is documented,
nothing documented is not mounted, and the document is valid OpenAPI 3.1.

The app's routes are listed in a subprocess: building a Server imports aiaas's gRPC
modules, which may not share this process with tritonclient's (see conftest.py)."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import httpx
import models
import pytest

from aiaas.serve.protocol.openapi import build_document

#: Mounted on purpose without an entry: the /v1 fallback that answers any other /v1 path
#: with OpenAI's 404 (the document's description says so).
UNDOCUMENTED = {"/v1/{rest}"}
#: The catalogue's HTML pages, static files and the small JSON API its own pages call
#: are for the browser, not part of the protocol surface the document describes.
UNDOCUMENTED_PREFIXES = ("/ui",)
METHODS = {"get", "put", "post", "delete", "patch", "options", "head", "trace"}
#: Builds a Server (with a registry when asked) and prints its routes as JSON.
LIST_ROUTES = """
import json, sys
from pathlib import Path
from aiaas.serve.server import Server, ServerSettings
tmp, registry = Path(sys.argv[1]), sys.argv[2] == "registry"
(tmp / "repo").mkdir(exist_ok=True)
extra = {}
if registry:
    extra = {"registry_uri": f"sqlite:///{tmp / 'registry.db'}",
             "artifact_root": str(tmp / "artifacts"), "registry_cache_dir": tmp / "cache"}
server = Server(ServerSettings(model_repository=tmp / "repo", grpc_port=0, **extra))
print(json.dumps([[r.path, sorted(getattr(r, "methods", None) or ())]
                  for r in server.http_app().routes]))
if server.registry is not None:
    server.registry.close()
"""


def mounted(tmp_path, *, registry: bool) -> set[tuple[str, str]]:
    """(path, method) of every route, Starlette's `{x:path}` written as OpenAPI's `{x}`;
    HEAD is Starlette's automatic companion of GET, not a route of ours."""
    flag = "registry" if registry else "plain"
    listed = subprocess.run(
        [sys.executable, "-c", LIST_ROUTES, str(tmp_path), flag],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    found = set()
    for path, methods in json.loads(listed.stdout.strip().splitlines()[-1]):
        path = re.sub(r"\{(\w+):\w+\}", r"{\1}", path)
        for method in methods:
            if (
                method != "HEAD"
                and path not in UNDOCUMENTED
                and not path.startswith(UNDOCUMENTED_PREFIXES)
            ):
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
    routes = mounted(tmp_path, registry=registry)
    document = build_document(registry=registry)
    missing = routes - documented(document)
    extra = documented(document) - routes
    assert not missing, f"mounted but not in the OpenAPI document: {sorted(missing)}"
    assert not extra, f"documented but not mounted: {sorted(extra)}"


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
