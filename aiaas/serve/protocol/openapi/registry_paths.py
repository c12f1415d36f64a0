"""The registry's routes, mounted when the server has a registry: models, versions,
lineage, files (ETag and byte ranges), aliases, and the edge devices' reports."""

from __future__ import annotations

from typing import Any

from aiaas.serve.protocol.openapi.operations import (
    BEARER_IF_SET,
    FREE_FORM,
    Operation,
    Paths,
    errors,
    link,
    ok,
    op,
)
from aiaas.serve.protocol.openapi.schemas import ref

REGISTRY = "/v2/registry/models"
_MODEL = f"{REGISTRY}/{{name}}"
_VERSION = f"{_MODEL}/versions/{{version}}"
_ALIAS = f"{_MODEL}/aliases/{{alias}}"
_NAME = "$request.path.name"


def _read(operation_id: str, schema: str, links: dict[str, Any] | None = None) -> Operation:
    answer = ok("Found.", ref(schema), **({"links": links} if links else {}))
    return op(operation_id, "registry", {"200": answer, **errors((400, 404))})


def _write(operation_id: str, answer: dict[str, Any], body: dict[str, Any] | None) -> Operation:
    responses = {"200": answer, **errors((400, 401, 403, 404, 409))}
    return op(
        operation_id, "registry", responses, body=body, body_required=True, security=BEARER_IF_SET
    )


def _file() -> Operation:
    octets = {"application/octet-stream": {"schema": {"type": "string"}}}
    return op(
        "registryGetFile",
        "registry",
        {
            "200": {"description": "The file; its ETag is its sha256.", "content": octets},
            "206": {
                "description": "The byte range asked for (Range: bytes=N-).",
                "content": octets,
            },
            "304": {"description": "Unchanged (If-None-Match)."},
            "416": {"description": "The range starts past the end of the file."},
            **errors((400, 404)),
        },
    )


def _model_reads() -> Paths:
    return {
        REGISTRY: {
            "get": _read(
                "registryListModels",
                "RegistryModels",
                {"Model": link("registryGetModel", name="$response.body#/models/0/name")},
            )
        },
        _MODEL: {
            "get": _read(
                "registryGetModel",
                "RegistryModel",
                {
                    "Versions": link("registryListVersions", name=_NAME),
                    "Aliases": link("registryListAliases", name=_NAME),
                },
            )
        },
        f"{_MODEL}/versions": {
            "get": _read(
                "registryListVersions",
                "RegistryVersions",
                {
                    "Version": link(
                        "registryGetVersion",
                        name=_NAME,
                        version="$response.body#/versions/0/version",
                    )
                },
            )
        },
        _VERSION: {
            "get": _read(
                "registryGetVersion",
                "RegistryVersion",
                {"Lineage": link("registryLineage", name=_NAME, version="$request.path.version")},
            )
        },
        f"{_VERSION}/lineage": {"get": _read("registryLineage", "RegistryLineage")},
        f"{_VERSION}/files/{{path}}": {"get": _file()},
    }


def _aliases() -> Paths:
    alias_link = link("registryGetAlias", name=_NAME, alias="$request.path.alias")
    return {
        f"{_MODEL}/aliases": {"get": _read("registryListAliases", "RegistryAliases")},
        _ALIAS: {
            "get": _read("registryGetAlias", "RegistryVersion"),
            "put": _write(
                "registrySetAlias",
                ok(
                    "The alias now names this version.",
                    ref("AliasSet"),
                    links={"Alias": alias_link},
                ),
                ref("AliasRequest"),
            ),
            "delete": _write("registryDeleteAlias", ok("Deleted.", ref("AliasDeleted")), None),
        },
    }


def _devices() -> Paths:
    return {
        "/v2/registry/devices": {
            "get": op(
                "registryListDevices",
                "registry",
                {"200": ok("Each edge device's last report.", FREE_FORM), **errors((400, 404))},
            )
        },
        "/v2/registry/devices/{device_id}": {
            "put": _write("registryReportDevice", ok("The stored report.", FREE_FORM), FREE_FORM)
        },
    }


def registry_paths() -> Paths:
    return {**_model_reads(), **_aliases(), **_devices()}
