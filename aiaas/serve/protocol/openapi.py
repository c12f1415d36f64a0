"""The OpenAPI 3.1 document of the whole HTTP surface, served at ``GET /openapi.json``.

Written to agree with the KServe V2 REST specification (health, metadata, infer with
the binary tensor extension), Triton's extensions that aiaas implements (repository,
shared memory, statistics, configuration, generate), the registry routes and the
OpenAI routes. A test compares it with the routes the app mounts, both ways, so a
route added without its entry here fails the suite instead of drifting silently.
"""

from __future__ import annotations

from typing import Any

from aiaas import __version__
from aiaas.serve.protocol.openapi_schemas import Schema, component_schemas, ref

Operation = dict[str, Any]
_V2_ERRORS = (400, 404, 413, 429, 503)
_MODEL = "/v2/models/{model}"
_VERSION = "/v2/models/{model}/versions/{version}"
_SHM = "/v2/systemsharedmemory"
_CUDA_SHM = "/v2/cudasharedmemory"
_REGISTRY = "/v2/registry/models"
_HEADER_LENGTH = "Inference-Header-Content-Length"
#: Admin actions: open on a loopback server without a token, else the admin token.
_ADMIN: list[dict[str, list[str]]] = [{}, {"bearerAuth": []}]
_FREE_FORM: Schema = {"type": "object"}
_ERROR_TEXT = {
    400: "The request is malformed or does not fit the model.",
    401: "The admin token or API key is missing or wrong.",
    403: "Refused in this server's configuration.",
    404: "Unknown model, version, region or registry entry.",
    409: "Conflicts with the current state (a name already taken).",
    413: "The request body exceeds the configured limit.",
    429: "A bounded queue is full: retry later.",
    503: "Not ready, or overloaded.",
}


def _event_stream(description: str) -> dict[str, Any]:
    """Server-sent events; the schema is that of one event (OpenAPI 3.2's itemSchema)."""
    event = {
        "type": "object",
        "required": ["data"],
        "properties": {"data": {"type": "string"}, "event": {"type": "string"}},
    }
    return {"text/event-stream": {"schema": event, "description": description}}


def _json(schema: Schema) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _ok(description: str, schema: Schema | None = None, **extra: Any) -> dict[str, Any]:
    response: dict[str, Any] = {"description": description, **extra}
    if schema is not None:
        response["content"] = _json(schema)
    return response


def _errors(codes: tuple[int, ...], schema: str = "Error") -> dict[str, Any]:
    return {str(code): _ok(_ERROR_TEXT[code], ref(schema)) for code in codes}


def _path_parameter(name: str, schema: Schema | None = None) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": schema or {"type": "string"}}


def _parameters_of(path: str) -> list[dict[str, Any]]:
    names = [part[1:-1] for part in path.split("/") if part.startswith("{")]
    integer = {"type": "integer", "minimum": 1}
    registry = path.startswith(_REGISTRY)
    return [
        _path_parameter(name, integer if registry and name == "version" else None) for name in names
    ]


def _op(
    operation_id: str,
    tag: str,
    responses: dict[str, Any],
    *,
    body: Schema | None = None,
    body_required: bool = False,
    **extra: Any,
) -> Operation:
    operation: Operation = {"operationId": operation_id, "tags": [tag], "responses": responses}
    if body is not None:
        operation["requestBody"] = {"required": body_required, "content": _json(body)}
    operation.update(extra)
    return operation


def _both(path_suffix: str) -> list[tuple[str, str]]:
    """A route under the model and under one of its versions: (path, operationId suffix)."""
    return [(f"{_MODEL}{path_suffix}", ""), (f"{_VERSION}{path_suffix}", "Version")]


def _health_paths() -> dict[str, dict[str, Operation]]:
    ready = ref("ServerReady")
    return {
        "/v2/health/live": {
            "get": _op(
                "serverLive", "health", {"200": _ok("The server is live.", ref("ServerLive"))}
            )
        },
        "/v2/health/ready": {
            "get": _op(
                "serverReady",
                "health",
                {"200": _ok("Ready.", ready), "503": _ok("Not ready yet.", ready)},
            )
        },
        "/v2": {
            "get": _op(
                "serverMetadata",
                "metadata",
                {"200": _ok("Server metadata.", ref("ServerMetadata"))},
            )
        },
    }


def _model_paths() -> dict[str, dict[str, Operation]]:
    paths: dict[str, dict[str, Operation]] = {
        "/v2/models/stats": {"get": _statistics("modelStatisticsAll")}
    }
    for path, suffix in _both(""):
        paths[path] = {
            "get": _op(
                f"modelMetadata{suffix}",
                "metadata",
                {"200": _ok("Model metadata.", ref("ModelMetadata")), **_errors((400, 404, 503))},
            )
        }
    for path, suffix in _both("/ready"):
        model_ready = ref("ModelReady")
        paths[path] = {
            "get": _op(
                f"modelReady{suffix}",
                "health",
                {
                    "200": _ok("The model is ready.", model_ready),
                    "503": _ok("The model is not ready.", model_ready),
                    **_errors((400, 404)),
                },
            )
        }
    for path, suffix in _both("/config"):
        paths[path] = {
            "get": _op(
                f"modelConfig{suffix}",
                "metadata",
                {
                    "200": _ok("The configuration in use.", ref("ModelConfig")),
                    **_errors((400, 404)),
                },
            )
        }
    for path, suffix in _both("/lineage"):
        paths[path] = {
            "get": _op(
                f"modelLineage{suffix}",
                "metadata",
                {
                    "200": _ok(
                        "The full aiaas.lineage record: run, data fingerprint, recipe digest, "
                        "parents (the registry's facts over the file's).",
                        _FREE_FORM,
                    ),
                    **_errors((400, 404)),
                },
            )
        }
    for path, suffix in _both("/stats"):
        paths[path] = {"get": _statistics(f"modelStatistics{suffix}")}
    for path, suffix in _both("/infer"):
        paths[path] = {"post": _infer(f"modelInfer{suffix}")}
    for path, suffix in _both("/generate"):
        paths[path] = {"post": _generate(f"modelGenerate{suffix}", stream=False)}
    for path, suffix in _both("/generate_stream"):
        paths[path] = {"post": _generate(f"modelGenerateStream{suffix}", stream=True)}
    return paths


def _statistics(operation_id: str) -> Operation:
    return _op(
        operation_id,
        "statistics",
        {
            "200": _ok("Statistics per model version.", ref("ModelStatistics")),
            **_errors((400, 404)),
        },
    )


#: Bodies for Triton's add_sub and for a one-input FP32 model, as the V2 spec shows them.
INFER_EXAMPLES = {
    "add_sub": {
        "value": {
            "inputs": [
                {"name": "a", "shape": [1, 4], "datatype": "INT32", "data": [1, 2, 3, 4]},
                {"name": "b", "shape": [1, 4], "datatype": "INT32", "data": [10, 20, 30, 40]},
            ]
        }
    },
    "binary_output": {
        "value": {
            "id": "42",
            "inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}],
            "outputs": [{"name": "y", "parameters": {"binary_data": True}}],
        }
    },
}


def _infer(operation_id: str) -> Operation:
    header_length = {
        "name": _HEADER_LENGTH,
        "in": "header",
        "required": False,
        "description": "Binary tensor extension: the length of the JSON header that starts "
        "the body; the raw tensors of inputs with 'binary_data_size' follow it.",
        "schema": {"type": "integer", "minimum": 0},
    }
    binary = {"schema": {"type": "string", "format": "binary"}}
    answer = {
        "description": "The outputs. A binary answer (outputs asked with 'binary_data') is "
        f"application/octet-stream: a JSON header of {_HEADER_LENGTH} bytes, then raw tensors.",
        "headers": {_HEADER_LENGTH: {"schema": {"type": "integer", "minimum": 0}}},
        "content": {**_json(ref("InferenceResponse")), "application/octet-stream": binary},
    }
    return _op(
        operation_id,
        "inference",
        {"200": answer, **_errors(_V2_ERRORS)},
        parameters=[header_length],
        requestBody={
            "required": True,
            "content": {
                "application/json": {
                    "schema": ref("InferenceRequest"),
                    "examples": INFER_EXAMPLES,
                },
                "application/octet-stream": binary,
            },
        },
    )


def _generate(operation_id: str, *, stream: bool) -> Operation:
    if stream:
        answer = {
            "description": "The generated text as it comes.",
            "content": _event_stream("One 'data: <GenerateResponse>' event per piece."),
        }
    else:
        answer = _ok("The generated text.", ref("GenerateResponse"))
    return _op(
        operation_id,
        "generate",
        {"200": answer, **_errors(_V2_ERRORS)},
        body=ref("GenerateRequest"),
        body_required=True,
    )


def _repository_paths() -> dict[str, dict[str, Operation]]:
    model = "/v2/repository/models/{model}"
    ready_link = {
        "operationId": "modelReady",
        "parameters": {"model": "$request.path.model"},
    }
    return {
        "/v2/repository/index": {
            "post": _op(
                "repositoryIndex",
                "repository",
                {
                    "200": _ok(
                        "Every model the repository knows, with its state.",
                        ref("RepositoryIndex"),
                        links={
                            "ModelMetadata": {
                                "operationId": "modelMetadata",
                                "parameters": {"model": "$response.body#/0/name"},
                            }
                        },
                    ),
                    **_errors((400, 413)),
                },
                body=ref("RepositoryIndexRequest"),
            )
        },
        f"{model}/load": {
            "post": _op(
                "repositoryModelLoad",
                "repository",
                {
                    "200": _ok("Loaded.", links={"ModelReady": ready_link}),
                    **_errors((400, 401, 403, 404, 409, 413, 503)),
                },
                body=ref("LoadRequest"),
                security=_ADMIN,
            )
        },
        f"{model}/unload": {
            "post": _op(
                "repositoryModelUnload",
                "repository",
                {
                    "200": _ok("Unloaded.", links={"ModelReady": ready_link}),
                    **_errors((400, 401, 403, 404, 413, 503)),
                },
                security=_ADMIN,
            )
        },
    }


def _shared_memory_paths(prefix: str, kind: str, register_body: str) -> dict[str, Any]:
    status = "SharedMemoryStatus" if kind == "system" else "CudaSharedMemoryStatus"
    region = f"{prefix}/region/{{region}}"
    ok = _ok("Done.")
    name = "systemSharedMemory" if kind == "system" else "cudaSharedMemory"
    status_link = {
        "operationId": f"{name}RegionStatus",
        "parameters": {"region": "$request.path.region"},
    }
    return {
        f"{prefix}/status": {
            "get": _op(f"{name}Status", "shared memory", {"200": _ok("Regions.", ref(status))})
        },
        f"{region}/status": {
            "get": _op(
                f"{name}RegionStatus",
                "shared memory",
                {"200": _ok("The region.", ref(status)), **_errors((400, 404))},
            )
        },
        f"{region}/register": {
            "post": _op(
                f"{name}Register",
                "shared memory",
                {
                    "200": _ok("Registered.", links={"RegionStatus": status_link}),
                    **_errors((400, 401, 403, 404, 409, 413)),
                },
                body=ref(register_body),
                body_required=kind == "system",
                security=_ADMIN,
            )
        },
        f"{prefix}/unregister": {
            "post": _op(
                f"{name}UnregisterAll",
                "shared memory",
                {"200": ok, **_errors((401, 403, 413))},
                security=_ADMIN,
            )
        },
        f"{region}/unregister": {
            "post": _op(
                f"{name}Unregister",
                "shared memory",
                {"200": ok, **_errors((400, 401, 403, 404, 413))},
                security=_ADMIN,
            )
        },
    }


def _openai_paths() -> dict[str, dict[str, Operation]]:
    errors = _errors((400, 401, 404, 413, 429, 503), "OpenAIError")
    security: list[dict[str, list[str]]] = [{}, {"bearerAuth": []}]

    def generation(operation_id: str, body: str, answer: str) -> Operation:
        content = {
            **_json(ref(answer)),
            **_event_stream("With 'stream': chunks as 'data: <json>' events, then 'data: [DONE]'."),
        }
        return _op(
            operation_id,
            "openai",
            {"200": {"description": "The answer, or its stream.", "content": content}, **errors},
            body=ref(body),
            body_required=True,
            security=security,
        )

    return {
        "/v1/models": {
            "get": _op(
                "openaiListModels",
                "openai",
                {
                    "200": _ok(
                        "The language and embedding models served.",
                        ref("OpenAIModelList"),
                        links={
                            "Model": {
                                "operationId": "openaiGetModel",
                                "parameters": {"model": "$response.body#/data/0/id"},
                            }
                        },
                    ),
                    **errors,
                },
                security=security,
            )
        },
        "/v1/models/{model}": {
            "get": _op(
                "openaiGetModel",
                "openai",
                {"200": _ok("One model.", ref("OpenAIModel")), **errors},
                security=security,
            )
        },
        "/v1/completions": {
            "post": generation("openaiCompletions", "CompletionRequest", "Completion")
        },
        "/v1/chat/completions": {
            "post": generation("openaiChatCompletions", "ChatCompletionRequest", "ChatCompletion")
        },
        "/v1/embeddings": {
            "post": _op(
                "openaiEmbeddings",
                "openai",
                {"200": _ok("The embeddings.", ref("EmbeddingList")), **errors},
                body=ref("EmbeddingRequest"),
                body_required=True,
                security=security,
            )
        },
    }


def _registry_paths() -> dict[str, dict[str, Operation]]:
    model = f"{_REGISTRY}/{{name}}"
    version = f"{model}/versions/{{version}}"
    alias = f"{model}/aliases/{{alias}}"
    reads = _errors((400, 404))
    writes = _errors((400, 401, 403, 404, 409))
    security: list[dict[str, list[str]]] = [{}, {"bearerAuth": []}]
    name_link = {"name": "$request.path.name"}
    alias_link = {
        "operationId": "registryGetAlias",
        "parameters": {**name_link, "alias": "$request.path.alias"},
    }

    def read(operation_id: str, schema: str, links: dict[str, Any] | None = None) -> Operation:
        answer = _ok("Found.", ref(schema), **({"links": links} if links else {}))
        return _op(operation_id, "registry", {"200": answer, **reads})

    return {
        _REGISTRY: {
            "get": read(
                "registryListModels",
                "RegistryModels",
                {
                    "Model": {
                        "operationId": "registryGetModel",
                        "parameters": {"name": "$response.body#/models/0/name"},
                    }
                },
            )
        },
        model: {
            "get": read(
                "registryGetModel",
                "RegistryModel",
                {
                    "Versions": {"operationId": "registryListVersions", "parameters": name_link},
                    "Aliases": {"operationId": "registryListAliases", "parameters": name_link},
                },
            )
        },
        f"{model}/versions": {
            "get": read(
                "registryListVersions",
                "RegistryVersions",
                {
                    "Version": {
                        "operationId": "registryGetVersion",
                        "parameters": {
                            **name_link,
                            "version": "$response.body#/versions/0/version",
                        },
                    }
                },
            )
        },
        version: {
            "get": read(
                "registryGetVersion",
                "RegistryVersion",
                {
                    "Lineage": {
                        "operationId": "registryLineage",
                        "parameters": {**name_link, "version": "$request.path.version"},
                    }
                },
            )
        },
        f"{version}/lineage": {"get": read("registryLineage", "RegistryLineage")},
        f"{version}/files/{{path}}": {
            "get": _op(
                "registryGetFile",
                "registry",
                {
                    "200": {
                        "description": "The file; its ETag is its sha256.",
                        "content": {"application/octet-stream": {"schema": {"type": "string"}}},
                    },
                    "206": {
                        "description": "The byte range asked for (Range: bytes=N-).",
                        "content": {"application/octet-stream": {"schema": {"type": "string"}}},
                    },
                    "304": {"description": "Unchanged (If-None-Match)."},
                    "416": {"description": "The range starts past the end of the file."},
                    **reads,
                },
            )
        },
        "/v2/registry/devices": {
            "get": _op(
                "registryListDevices",
                "registry",
                {"200": _ok("Each edge device's last report.", _FREE_FORM), **reads},
            )
        },
        "/v2/registry/devices/{device_id}": {
            "put": _op(
                "registryReportDevice",
                "registry",
                {"200": _ok("The stored report.", _FREE_FORM), **writes},
                body=_FREE_FORM,
                body_required=True,
                security=security,
            )
        },
        f"{model}/aliases": {"get": read("registryListAliases", "RegistryAliases")},
        alias: {
            "get": read("registryGetAlias", "RegistryVersion"),
            "put": _op(
                "registrySetAlias",
                "registry",
                {
                    "200": _ok(
                        "The alias now names this version.",
                        ref("AliasSet"),
                        links={"Alias": alias_link},
                    ),
                    **writes,
                },
                body=ref("AliasRequest"),
                body_required=True,
                security=security,
            ),
            "delete": _op(
                "registryDeleteAlias",
                "registry",
                {"200": _ok("Deleted.", ref("AliasDeleted")), **writes},
                security=security,
            ),
        },
    }


def _misc_paths() -> dict[str, dict[str, Operation]]:
    return {
        "/metrics": {
            "get": _op(
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
            "get": _op(
                "openapi", "observability", {"200": _ok("This document.", {"type": "object"})}
            )
        },
    }


def _with_parameters(paths: dict[str, dict[str, Operation]]) -> dict[str, Any]:
    """Every path's template parameters declared once, at the path level."""
    result: dict[str, Any] = {}
    for path, operations in sorted(paths.items()):
        parameters = _parameters_of(path)
        result[path] = {**({"parameters": parameters} if parameters else {}), **operations}
    return result


def build_document(*, registry: bool) -> dict[str, Any]:
    """The document for a server with (or without) the registry routes mounted."""
    paths = {
        **_health_paths(),
        **_model_paths(),
        **_repository_paths(),
        **_shared_memory_paths(_SHM, "system", "SharedMemoryRegisterRequest"),
        **_shared_memory_paths(_CUDA_SHM, "cuda", "CudaSharedMemoryRegisterRequest"),
        **_openai_paths(),
        **_misc_paths(),
    }
    if registry:
        paths.update(_registry_paths())
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
