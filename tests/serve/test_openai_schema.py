"""OpenAI request bodies: what is accepted, and which field a refusal names."""

from __future__ import annotations

import orjson
import pytest

from aiaas.serve.protocol.openai_errors import OpenAIError, envelope
from aiaas.serve.protocol.openai_schema import (
    ChatCompletionRequest,
    CompletionRequest,
    EmbeddingRequest,
    parse,
)

CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
COMPLETION = {"model": "m", "prompt": "hi"}


def _refusal(model: type, body: dict) -> dict:
    with pytest.raises(OpenAIError) as refused:
        parse(model, orjson.dumps(body))
    assert refused.value.http_status == 400
    return envelope(refused.value)["error"]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({**CHAT, "temperature": 2.5}, "temperature"),
        ({**CHAT, "top_p": 0}, "top_p"),
        ({**CHAT, "n": 0}, "n"),
        ({**CHAT, "max_tokens": 0}, "max_tokens"),
        ({**CHAT, "max_completion_tokens": -1}, "max_completion_tokens"),
        ({**CHAT, "top_logprobs": 3}, "top_logprobs"),
        ({**CHAT, "top_logprobs": 99, "logprobs": True}, "top_logprobs"),
        ({**CHAT, "stream_options": {"include_usage": True}}, "stream_options"),
        ({**CHAT, "presence_penalty": 0.5}, "presence_penalty"),
        ({**CHAT, "messages": []}, "messages"),
        ({**CHAT, "messages": [{"role": "robot", "content": "x"}]}, "messages"),
        ({"messages": CHAT["messages"]}, "model"),
        ({**CHAT, "stop": 3}, "stop"),
    ],
)
def test_a_wrong_chat_field_is_named_in_the_400(body, param):
    error = _refusal(ChatCompletionRequest, body)
    assert error["param"] == param
    assert error["type"] == "invalid_request_error"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "m"}, "prompt"),
        ({**COMPLETION, "prompt": ""}, "prompt"),
        ({**COMPLETION, "prompt": []}, "prompt"),
        ({**COMPLETION, "logprobs": 21}, "logprobs"),
        ({**COMPLETION, "echo": True}, "echo"),
        ({**COMPLETION, "best_of": 3}, "best_of"),
    ],
)
def test_a_wrong_completion_field_is_named_in_the_400(body, param):
    assert _refusal(CompletionRequest, body)["param"] == param


def test_prompts_come_as_texts_or_token_lists():
    def prompts(prompt: object) -> list:
        return parse(CompletionRequest, orjson.dumps({**COMPLETION, "prompt": prompt})).prompts()

    assert prompts("a") == ["a"]
    assert prompts(["a", "b"]) == ["a", "b"]
    assert prompts([1, 2, 3]) == [[1, 2, 3]]
    assert prompts([[1], [2, 3]]) == [[1], [2, 3]]


def test_chat_defaults_and_text_parts():
    body = {
        **CHAT,
        "messages": [
            {
                "role": "user",
                "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
            }
        ],
        "stop": "x",
        "max_tokens": 5,
        "max_completion_tokens": 7,
        "logprobs": True,
    }
    request = parse(ChatCompletionRequest, orjson.dumps(body))
    assert request.messages[0].as_template_input() == {"role": "user", "content": "ab"}
    assert request.stop_strings() == ("x",)
    assert request.token_limit() == 7
    assert request.logprob_count() == 0
    assert not request.include_usage


def test_not_json_is_a_400_without_a_param():
    with pytest.raises(OpenAIError) as refused:
        parse(CompletionRequest, b"{nope")
    assert refused.value.param is None


def test_embedding_input_is_one_to_2048_non_empty_strings():
    def texts(value: object) -> list[str]:
        body = {"model": "e", "input": value}
        return parse(EmbeddingRequest, orjson.dumps(body)).texts()

    assert texts("a") == ["a"]
    assert texts(["a", "b"]) == ["a", "b"]
    for wrong in ([], [""], [1, 2], ["a"] * 2049):
        with pytest.raises(OpenAIError) as refused:
            texts(wrong)
        assert refused.value.param == "input"
