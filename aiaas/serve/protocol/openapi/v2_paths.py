"""The KServe V2 paths of a server and its models: health, metadata, configuration,
lineage, statistics, infer (with the binary tensor extension) and Triton's generate."""

from __future__ import annotations

from typing import Any

from aiaas.serve.protocol.openapi.operations import (
    FREE_FORM,
    Operation,
    Paths,
    errors,
    event_stream,
    json_content,
    ok,
    op,
)
from aiaas.serve.protocol.openapi.schemas import ref

_V2_ERRORS = (400, 404, 413, 429, 503)
_MODEL = "/v2/models/{model}"
_VERSION = "/v2/models/{model}/versions/{version}"
_HEADER_LENGTH = "Inference-Header-Content-Length"

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


def health_paths() -> Paths:
    ready = ref("ServerReady")
    return {
        "/v2/health/live": {
            "get": op("serverLive", "health", {"200": ok("The server is live.", ref("ServerLive"))})
        },
        "/v2/health/ready": {
            "get": op(
                "serverReady",
                "health",
                {"200": ok("Ready.", ready), "503": ok("Not ready yet.", ready)},
            )
        },
        "/v2": {
            "get": op(
                "serverMetadata",
                "metadata",
                {"200": ok("Server metadata.", ref("ServerMetadata"))},
            )
        },
    }


def _both(path_suffix: str) -> list[tuple[str, str]]:
    """A route under the model and under one of its versions: (path, operationId suffix)."""
    return [(f"{_MODEL}{path_suffix}", ""), (f"{_VERSION}{path_suffix}", "Version")]


def _model_reads() -> dict[str, tuple[str, str, dict[str, Any]]]:
    """Path suffix -> (operationId, tag, answers) of the model's plain GET routes."""
    model_ready = ref("ModelReady")
    lineage = (
        "The full aiaas.lineage record: run, data fingerprint, recipe digest, "
        "parents (the registry's facts over the file's)."
    )
    return {
        "": (
            "modelMetadata",
            "metadata",
            {"200": ok("Model metadata.", ref("ModelMetadata")), **errors((400, 404, 503))},
        ),
        "/ready": (
            "modelReady",
            "health",
            {
                "200": ok("The model is ready.", model_ready),
                "503": ok("The model is not ready.", model_ready),
                **errors((400, 404)),
            },
        ),
        "/config": (
            "modelConfig",
            "metadata",
            {"200": ok("The configuration in use.", ref("ModelConfig")), **errors((400, 404))},
        ),
        "/lineage": (
            "modelLineage",
            "metadata",
            {"200": ok(lineage, FREE_FORM), **errors((400, 404))},
        ),
    }


def model_paths() -> Paths:
    paths: Paths = {"/v2/models/stats": {"get": _statistics("modelStatisticsAll")}}
    for path_suffix, (operation_id, tag, responses) in _model_reads().items():
        for path, suffix in _both(path_suffix):
            paths[path] = {"get": op(f"{operation_id}{suffix}", tag, responses)}
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
    return op(
        operation_id,
        "statistics",
        {
            "200": ok("Statistics per model version.", ref("ModelStatistics")),
            **errors((400, 404)),
        },
    )


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
        "content": {**json_content(ref("InferenceResponse")), "application/octet-stream": binary},
    }
    return op(
        operation_id,
        "inference",
        {"200": answer, **errors(_V2_ERRORS)},
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
            "content": event_stream("One 'data: <GenerateResponse>' event per piece."),
        }
    else:
        answer = ok("The generated text.", ref("GenerateResponse"))
    return op(
        operation_id,
        "generate",
        {"200": answer, **errors(_V2_ERRORS)},
        body=ref("GenerateRequest"),
        body_required=True,
    )
