"""The JSON schemas of the OpenAPI document: V2 bodies as the KServe V2 REST
specification words them, the registry's records, and OpenAI's bodies (taken from
the pydantic models that parse them, so the two cannot disagree).

Schemas state what every answer holds and leave objects open: a client that reads
more than the document promises is on its own, one that reads less never breaks.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from aiaas.serve.protocol.openai_schema import (
    ChatCompletionRequest,
    CompletionRequest,
    EmbeddingRequest,
)
from aiaas.tensors import DATATYPE_TO_NUMPY

Schema = dict[str, Any]
REF = "#/components/schemas/{model}"


def ref(name: str) -> Schema:
    return {"$ref": REF.format(model=name)}


def _object(required: dict[str, Schema], optional: dict[str, Schema] | None = None) -> Schema:
    return {
        "type": "object",
        "required": sorted(required),
        "properties": {**required, **(optional or {})},
    }


_STRING: Schema = {"type": "string"}
_INTEGER: Schema = {"type": "integer"}
_BOOLEAN: Schema = {"type": "boolean"}
_NUMBER: Schema = {"type": "number"}
_STRINGS: Schema = {"type": "array", "items": _STRING}
_PARAMETERS: Schema = {"type": "object", "description": "Free-form parameters."}
_SHAPE: Schema = {"type": "array", "items": {"type": "integer", "minimum": -1}}
_NULLABLE_STRING: Schema = {"type": ["string", "null"]}

#: V2 tensor data: flat row-major, or nested as the shape; numbers, booleans or strings.
_SCALAR: Schema = {"type": ["number", "boolean", "string"]}
_TENSOR_DATA: Schema = {
    "type": "array",
    "items": {"anyOf": [_SCALAR, {"type": "array"}]},
    "description": "Row-major tensor contents, flat or nested as the shape.",
}


def _v2_schemas() -> dict[str, Schema]:
    datatype = {"type": "string", "enum": sorted(DATATYPE_TO_NUMPY)}
    tensor_metadata = _object({"name": _STRING, "datatype": _STRING, "shape": _SHAPE})
    request_input = _object(
        {"name": _STRING, "shape": _SHAPE, "datatype": datatype},
        {"parameters": _PARAMETERS, "data": _TENSOR_DATA},
    )
    request_output = _object({"name": _STRING}, {"parameters": _PARAMETERS})
    response_output = _object(
        {"name": _STRING, "shape": _SHAPE, "datatype": _STRING},
        {"parameters": _PARAMETERS, "data": _TENSOR_DATA},
    )
    return {
        "Error": _object({"error": _STRING}),
        "ServerLive": _object({"live": _BOOLEAN}),
        "ServerReady": _object({"ready": _BOOLEAN}),
        "ModelReady": _object({"name": _STRING, "ready": _BOOLEAN}),
        "ServerMetadata": _object({"name": _STRING, "version": _STRING, "extensions": _STRINGS}),
        "TensorMetadata": tensor_metadata,
        "ModelMetadata": _object(
            {
                "name": _STRING,
                "platform": _STRING,
                "inputs": {"type": "array", "items": ref("TensorMetadata")},
                "outputs": {"type": "array", "items": ref("TensorMetadata")},
            },
            {"versions": _STRINGS, "parameters": _PARAMETERS},
        ),
        "InferenceRequest": _object(
            {"inputs": {"type": "array", "items": ref("RequestInput"), "minItems": 1}},
            {
                "id": _STRING,
                "parameters": _PARAMETERS,
                "outputs": {"type": "array", "items": ref("RequestOutput")},
            },
        ),
        "RequestInput": request_input,
        "RequestOutput": request_output,
        "InferenceResponse": _object(
            {
                "model_name": _STRING,
                "outputs": {"type": "array", "items": ref("ResponseOutput")},
            },
            {"model_version": _STRING, "id": _STRING, "parameters": _PARAMETERS},
        ),
        "ResponseOutput": response_output,
        "ModelConfig": _object({"name": _STRING}, {"platform": _STRING, "backend": _STRING}),
        "ModelStatistics": _object(
            {"model_stats": {"type": "array", "items": ref("VersionStatistics")}}
        ),
        "VersionStatistics": _object(
            {
                "name": _STRING,
                "version": _STRING,
                "inference_count": _INTEGER,
                "execution_count": _INTEGER,
                "inference_stats": {"type": "object"},
            },
            {"last_inference": _INTEGER, "batch_stats": {"type": "array"}},
        ),
        "RepositoryIndexRequest": {
            "type": "object",
            "properties": {"ready": _BOOLEAN},
        },
        "RepositoryIndex": {"type": "array", "items": ref("RepositoryModel")},
        "RepositoryModel": _object(
            {"name": _STRING, "state": _STRING},
            {"version": _STRING, "reason": _STRING},
        ),
        "LoadRequest": {
            "type": "object",
            "properties": {
                "parameters": {
                    "type": "object",
                    "description": "'config': a JSON model configuration; 'file:<path>': "
                    "base64 file content (needs 'config').",
                }
            },
        },
        "SharedMemoryRegisterRequest": _object(
            {"key": _STRING, "byte_size": {"type": "integer", "minimum": 0}},
            {"offset": {"type": "integer", "minimum": 0}},
        ),
        "SharedMemoryStatus": {
            "type": "array",
            "items": _object(
                {"name": _STRING, "key": _STRING, "offset": _INTEGER, "byte_size": _INTEGER}
            ),
        },
        "CudaSharedMemoryStatus": {"type": "array", "items": {"type": "object"}},
        "CudaSharedMemoryRegisterRequest": {"type": "object"},
        "GenerateRequest": _object(
            {"text_input": {"type": "string", "minLength": 1}},
            {"parameters": _PARAMETERS},
        ),
        "GenerateResponse": _object(
            {"model_name": _STRING, "model_version": _STRING, "text_output": _STRING}
        ),
    }


def _registry_schemas() -> dict[str, Schema]:
    version = _object(
        {
            "name": _STRING,
            "version": _INTEGER,
            "uri": _STRING,
            "sha256": _STRING,
            "size_bytes": _INTEGER,
            "files": {"type": "array", "items": {"type": "object"}},
            "aliases": _STRINGS,
        },
        {"description": _NULLABLE_STRING, "created_at": _STRING, "signature": {"type": "object"}},
    )
    model = _object(
        {"name": _STRING, "aliases": {"type": "object"}},
        {
            "description": _NULLABLE_STRING,
            "latest_version": {"type": ["integer", "null"]},
            "version_count": _INTEGER,
        },
    )
    return {
        "RegistryModel": model,
        "RegistryModels": _object({"models": {"type": "array", "items": ref("RegistryModel")}}),
        "RegistryVersion": version,
        "RegistryVersions": _object(
            {"versions": {"type": "array", "items": ref("RegistryVersion")}}
        ),
        "RegistryLineage": _object(
            {
                "uri": _STRING,
                "ancestors": {"type": "array", "items": {"type": "object"}},
                "descendants": {"type": "array", "items": {"type": "object"}},
            }
        ),
        "RegistryAliases": _object({"aliases": {"type": "object"}}),
        "AliasRequest": {
            "type": "object",
            "required": ["version"],
            "properties": {"version": {"type": "integer", "minimum": 1}},
            "additionalProperties": False,
        },
        "AliasSet": _object(
            {"name": _STRING, "alias": _STRING, "version": _INTEGER, "uri": _STRING}
        ),
        "AliasDeleted": _object({"name": _STRING, "alias": _STRING, "deleted": _BOOLEAN}),
    }


def _completion(object_name: str) -> Schema:
    """A completion and a chat completion differ only in their 'object'."""
    return _object(
        {
            "id": _STRING,
            "object": {"const": object_name},
            "created": _INTEGER,
            "model": _STRING,
            "choices": {"type": "array", "items": {"type": "object"}},
        },
        {"usage": ref("Usage")},
    )


def _openai_schemas() -> dict[str, Schema]:
    error = _object(
        {
            "message": _STRING,
            "type": _STRING,
            "param": _NULLABLE_STRING,
            "code": _NULLABLE_STRING,
        }
    )
    usage = _object(
        {"prompt_tokens": _INTEGER, "completion_tokens": _INTEGER, "total_tokens": _INTEGER}
    )
    schemas: dict[str, Schema] = {
        "OpenAIError": _object({"error": error}),
        "OpenAIModel": _object(
            {"id": _STRING, "object": _STRING, "created": _INTEGER, "owned_by": _STRING}
        ),
        "OpenAIModelList": _object(
            {"object": _STRING, "data": {"type": "array", "items": ref("OpenAIModel")}}
        ),
        "Usage": usage,
        "Completion": _completion("text_completion"),
        "ChatCompletion": _completion("chat.completion"),
        "EmbeddingList": _object(
            {
                "object": {"const": "list"},
                "data": {"type": "array", "items": {"type": "object"}},
                "model": _STRING,
            },
            {"usage": {"type": "object"}},
        ),
    }
    models: list[type[BaseModel]] = [CompletionRequest, ChatCompletionRequest, EmbeddingRequest]
    for model in models:
        schemas.update(_pydantic_schema(model))
    return schemas


def _pydantic_schema(model: type[BaseModel]) -> dict[str, Schema]:
    """The model's JSON schema, its nested definitions lifted into components."""
    schema = model.model_json_schema(ref_template=REF)
    nested = schema.pop("$defs", {})
    return {model.__name__: schema, **nested}


def component_schemas(*, registry: bool) -> dict[str, Schema]:
    schemas = {**_v2_schemas(), **_openai_schemas()}
    if registry:
        schemas.update(_registry_schemas())
    return schemas
