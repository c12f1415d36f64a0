"""The pieces every surface's paths are built from: an operation, its answers, the
protocol errors it may give, links between operations and who may call it."""

from __future__ import annotations

from typing import Any

from aiaas.serve.protocol.openapi.schemas import Schema, ref

Operation = dict[str, Any]
Paths = dict[str, dict[str, Operation]]
#: Open on a loopback server started without a token, else the bearer token (the admin
#: token for admin actions, the API key for /v1).
BEARER_IF_SET: list[dict[str, list[str]]] = [{}, {"bearerAuth": []}]
FREE_FORM: Schema = {"type": "object"}
ERROR_TEXT = {
    400: "The request is malformed or does not fit the model.",
    401: "The admin token or API key is missing or wrong.",
    403: "Refused in this server's configuration.",
    404: "Unknown model, version, region or registry entry.",
    409: "Conflicts with the current state (a name already taken).",
    413: "The request body exceeds the configured limit.",
    429: "A bounded queue is full: retry later.",
    503: "Not ready, or overloaded.",
}


def event_stream(description: str) -> dict[str, Any]:
    """Server-sent events; the schema is that of one event (OpenAPI 3.2's itemSchema)."""
    event = {
        "type": "object",
        "required": ["data"],
        "properties": {"data": {"type": "string"}, "event": {"type": "string"}},
    }
    return {"text/event-stream": {"schema": event, "description": description}}


def json_content(schema: Schema) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def ok(description: str, schema: Schema | None = None, **extra: Any) -> dict[str, Any]:
    response: dict[str, Any] = {"description": description, **extra}
    if schema is not None:
        response["content"] = json_content(schema)
    return response


def errors(codes: tuple[int, ...], schema: str = "Error") -> dict[str, Any]:
    return {str(code): ok(ERROR_TEXT[code], ref(schema)) for code in codes}


def link(operation_id: str, **parameters: str) -> dict[str, Any]:
    """A link to another operation, its parameters taken from this request or answer."""
    return {"operationId": operation_id, "parameters": parameters}


def op(
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
        operation["requestBody"] = {"required": body_required, "content": json_content(body)}
    operation.update(extra)
    return operation
