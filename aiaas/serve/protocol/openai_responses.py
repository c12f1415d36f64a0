"""OpenAI's answer and chunk bodies, built from the engine's deltas.

Completions and chat differ only in names and in where the text goes (``text`` or
``message``/``delta``), so each is one small format object over the same
accumulated choices. Pure functions: no I/O, no engine.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from aiaas.serve.llm.types import GenerationDelta, TokenLogprob


@dataclass(frozen=True)
class Meta:
    """What every body of one answer repeats."""

    id: str
    created: int
    model: str


@dataclass
class Choice:
    """One choice's text, logprobs and counts, as its deltas arrive."""

    index: int
    texts: list[str] = field(default_factory=list)
    logprobs: list[TokenLogprob] = field(default_factory=list)
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def add(self, delta: GenerationDelta) -> None:
        self.texts.append(delta.text)
        if delta.logprobs:
            self.logprobs.extend(delta.logprobs)
        self.finish_reason = delta.finish_reason or self.finish_reason
        self.prompt_tokens = delta.prompt_tokens
        self.completion_tokens = delta.completion_tokens

    @property
    def text(self) -> str:
        return "".join(self.texts)


def usage(choices: list[Choice], n: int) -> dict[str, int]:
    """Prompt tokens once per prompt (choices come in groups of ``n`` per prompt)."""
    prompt = sum(c.prompt_tokens for c in choices if c.index % n == 0)
    completion = sum(c.completion_tokens for c in choices)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def _utf8(text: str) -> list[int]:
    return list(text.encode("utf-8"))


def completion_logprobs(items: list[TokenLogprob], offset: int = 0) -> dict[str, Any]:
    """The legacy shape: parallel lists, each top as {token text: logprob}."""
    offsets = []
    for item in items:
        offsets.append(offset)
        offset += len(item.token)
    return {
        "tokens": [item.token for item in items],
        "token_logprobs": [item.logprob for item in items],
        "top_logprobs": [{text: lp for text, _, lp in item.top} for item in items],
        "text_offset": offsets,
    }


def chat_logprobs(items: list[TokenLogprob]) -> dict[str, Any]:
    return {
        "content": [
            {
                "token": item.token,
                "logprob": item.logprob,
                "bytes": _utf8(item.token),
                "top_logprobs": [
                    {"token": text, "logprob": lp, "bytes": _utf8(text)} for text, _, lp in item.top
                ],
            }
            for item in items
        ]
    }


class CompletionFormat:
    object = "text_completion"
    chunk_object = "text_completion"
    id_prefix = "cmpl-"

    def __init__(self, with_logprobs: bool) -> None:
        self.with_logprobs = with_logprobs

    def choice(self, choice: Choice) -> dict[str, Any]:
        return {
            "index": choice.index,
            "text": choice.text,
            "logprobs": completion_logprobs(choice.logprobs) if self.with_logprobs else None,
            "finish_reason": choice.finish_reason,
        }

    def opening(self, index: int) -> dict[str, Any] | None:
        return None

    def delta(self, index: int, delta: GenerationDelta, offset: int) -> dict[str, Any]:
        logprobs = completion_logprobs(delta.logprobs or [], offset) if self.with_logprobs else None
        return {
            "index": index,
            "text": delta.text,
            "logprobs": logprobs,
            "finish_reason": delta.finish_reason,
        }


class ChatFormat:
    object = "chat.completion"
    chunk_object = "chat.completion.chunk"
    id_prefix = "chatcmpl-"

    def __init__(self, with_logprobs: bool) -> None:
        self.with_logprobs = with_logprobs

    def choice(self, choice: Choice) -> dict[str, Any]:
        return {
            "index": choice.index,
            "message": {"role": "assistant", "content": choice.text},
            "logprobs": chat_logprobs(choice.logprobs) if self.with_logprobs else None,
            "finish_reason": choice.finish_reason,
        }

    def opening(self, index: int) -> dict[str, Any] | None:
        """OpenAI's first chunk of a choice: the role, no text yet."""
        message = {"role": "assistant", "content": ""}
        return {"index": index, "delta": message, "logprobs": None, "finish_reason": None}

    def delta(self, index: int, delta: GenerationDelta, offset: int) -> dict[str, Any]:
        logprobs = chat_logprobs(delta.logprobs or []) if self.with_logprobs else None
        return {
            "index": index,
            "delta": {"content": delta.text} if delta.text else {},
            "logprobs": logprobs,
            "finish_reason": delta.finish_reason,
        }


Format = CompletionFormat | ChatFormat


def answer(fmt: Format, meta: Meta, choices: list[Choice], n: int) -> dict[str, Any]:
    return {
        "id": meta.id,
        "object": fmt.object,
        "created": meta.created,
        "model": meta.model,
        "choices": [fmt.choice(c) for c in sorted(choices, key=lambda c: c.index)],
        "usage": usage(choices, n),
    }


def chunk(
    fmt: Format, meta: Meta, choices: list[dict[str, Any]], with_usage: bool
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": meta.id,
        "object": fmt.chunk_object,
        "created": meta.created,
        "model": meta.model,
        "choices": choices,
    }
    if with_usage:
        body["usage"] = None  # as OpenAI: present on every chunk once include_usage is asked
    return body


def usage_chunk(fmt: Format, meta: Meta, choices: list[Choice], n: int) -> dict[str, Any]:
    body = chunk(fmt, meta, [], with_usage=False)
    body["usage"] = usage(choices, n)
    return body


def embedding_list(
    model: str, vectors: np.ndarray, prompt_tokens: int, encoding_format: str
) -> dict[str, Any]:
    """OpenAI's embedding list; base64 is the little-endian float32 bytes, as its client
    decodes them."""
    data = []
    for index, vector in enumerate(vectors):
        values = vector.astype("<f4")
        encoded: Any = (
            base64.b64encode(values.tobytes()).decode("ascii")
            if encoding_format == "base64"
            else values.tolist()
        )
        data.append({"object": "embedding", "index": index, "embedding": encoded})
    return {
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
    }
