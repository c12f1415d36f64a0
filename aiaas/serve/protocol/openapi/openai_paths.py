"""OpenAI's routes for language and embedding models, answered in OpenAI's error shape."""

from __future__ import annotations

from aiaas.serve.protocol.openapi.operations import (
    BEARER_IF_SET,
    Operation,
    Paths,
    errors,
    event_stream,
    json_content,
    link,
    ok,
    op,
)
from aiaas.serve.protocol.openapi.schemas import ref

_ERRORS = (400, 401, 404, 413, 429, 503)


def _generation(operation_id: str, body: str, answer: str) -> Operation:
    content = {
        **json_content(ref(answer)),
        **event_stream("With 'stream': chunks as 'data: <json>' events, then 'data: [DONE]'."),
    }
    return op(
        operation_id,
        "openai",
        {
            "200": {"description": "The answer, or its stream.", "content": content},
            **errors(_ERRORS, "OpenAIError"),
        },
        body=ref(body),
        body_required=True,
        security=BEARER_IF_SET,
    )


def openai_paths() -> Paths:
    failed = errors(_ERRORS, "OpenAIError")
    return {
        "/v1/models": {
            "get": op(
                "openaiListModels",
                "openai",
                {
                    "200": ok(
                        "The language and embedding models served.",
                        ref("OpenAIModelList"),
                        links={"Model": link("openaiGetModel", model="$response.body#/data/0/id")},
                    ),
                    **failed,
                },
                security=BEARER_IF_SET,
            )
        },
        "/v1/models/{model}": {
            "get": op(
                "openaiGetModel",
                "openai",
                {"200": ok("One model.", ref("OpenAIModel")), **failed},
                security=BEARER_IF_SET,
            )
        },
        "/v1/completions": {
            "post": _generation("openaiCompletions", "CompletionRequest", "Completion")
        },
        "/v1/chat/completions": {
            "post": _generation("openaiChatCompletions", "ChatCompletionRequest", "ChatCompletion")
        },
        "/v1/embeddings": {
            "post": op(
                "openaiEmbeddings",
                "openai",
                {"200": ok("The embeddings.", ref("EmbeddingList")), **failed},
                body=ref("EmbeddingRequest"),
                body_required=True,
                security=BEARER_IF_SET,
            )
        },
    }
