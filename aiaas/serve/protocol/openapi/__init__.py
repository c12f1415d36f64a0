"""The OpenAPI 3.1 document of the whole HTTP surface, served at ``GET /openapi.json``.

Written to agree with the KServe V2 REST specification (health, metadata, infer with
the binary tensor extension), Triton's extensions that aiaas implements (repository,
shared memory, statistics, configuration, generate), the registry routes and the
OpenAI routes: one module per surface, assembled here. A test compares it with the
routes the app mounts, both ways, so a route added without its entry here fails the
suite instead of drifting silently.
"""

from __future__ import annotations

from typing import Any

from aiaas import __version__
from aiaas.serve.protocol.openapi.openai_paths import openai_paths
from aiaas.serve.protocol.openapi.operations import Paths, ok, op
from aiaas.serve.protocol.openapi.registry_paths import REGISTRY, registry_paths
from aiaas.serve.protocol.openapi.repository_paths import repository_paths, shared_memory_paths
from aiaas.serve.protocol.openapi.schemas import component_schemas
from aiaas.serve.protocol.openapi.v2_paths import health_paths, model_paths


def _observability_paths() -> Paths:
    return {
        "/metrics": {
            "get": op(
                "metrics",
                "observability",
                {
                    "200": {
                        "description": "Prometheus text exposition.",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
            )
        },
        "/openapi.json": {
            "get": op("openapi", "observability", {"200": ok("This document.", {"type": "object"})})
        },
    }


def _path_parameter(name: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": schema or {"type": "string"}}


def _parameters_of(path: str) -> list[dict[str, Any]]:
    names = [part[1:-1] for part in path.split("/") if part.startswith("{")]
    integer = {"type": "integer", "minimum": 1}
    registry = path.startswith(REGISTRY)
    return [
        _path_parameter(name, integer if registry and name == "version" else None) for name in names
    ]


def _with_parameters(paths: Paths) -> dict[str, Any]:
    """Every path's template parameters declared once, at the path level."""
    result: dict[str, Any] = {}
    for path, operations in sorted(paths.items()):
        parameters = _parameters_of(path)
        result[path] = {**({"parameters": parameters} if parameters else {}), **operations}
    return result


def build_document(*, registry: bool) -> dict[str, Any]:
    """The document for a server with (or without) the registry routes mounted."""
    paths = {
        **health_paths(),
        **model_paths(),
        **repository_paths(),
        **shared_memory_paths(),
        **openai_paths(),
        **_observability_paths(),
    }
    if registry:
        paths.update(registry_paths())
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "aiaas inference server",
            "version": __version__,
            "description": "Open Inference Protocol (KServe V2) over HTTP with Triton's "
            "extensions, the model registry, and OpenAI's API for language models. Any other "
            "/v1 path is answered 404 in OpenAI's error shape.",
        },
        "paths": _with_parameters(paths),
        "components": {
            "schemas": component_schemas(registry=registry),
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "The admin token (registry writes) or the API key (/v1), "
                    "when the server is started with one.",
                }
            },
        },
    }
